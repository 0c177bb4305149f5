"""ReadAhead: items in order, errors where they happened, and a helper that always stops."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from ctxcloud.read_ahead import ReadAhead


class Source:
    """A closable iterator that records whether (and on which thread) it was closed."""

    def __init__(self, items, fail_at=None):
        self.items = list(items)
        self.fail_at = fail_at
        self.closed = threading.Event()
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.position == self.fail_at:
            raise ValueError("broken source")
        if self.position >= len(self.items):
            raise StopIteration
        self.position += 1
        return self.items[self.position - 1]

    def close(self):
        self.closed.set()


def test_items_come_in_order_and_the_source_is_closed():
    source = Source(range(100))
    assert list(ReadAhead(source, depth=2)) == list(range(100))
    assert source.closed.wait(1)


def test_an_error_of_the_source_is_raised_after_the_items_before_it():
    reader = ReadAhead(Source(range(10), fail_at=3))
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="broken source"):
        next(reader)
    with pytest.raises(StopIteration):
        next(reader)


def test_close_stops_the_helper_and_closes_the_source():
    source = Source(range(1000))
    reader = ReadAhead(source, depth=1)
    assert next(reader) == 0
    reader.close()
    assert source.closed.wait(1)
    assert source.position < 1000  # it stopped reading ahead


def test_a_dropped_reader_stops_its_helper():
    source = Source(range(1000))
    reader = ReadAhead(source, depth=1)
    next(reader)
    del reader
    gc.collect()
    assert source.closed.wait(2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(
        t.name == "ctxcloud-read-ahead" for t in threading.enumerate()
    ):
        time.sleep(0.05)
    assert not any(t.name == "ctxcloud-read-ahead" for t in threading.enumerate())
