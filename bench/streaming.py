"""Streaming a big entry through the whole service, beside its baselines, in one run.

Usage: python -m bench.streaming [--mib 1024] [--runs 3] [--json PATH] [--s3]

Measured on this machine in the same run, each the median (min-max) of --runs:
- ctxcloud PUT and GET of one entry of --mib MiB through gunicorn (local backend, encrypted),
  with the worker's peak RSS growth (VmHWM, reset before each transfer);
- bare Flask endpoints under the same gunicorn configuration that read and discard the body
  (upload ceiling) or stream the same bytes (download ceiling);
- raw AES-256-GCM and SHA-256 on one core, and raw disk write (with fsync) and read (of
  the file's pages dropped from the page cache first).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from tests.support.server import cli, gunicorn  # noqa: E402

MIB = 1 << 20
BLOCK = os.urandom(MIB)


def median_range(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def _connection(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=600)


def upload(url: str, path: str, size: int, headers: dict[str, str]) -> float:
    """PUT `size` bytes with a Content-Length, sent in 1 MiB blocks; returns MB/s."""
    conn = _connection(url)
    started = time.perf_counter()
    conn.putrequest("PUT", path)
    for name, value in {
        **headers,
        "Content-Length": str(size),
        "Content-Type": "application/octet-stream",
    }.items():
        conn.putheader(name, value)
    conn.endheaders()
    remaining = size
    while remaining > 0:
        piece = BLOCK if remaining >= MIB else BLOCK[:remaining]
        conn.send(piece)
        remaining -= len(piece)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status not in (200, 201):
        raise RuntimeError(f"PUT {path} answered {response.status}")
    return size / elapsed / 1e6


def download(url: str, path: str, size: int, headers: dict[str, str]) -> float:
    """GET into a reused buffer (the client must not be the bottleneck); returns MB/s."""
    conn = _connection(url)
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {response.read()[:200]!r}")
    received = 0
    while count := response.readinto(view):
        received += count
    elapsed = time.perf_counter() - started
    conn.close()
    if received != size:
        raise RuntimeError(f"GET {path}: {received} bytes, expected {size}")
    return size / elapsed / 1e6


def reset_peak(pid: int) -> None:
    """Reset the worker's VmHWM so the next reading is this transfer's peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def measured_transfer(server, work: Callable[[], float]) -> tuple[float, float]:
    """(MB/s, peak RSS growth in MiB of the one worker) for one transfer."""
    (pid,) = server.worker_pids()
    before = memory_kib(pid)["VmRSS"]
    reset_peak(pid)
    rate = work()
    peak = memory_kib(pid)["VmHWM"]
    return rate, max(peak - before, 0) / 1024


def raw_crypto(mib: int, runs: int) -> dict[str, dict[str, float]]:
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    segment = BLOCK[: 64 * 1024]

    def aes() -> float:
        started = time.perf_counter()
        for _ in range(mib * 16):
            aead.encrypt(nonce, segment, None)  # benchmark only: never reuse a nonce for real
        return mib * MIB / (time.perf_counter() - started) / 1e6

    def sha() -> float:
        digest = hashlib.sha256()
        started = time.perf_counter()
        for _ in range(mib):
            digest.update(BLOCK)
        return mib * MIB / (time.perf_counter() - started) / 1e6

    return {
        "aes_256_gcm_64k_mb_s": median_range([aes() for _ in range(runs)]),
        "sha256_mb_s": median_range([sha() for _ in range(runs)]),
    }


def raw_disk(directory: Path, mib: int, runs: int) -> dict[str, dict[str, float]]:
    writes, reads = [], []
    for _ in range(runs):
        path = directory / "disk-bench.bin"
        started = time.perf_counter()
        with open(path, "wb", buffering=0) as handle:
            for _ in range(mib):
                handle.write(BLOCK)
            os.fsync(handle.fileno())
            # Drop the file's cached pages, so the read below comes from the disk.
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        writes.append(mib * MIB / (time.perf_counter() - started) / 1e6)
        started = time.perf_counter()
        with open(path, "rb", buffering=0) as handle:
            while handle.read(MIB):
                pass
        reads.append(mib * MIB / (time.perf_counter() - started) / 1e6)
        path.unlink()
    return {"disk_write_fsync_mb_s": median_range(writes), "disk_read_mb_s": median_range(reads)}


def service_env(data_dir: Path) -> dict[str, str]:
    return {
        "CTXCLOUD_ENV": "development",
        "CTXCLOUD_DATA_DIR": str(data_dir),
        "CTXCLOUD_LOG_LEVEL": "WARNING",
        "CTXCLOUD_RATE_LIMIT_DEFAULT": "1000000/minute",
    }


def provision(env: dict[str, str]) -> str:
    """Schema, a tenant and a full-scope API key through the real command line."""
    for args in (("db", "upgrade"), ("tenants", "create", "bench", "--json")):
        result = cli(env, *args)
        if result.returncode != 0:
            raise RuntimeError(f"ctxcloud {' '.join(args)} failed: {result.stderr}")
    result = cli(
        env,
        "api-keys",
        "create",
        "--tenant",
        "bench",
        "--name",
        "bench",
        "--scopes",
        "projects:read,projects:write,context:read,context:write",
        "--json",
    )
    if result.returncode != 0:
        raise RuntimeError(f"api-keys create failed: {result.stderr}")
    return json.loads(result.stdout)["key"]


def service_transfers(
    env: dict[str, str], work_dir: Path, size: int, runs: int, key: str | None = None
):
    """PUT then GET one entry of `size` bytes `runs` times through gunicorn (1 worker).

    `key`: a full-scope API key of a service already provisioned in `env` (else one is made).
    """
    key = key or provision(env)
    auth = {"Authorization": f"Bearer {key}"}
    with gunicorn(env, work_dir / "logs", workers=1, threads=4) as server:
        conn = _connection(server.url)
        conn.request(
            "POST",
            "/api/v1/projects",
            body=json.dumps({"name": "stream"}),
            headers={**auth, "Content-Type": "application/json"},
        )
        if conn.getresponse().status != 201:
            raise RuntimeError("could not create the bench project")
        conn.close()
        path = "/api/v1/projects/stream/context/entries/big.bin"
        ups = [
            measured_transfer(server, lambda: upload(server.url, path, size, auth))
            for _ in range(runs)
        ]
        downs = [
            measured_transfer(server, lambda: download(server.url, path, size, auth))
            for _ in range(runs)
        ]
    return ups, downs


def run_s3(mib: int, runs: int, work_dir: Path) -> dict[str, object]:
    """The service on S3 (moto over HTTP) through gunicorn, beside boto3 alone on the same
    server moving the same bytes: the ratio is what the service costs over the SDK."""
    import boto3

    from tests.support.s3server import aws_environment, moto_s3

    size = mib * MIB
    payload = BLOCK * mib
    results: dict[str, object] = {"mib": mib, "runs": runs}
    with moto_s3() as s3, aws_environment(s3.env):
        client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")

        def boto_put() -> float:
            started = time.perf_counter()
            client.put_object(Bucket=s3.bucket, Key="baseline.bin", Body=payload)
            return size / (time.perf_counter() - started) / 1e6

        def boto_get() -> float:
            started = time.perf_counter()
            body = client.get_object(Bucket=s3.bucket, Key="baseline.bin")["Body"]
            received = sum(len(chunk) for chunk in body.iter_chunks(MIB))
            if received != size:
                raise RuntimeError("boto3 read the wrong size")
            return size / (time.perf_counter() - started) / 1e6

        results["boto3_put_mb_s"] = median_range([boto_put() for _ in range(runs)])
        results["boto3_get_mb_s"] = median_range([boto_get() for _ in range(runs)])
        client.delete_object(Bucket=s3.bucket, Key="baseline.bin")
        env = {
            **service_env(work_dir / "s3-data"),
            **s3.env,
            **{f"CTXCLOUD_{name}": str(value) for name, value in s3.config().items()},
        }
        ups, downs = service_transfers(env, work_dir, size, runs)
    results.update(
        service_figures(ups, downs, "s3_", results["boto3_put_mb_s"], results["boto3_get_mb_s"])
    )
    return results


def service_figures(
    ups, downs, kind: str, base_up: dict, base_down: dict, baseline: str | None = None
) -> dict[str, object]:
    """The service's transfer rates and RSS growth (`service_<kind>...`), and their ratios to
    the baselines measured in the same run (`<kind>..._ratio_to_<baseline>`: bare, boto3...)."""
    baseline = baseline or ("boto3" if kind else "bare")
    figures: dict[str, object] = {
        f"service_{kind}upload_mb_s": median_range([r for r, _ in ups]),
        f"service_{kind}download_mb_s": median_range([r for r, _ in downs]),
        f"service_{kind}upload_rss_growth_mib": median_range([m for _, m in ups]),
        f"service_{kind}download_rss_growth_mib": median_range([m for _, m in downs]),
    }
    for direction, base in (("upload", base_up), ("download", base_down)):
        service = figures[f"service_{kind}{direction}_mb_s"]
        figures[f"{kind}{direction}_ratio_to_{baseline}"] = round(
            service["median"] / base["median"], 3
        )
    return figures


def run(
    mib: int, runs: int, work_dir: Path, service: tuple[dict[str, str], str] | None = None
) -> dict[str, object]:
    """Every figure above; `service` (env, API key) reuses a provisioned embedded service."""
    size = mib * MIB
    work_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"mib": mib, "runs": runs}
    results.update(raw_crypto(min(mib, 256), runs))
    results.update(raw_disk(work_dir, mib, runs))

    with gunicorn({}, work_dir / "logs", workers=1, threads=4, app="bench.bare_app:app") as bare:
        ups = [
            measured_transfer(bare, lambda: upload(bare.url, "/sink", size, {}))
            for _ in range(runs)
        ]
        downs = [
            measured_transfer(bare, lambda: download(bare.url, f"/source?bytes={size}", size, {}))
            for _ in range(runs)
        ]
    results["bare_upload_mb_s"] = median_range([r for r, _ in ups])
    results["bare_download_mb_s"] = median_range([r for r, _ in downs])

    env, key = service or (service_env(work_dir / "data"), None)
    ups, downs = service_transfers(env, work_dir, size, runs, key)
    results.update(
        service_figures(ups, downs, "", results["bare_upload_mb_s"], results["bare_download_mb_s"])
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--s3",
        action="store_true",
        help="the service on S3 (moto) beside boto3 alone, instead of local",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-") as tmp:
        results = (run_s3 if args.s3 else run)(args.mib, args.runs, Path(tmp))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
