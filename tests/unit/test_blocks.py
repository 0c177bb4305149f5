"""ctxcloud.Blocks: a chunk stream cut into fixed-size blocks in one reusable buffer (what
every multipart-style backend's put() builds on), and byte_view."""

import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxcloud import Blocks, byte_view


def cut(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, at = [], 0
    for size in sizes:
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    return chunks


@given(
    data=st.binary(max_size=3000),
    sizes=st.lists(st.integers(0, 700), max_size=12),
    size=st.integers(1, 1200),
)
def test_blocks_are_full_and_rest_is_the_last_block(data, sizes, size):
    blocks = Blocks(iter(cut(data, sizes)), size)
    seen = []
    for block in blocks:
        assert len(block) == size  # only full blocks, and only when more bytes follow
        seen.append(bytes(block))
    rest = bytes(blocks.rest())
    assert b"".join(seen) + rest == data
    assert blocks.total == len(data)
    assert (0 < len(rest) <= size) or not data  # the last block is never held back empty


def test_one_buffer_is_reused_for_every_block():
    blocks = Blocks([b"x" * 35], 10)
    assert len({id(block) for block in blocks}) == 1


@given(
    data=st.binary(min_size=1, max_size=3000),
    size=st.integers(4, 400),
    kept=st.lists(st.integers(0, 3), max_size=40),
)
def test_keep_sends_the_end_of_a_block_again(data, size, kept):
    """A store that took only part of a block: the rest starts the next block."""
    blocks = Blocks(iter(cut(data, [97] * 40)), size)
    stored = bytearray()
    for number, block in enumerate(blocks):
        left = kept[number] if number < len(kept) else 0
        stored += block[: len(block) - left]
        blocks.keep(left)
    stored += blocks.rest()
    assert stored == data


def test_resize_makes_the_blocks_that_follow_smaller():
    data = bytes(range(256)) * 4
    blocks = Blocks(iter(cut(data, [100] * 10)), 300)
    lengths, out = [], bytearray()
    for block in blocks:
        lengths.append(len(block))
        out += block
        blocks.resize(128)
    rest = blocks.rest()
    assert lengths == [300, 128, 128, 128, 128, 128] and len(rest) == 84
    assert out + rest == data


@pytest.mark.parametrize("size", [0, -1])
def test_a_block_holds_at_least_one_byte(size):
    with pytest.raises(ValueError):
        Blocks([], size)


def test_blocks_cannot_grow_or_keep_more_than_a_block():
    blocks = Blocks([b"x" * 25], 10)
    for _block in blocks:
        with pytest.raises(ValueError):
            blocks.resize(11)
        with pytest.raises(ValueError):
            blocks.keep(11)
        break


def test_the_chunks_own_exception_propagates_unchanged():
    class Gone(Exception):
        pass

    def chunks():
        yield b"x" * 15
        raise Gone

    blocks = Blocks(chunks(), 10)
    with pytest.raises(Gone):
        for _block in blocks:
            pass


def test_rest_lets_go_of_the_buffer():
    blocks = Blocks([b"abc"], 10)
    assert list(blocks) == []
    rest = blocks.rest()
    assert rest == b"abc" and blocks.rest() == b""


def test_any_bytes_like_chunk_is_read_without_a_copy():
    source = bytearray(b"abcdef")
    view = byte_view(source)
    source[0:1] = b"z"
    assert view.tobytes() == b"zbcdef"  # the same memory
    view.release()
    words = array.array("H", [1, 2])
    assert len(byte_view(words)) == 4 and byte_view(memoryview(b"abcdef")[::2]) == b"ace"
    with pytest.raises(TypeError):
        byte_view("text")
