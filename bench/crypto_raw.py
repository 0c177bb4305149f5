"""Single-core throughput of the at-rest encryption against its raw primitives.

Usage: python bench/crypto_raw.py [--mib 256] [--json]

Compares raw AES-256-GCM (encrypt on 64 KiB and 1 MiB buffers, decrypt on 64 KiB) and
SHA-256 with app.crypto's encrypt_stream / decrypt_stream over N MiB fed in 1 MiB chunks,
so the overhead of the streaming layer (segmenting, nonces, generators) is visible.
Each figure is the median of three runs, in MB/s (10**6 bytes per second).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ctxcloud.crypto import SEGMENT_SIZE, decrypt_stream, encrypt_stream, new_data_key

MIB = 1 << 20
RUNS = 3


def _median_mb_per_s(total_bytes: int, work: Callable[[], object]) -> float:
    """Median of RUNS timings, so one scheduler hiccup does not decide the figure."""
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return total_bytes / statistics.median(timings) / 1e6


def _raw_aesgcm(buffer_size: int, total: int) -> Callable[[], object]:
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    buffer = os.urandom(buffer_size)
    nonce, aad = os.urandom(12), os.urandom(40)
    count = total // buffer_size

    def work() -> None:
        for _ in range(count):
            aead.encrypt(nonce, buffer, aad)  # benchmark only: a real caller never reuses a nonce

    return work


def _raw_aesgcm_decrypt(buffer_size: int, total: int) -> Callable[[], object]:
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, aad = os.urandom(12), os.urandom(40)
    sealed = aead.encrypt(nonce, os.urandom(buffer_size), aad)
    count = total // buffer_size

    def work() -> None:
        for _ in range(count):
            aead.decrypt(nonce, sealed, aad)

    return work


def _sha256(chunk: bytes, count: int) -> Callable[[], object]:
    def work() -> str:
        digest = hashlib.sha256()
        for _ in range(count):
            digest.update(chunk)
        return digest.hexdigest()

    return work


def _drain(chunks: object) -> int:
    return sum(len(piece) for piece in chunks)  # type: ignore[attr-defined]


def run(mib: int) -> dict[str, object]:
    """Measure every figure for `mib` MiB of data and return them as one flat dict."""
    total = mib * MIB
    chunk = os.urandom(MIB)
    data_key, aad = new_data_key(), b"tenant:bench/entry:1"

    sealed = b"".join(encrypt_stream(data_key, [chunk] * mib, aad))
    sealed_chunks = [sealed[i : i + MIB] for i in range(0, len(sealed), MIB)]
    del sealed

    results: dict[str, object] = {
        "mib": mib,
        "runs": RUNS,
        "unit": "MB/s",
        "segment_size": SEGMENT_SIZE,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "machine": platform.machine(),
        "aesgcm_encrypt_64k": _median_mb_per_s(total, _raw_aesgcm(64 * 1024, total)),
        "aesgcm_encrypt_1m": _median_mb_per_s(total, _raw_aesgcm(MIB, total)),
        "aesgcm_decrypt_64k": _median_mb_per_s(total, _raw_aesgcm_decrypt(64 * 1024, total)),
        "sha256": _median_mb_per_s(total, _sha256(chunk, mib)),
        "encrypt_stream": _median_mb_per_s(
            total, lambda: _drain(encrypt_stream(data_key, [chunk] * mib, aad))
        ),
        "decrypt_stream": _median_mb_per_s(
            total, lambda: _drain(decrypt_stream(data_key, sealed_chunks, aad))
        ),
    }
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; --json prints exactly one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="data size per run (default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.mib < 1:
        parser.error("--mib must be at least 1")

    results = run(args.mib)
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return 0
    print(
        f"{args.mib} MiB, median of {RUNS} runs, single core, "
        f"Python {results['python']}, cryptography {results['cryptography']}"
    )
    for name in (
        "aesgcm_encrypt_64k",
        "aesgcm_encrypt_1m",
        "aesgcm_decrypt_64k",
        "sha256",
        "encrypt_stream",
        "decrypt_stream",
    ):
        print(f"  {name:<20} {results[name]:>9.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
