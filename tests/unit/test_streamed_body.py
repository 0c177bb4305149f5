"""ctxcloud.StreamedBody: a store's response body as a backend's get() hands it on."""

import gc

import pytest

from ctxcloud import StorageUnavailable, StreamedBody


class Body:
    """A response body that records whether it was released."""

    def __init__(self, chunks, fail_after: int | None = None):
        self.chunks, self.fail_after, self.released, self.read = list(chunks), fail_after, 0, 0

    def __iter__(self):
        for chunk in self.chunks:
            if self.fail_after is not None and self.read == self.fail_after:
                raise ConnectionResetError("the store went away")
            self.read += 1
            yield chunk

    def release(self):
        self.released += 1


def streamed(body: Body, **kw) -> StreamedBody:
    return StreamedBody(
        iter(body), body.release, lambda exc: StorageUnavailable(f"cannot read: {exc}"), **kw
    )


def test_the_body_comes_out_whole_and_is_released_at_its_end():
    body = Body([b"abc", b"", b"def"])
    assert list(streamed(body)) == [b"abc", b"def"]
    assert body.released == 1


@pytest.mark.parametrize(
    ("skip", "limit", "expected"),
    [
        (0, None, b"abcdefghij"),
        (2, None, b"cdefghij"),
        (2, 5, b"cdefg"),
        (4, 1, b"e"),
        (9, 9, b"j"),
    ],
)
def test_a_whole_object_is_clipped_to_the_range_asked_for(skip, limit, expected):
    """A store that ignored the Range header sent the whole object."""
    body = Body([b"abc", b"defg", b"hij"])
    assert b"".join(streamed(body, skip=skip, limit=limit)) == expected
    assert body.released == 1


def test_reading_stops_once_the_range_is_complete():
    body = Body([b"abc", b"def", b"ghi"])
    assert b"".join(streamed(body, limit=4)) == b"abcd"
    assert body.read == 2 and body.released == 1  # the third chunk was never asked for


def test_a_read_error_is_unavailable_and_releases_the_body():
    body = Body([b"abc", b"def"], fail_after=1)
    reader = streamed(body)
    assert next(reader) == b"abc"
    with pytest.raises(StorageUnavailable, match="the store went away"):
        next(reader)
    assert body.released == 1
    assert list(reader) == []


def test_other_errors_propagate_as_they_are():
    body = Body([b"abc"], fail_after=0)
    with pytest.raises(ConnectionResetError):
        next(streamed(body, errors=(TimeoutError,)))


def test_a_reader_dropped_early_releases_the_body():
    body = Body([b"abc", b"def"])
    reader = streamed(body)
    next(reader)
    del reader
    gc.collect()
    assert body.released == 1


def test_close_releases_once_and_ends_reading():
    body = Body([b"abc", b"def"])
    reader = streamed(body)
    reader.close()
    reader.close()
    assert body.released == 1 and list(reader) == []
