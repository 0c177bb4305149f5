"""Upload/download throughput of S3Storage against plain boto3, on the same server and bytes.

Usage: python bench/s3_raw.py [--mib 256] [--runs 3] [--endpoint-url URL --bucket NAME] [--json]

Without --endpoint-url a moto_server is started on a free loopback port (tests/support/
s3server.py) and stopped afterwards; with it, credentials come from boto3's usual chain.
Each figure is the median of --runs runs (interleaved), in MB/s (10**6 bytes per second):

- boto3 put/get: one PutObject of the whole buffer, one GetObject read in 1 MiB chunks
  (sequential, like S3Storage; no part buffering);
- boto3 transfer: upload_fileobj/download_fileobj (s3transfer: 8 MiB parts, 10 threads);
- S3Storage: put() fed 1 MiB chunks (8 MiB parts, one at a time), get() consumed whole.

Every download reads the object S3Storage wrote (a multipart object, as large entries
are), so the three read the same bytes the same way from the server's side.

The ratio S3Storage / boto3 is the figure to watch: what the backend costs over the SDK.
moto is a pure-Python server, so absolute numbers measure moto more than the network.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import botocore

from ctxcloud.plugins.storage_s3.backend import S3Storage
from ctxcloud.plugins.storage_s3.settings import DEFAULTS
from ctxcloud.storage import CHUNK_SIZE

MIB = 1 << 20


class _Sink(io.RawIOBase):
    """A seekable writable that only counts, so downloads measure transfer, not memory."""

    def __init__(self) -> None:
        self.count = 0
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # lets s3transfer write parts in place instead of re-ordering them

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else self.position + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data) -> int:  # type: ignore[override]
        size = len(data)
        self.count += size
        self.position += size
        return size


def _median_mb_per_s(total: int, runs: int, works: dict[str, Callable[[], int]]) -> dict:
    """Run every work once per round, round after round, so drift hits them all alike."""
    timings: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(runs):
        for name, work in works.items():
            started = time.perf_counter()
            moved = work()
            timings[name].append(time.perf_counter() - started)
            if moved != total:
                raise RuntimeError(f"{name} moved {moved} bytes, expected {total}")
    return {name: total / statistics.median(times) / 1e6 for name, times in timings.items()}


def _chunks(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    for offset in range(0, len(data), CHUNK_SIZE):
        yield view[offset : offset + CHUNK_SIZE]


def run(endpoint_url: str, bucket: str, mib: int, runs: int) -> dict:
    data = os.urandom(mib * MIB)
    total = len(data)
    storage = S3Storage.from_config(
        {
            **DEFAULTS,
            "S3_BUCKET": bucket,
            "S3_ENDPOINT_URL": endpoint_url,
            "S3_ADDRESSING_STYLE": "path",
            "S3_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )

    def boto3_put() -> int:
        client.put_object(Bucket=bucket, Key="bench/boto3-put", Body=data)
        return total

    def boto3_get() -> int:
        body = client.get_object(Bucket=bucket, Key="bench/s3storage")["Body"]
        return sum(len(chunk) for chunk in body.iter_chunks(CHUNK_SIZE))

    def transfer_put() -> int:
        client.upload_fileobj(io.BytesIO(data), bucket, "bench/boto3-transfer")
        return total

    def transfer_get() -> int:
        sink = _Sink()
        client.download_fileobj(bucket, "bench/s3storage", sink)
        return sink.count

    def storage_put() -> int:
        return storage.put("bench/s3storage", _chunks(data))

    def storage_get() -> int:
        return sum(len(chunk) for chunk in storage.get("bench/s3storage"))

    storage.check()
    uploads = _median_mb_per_s(
        total,
        runs,
        {"boto3_put_get": boto3_put, "boto3_transfer": transfer_put, "s3storage": storage_put},
    )
    downloads = _median_mb_per_s(  # all read bench/s3storage
        total,
        runs,
        {"boto3_put_get": boto3_get, "boto3_transfer": transfer_get, "s3storage": storage_get},
    )
    results: dict = {
        name: {"upload": uploads[name], "download": downloads[name]} for name in uploads
    }
    for key in ("bench/boto3-put", "bench/boto3-transfer", "bench/s3storage"):
        client.delete_object(Bucket=bucket, Key=key)
    client.close()
    storage.close()
    for baseline in ("boto3_put_get", "boto3_transfer"):
        results[f"ratio_vs_{baseline}"] = {
            way: results["s3storage"][way] / results[baseline][way]
            for way in ("upload", "download")
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="object size in MiB (256)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median counts")
    parser.add_argument("--endpoint-url", help="an S3 endpoint; default: start moto_server")
    parser.add_argument("--bucket", default="ctxcloud-bench", help="bucket (created for moto)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with ExitStack() as stack:
        endpoint_url, bucket = args.endpoint_url, args.bucket
        server = "given endpoint"
        if endpoint_url is None:
            from tests.support.s3server import aws_environment, moto_s3

            s3 = stack.enter_context(moto_s3(bucket))
            stack.enter_context(aws_environment(s3.env))
            endpoint_url, server = s3.endpoint_url, "moto_server (loopback)"
        results = run(endpoint_url, bucket, args.mib, args.runs)

    report = {
        "mib": args.mib,
        "runs": args.runs,
        "server": server,
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "cpus": os.cpu_count(),
        **results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.mib} MiB, median of {args.runs}, {server}, boto3 {boto3.__version__}")
    print(f"{'':22}{'upload MB/s':>14}{'download MB/s':>16}")
    for name in ("boto3_put_get", "boto3_transfer", "s3storage"):
        row = results[name]
        print(f"{name:22}{row['upload']:>14.1f}{row['download']:>16.1f}")
    for name in ("ratio_vs_boto3_put_get", "ratio_vs_boto3_transfer"):
        row = results[name]
        print(f"{name:22}{row['upload']:>14.2f}{row['download']:>16.2f}")


if __name__ == "__main__":
    main()
