"""Progress bars: a rich bar on a terminal, nothing drawn otherwise or with --json."""

from __future__ import annotations

import io

import pytest

from ctxcloud_client.progress import CountingReader, Progress, RichProgress, progress_for


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "json_output", "kind"),
    [
        (Terminal(), False, RichProgress),
        (Terminal(), True, Progress),  # --json: one object, no bar
        (io.StringIO(), False, Progress),  # piped or redirected: quiet lines only
    ],
)
def test_a_bar_only_on_a_terminal_without_json(stream, json_output, kind):
    assert type(progress_for(json_output, stream)) is kind


def test_the_bar_counts_bytes_and_files():
    screen = Terminal()
    with progress_for(False, screen) as progress:
        progress.start("push", total_bytes=8, total_files=2)
        reader = CountingReader(io.BytesIO(b"12345678"), progress)
        assert reader.read(5) == b"12345" and reader.read() == b"678"
        progress.file_done("a")
        progress.file_done("b")
        assert (progress.bytes_done, progress.files_done) == (8, 2)
    assert "2/2 files" in screen.getvalue()


def test_nothing_is_drawn_off_a_terminal():
    out = io.StringIO()
    with progress_for(False, out) as progress:
        progress.start("pull", total_bytes=3, total_files=1)
        progress.advance(3)
        progress.file_done("a")
    assert out.getvalue() == "" and progress.bytes_done == 3
