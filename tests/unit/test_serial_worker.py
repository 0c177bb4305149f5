"""SerialWorker: calls in order, the first ones inline, failures raised to the caller."""

from __future__ import annotations

import threading

import pytest

from ctxcloud.serial_worker import SerialWorker


def test_calls_run_in_order_and_only_the_first_inline():
    seen = []
    worker = SerialWorker(lambda n: seen.append((n, threading.current_thread().name)), depth=2)
    try:
        for n in range(50):
            worker.submit(n)
        worker.finish()
    finally:
        worker.close()
    assert [n for n, _ in seen] == list(range(50))
    assert seen[0][1] == threading.current_thread().name
    assert all(name.startswith("ctxcloud-io") for _, name in seen[1:])


def test_a_single_call_never_starts_a_thread():
    before = threading.active_count()
    worker = SerialWorker(lambda n: None)
    worker.submit(1)
    worker.finish()
    worker.close()
    assert threading.active_count() == before


def test_a_failed_call_raises_from_a_later_submit_or_finish():
    def fail(n):
        if n == 3:
            raise OSError("disk full")

    worker = SerialWorker(fail, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for n in range(10):
            worker.submit(n)
        worker.finish()
    worker.close()


def test_chunk_batches_hand_over_batches_of_the_size_and_the_rest_at_finish():
    from ctxcloud.serial_worker import ChunkBatches

    batches: list[list[bytes]] = []
    chunks = ChunkBatches(batches.append, size=10)
    try:
        returned = [chunks.add(piece) for piece in (b"abcd", memoryview(b"efgh"), b"ij", b"k")]
        chunks.finish()
    finally:
        chunks.close()
    assert returned == [b"abcd", b"efgh", b"ij", b"k"]
    assert all(type(piece) is bytes for piece in returned)  # a buffer could change later
    assert batches == [[b"abcd", b"efgh", b"ij"], [b"k"]]
