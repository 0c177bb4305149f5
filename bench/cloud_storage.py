"""The GCS and Azure backends through the whole service, beside each SDK alone on the same
emulator, and `ctxcloud storage migrate` throughput, in one run.

Usage: python -m bench.cloud_storage [--mib 1024] [--runs 3] [--migrate-mib 256] [--json PATH]

Measured on this machine in the same run, each the median (min-max) of --runs:
- per backend (gcs on gcp-storage-emulator, azure on Azurite, each in a process of its own on
  a free loopback port): the SDK alone uploading then downloading --mib MiB (the same chunk
  or block size as the service, one stream at a time); then the service (gunicorn, 1 worker,
  encrypted) PUT and GET of one entry of the same size, with the worker's peak RSS growth;
  the ratio service / SDK is what the service costs over the SDK;
- `storage migrate` local -> gcs and s3 (moto) -> azure of --migrate-mib MiB in 4 MiB
  objects: MB/s of source bytes and objects/s (each object is read, written, and read back
  from the target to verify it), and its ratio to the target SDK's upload rate above.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.streaming import (  # noqa: E402
    BLOCK,
    MIB,
    median_range,
    provision,
    service_env,
    service_figures,
    service_transfers,
)
from tests.support.server import cli, free_port  # noqa: E402

CHUNK = 8 * MIB  # the service's default GCS chunk and Azure block
OBJECT = 4 * MIB  # objects moved by the migrate scenario


class Source:
    """A readable file of `size` bytes made of BLOCK, for the SDKs (no copy of the whole)."""

    def __init__(self, size: int) -> None:
        self.size, self.position = size, 0

    def read(self, count: int = -1) -> bytes:
        left = self.size - self.position
        count = left if count is None or count < 0 else min(count, left)
        offset = self.position % MIB
        out = bytearray()
        while len(out) < count:
            take = min(count - len(out), MIB - offset)
            out += BLOCK[offset : offset + take]
            offset = 0
        self.position += count
        return bytes(out)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = base + offset
        return self.position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class Sink:
    """A writable file that counts and drops what it gets."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def rate(size: int, work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return size / (time.perf_counter() - started) / 1e6


# -- emulators, each in a process of its own ---------------------------------------------------


@contextmanager
def gcs_emulator_process(bucket: str) -> Iterator[str]:
    """gcp-storage-emulator in a process of its own, in memory; yields its URL."""
    port = free_port()
    script = (
        "import sys\n"
        "from gcp_storage_emulator.server import create_server\n"
        f"server = create_server('127.0.0.1', {port}, in_memory=True, default_bucket={bucket!r})\n"
        "server.start(); print('ready', flush=True); sys.stdin.read(); server.stop()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        if process.stdout.readline() != "ready\n":
            raise RuntimeError("gcp-storage-emulator did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


def gcs_settings(url: str, bucket: str) -> dict[str, Any]:
    return {
        "STORAGE_BACKEND": "gcs",
        "GCS_BUCKET": bucket,
        "GCS_ENDPOINT_URL": url,
        "GCS_CHUNK_SIZE": CHUNK,
    }


def azure_settings(connection_string: str, container: str) -> dict[str, Any]:
    return {
        "STORAGE_BACKEND": "azure",
        "AZURE_CONNECTION_STRING": connection_string,
        "AZURE_CONTAINER": container,
        "AZURE_BLOCK_SIZE": CHUNK,
    }


# -- the SDKs alone ------------------------------------------------------------------------------


def gcs_sdk(url: str, bucket: str, size: int, runs: int) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(
        project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    blob = client.bucket(bucket).blob("sdk-baseline.bin", chunk_size=CHUNK)

    def down() -> None:
        sink = Sink()
        blob.download_to_file(sink)
        if sink.size != size:
            raise RuntimeError("the GCS SDK read the wrong size")

    ups = [rate(size, lambda: blob.upload_from_file(Source(size), size=size)) for _ in range(runs)]
    downs = [rate(size, down) for _ in range(runs)]
    blob.delete()
    return {"sdk_put_mb_s": median_range(ups), "sdk_get_mb_s": median_range(downs)}


def azure_sdk(connection_string: str, container: str, size: int, runs: int) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(
        connection_string, max_block_size=CHUNK, max_single_put_size=MIB
    )
    blob = service.get_blob_client(container, "sdk-baseline.bin")

    def down() -> None:
        sink = Sink()
        blob.download_blob().readinto(sink)
        if sink.size != size:
            raise RuntimeError("the Azure SDK read the wrong size")

    def up() -> None:
        blob.upload_blob(Source(size), length=size, overwrite=True)

    ups = [rate(size, up) for _ in range(runs)]
    downs = [rate(size, down) for _ in range(runs)]
    blob.delete_blob()
    service.close()
    return {"sdk_put_mb_s": median_range(ups), "sdk_get_mb_s": median_range(downs)}


# -- the service -------------------------------------------------------------------------------


def environment(data_dir: Path, settings: dict[str, Any], extra: dict[str, str] | None = None):
    return {
        **service_env(data_dir),
        **{f"CTXCLOUD_{name}": str(value) for name, value in settings.items()},
        **(extra or {}),
    }


def through_service(
    settings: dict[str, Any], work_dir: Path, size: int, runs: int, sdk: dict[str, Any]
) -> dict[str, Any]:
    env = environment(work_dir / f"{settings['STORAGE_BACKEND']}-data", settings)
    ups, downs = service_transfers(env, work_dir, size, runs)
    figures = service_figures(
        ups, downs, "", sdk["sdk_put_mb_s"], sdk["sdk_get_mb_s"], baseline="sdk"
    )
    return {**sdk, **figures}


# -- storage migrate ---------------------------------------------------------------------------


def fill(env: dict[str, str], total: int) -> int:
    """Put `total` bytes of 4 MiB objects straight into the backend `env` names."""
    script = (
        "import os, sys, uuid\n"
        "from ctxcloud import create_app\n"
        "app = create_app()\n"
        "storage = app.extensions['ctxcloud'].storage\n"
        "block = os.urandom(1 << 20)\n"
        f"for i in range({total // OBJECT}):\n"
        "    key = f'o/{i % 256:02x}/{uuid.uuid4().hex}'\n"
        f"    storage.put(key, [block] * {OBJECT // MIB})\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, **env}, check=True, timeout=600
    )
    return total // OBJECT


def migrate(env: dict[str, str], target: dict[str, Any], objects: int) -> dict[str, Any]:
    args = ["storage", "migrate", "--to", target["STORAGE_BACKEND"], "--json"]
    for name, value in target.items():
        if name != "STORAGE_BACKEND":
            args += ["--to-setting", f"{name}={value}"]
    started = time.perf_counter()
    result = cli(env, *args)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"storage migrate failed: {result.stderr}")
    report = json.loads(result.stdout)
    if (report["copied"], report["failed"]) != (objects, 0):
        raise RuntimeError(f"storage migrate copied {report['copied']} of {objects}")
    return {
        "objects": objects,
        "seconds": round(elapsed, 2),
        "mb_s": round(report["bytes_copied"] / elapsed / 1e6, 1),
        "objects_s": round(objects / elapsed, 1),
    }


def run(mib: int, runs: int, migrate_mib: int, work_dir: Path) -> dict[str, object]:
    from tests.support.azurite import azurite
    from tests.support.s3server import aws_environment, moto_s3

    size = mib * MIB
    results: dict[str, object] = {"mib": mib, "runs": runs, "chunk_mib": CHUNK // MIB}
    bucket = "bench"
    with gcs_emulator_process(bucket) as gcs_url, azurite() as azure:
        container = azure.create_container()
        gcs = gcs_settings(gcs_url, bucket)
        az = azure_settings(azure.connection_string, container)
        results["gcs"] = through_service(
            gcs, work_dir, size, runs, gcs_sdk(gcs_url, bucket, size, runs)
        )
        results["azure"] = through_service(
            az, work_dir, size, runs, azure_sdk(azure.connection_string, container, size, runs)
        )

        # storage migrate: local -> gcs, then s3 -> azure, to empty places on each.
        total = migrate_mib * MIB
        local_env = environment(work_dir / "migrate-local", {"STORAGE_BACKEND": "local"})
        provision(local_env)
        objects = fill(local_env, total)
        to_gcs = {**gcs, "GCS_PREFIX": f"m-{uuid.uuid4().hex[:8]}/"}
        found = migrate(local_env, to_gcs, objects)
        found["ratio_to_sdk_put"] = round(
            found["mb_s"] / results["gcs"]["sdk_put_mb_s"]["median"], 3
        )
        results["migrate_local_to_gcs"] = found
        with moto_s3() as s3, aws_environment(s3.env):
            s3_env = environment(work_dir / "migrate-s3", s3.config(), s3.env)
            provision(s3_env)
            objects = fill(s3_env, total)
            to_azure = {**az, "AZURE_CONTAINER": azure.create_container()}
            found = migrate(s3_env, to_azure, objects)
        found["ratio_to_sdk_put"] = round(
            found["mb_s"] / results["azure"]["sdk_put_mb_s"]["median"], 3
        )
        results["migrate_s3_to_azure"] = found
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--migrate-mib", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-") as tmp:
        results = run(args.mib, args.runs, args.migrate_mib, Path(tmp))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
