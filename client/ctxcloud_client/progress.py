"""Progress of transfers: a rich bar when stdout is a terminal, nothing otherwise (the
commands print their own quiet lines, or one JSON object)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import IO, Any


class Progress:
    """Counts bytes and files of a transfer; draws nothing (the non-terminal case)."""

    def __init__(self) -> None:
        self.bytes_done = 0
        self.files_done = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self, description: str, total_bytes: int, total_files: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.bytes_done += nbytes

    def file_done(self, path: str) -> None:
        self.files_done += 1

    def close(self) -> None:
        pass


class RichProgress(Progress):
    """A rich bar of bytes (with speed and time left) and a count of files."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=Console(file=stream),
            transient=True,
        )
        self._task: Any = None
        self._total_files = 0

    def start(self, description: str, total_bytes: int, total_files: int) -> None:
        self._total_files = total_files
        self._bar.start()
        self._task = self._bar.add_task(
            description, total=max(total_bytes, 1), files=f"0/{total_files} files"
        )

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        if self._task is not None:
            self._bar.update(self._task, advance=nbytes)

    def file_done(self, path: str) -> None:
        super().file_done(path)
        if self._task is not None:
            self._bar.update(self._task, files=f"{self.files_done}/{self._total_files} files")

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def progress_for(json_output: bool, stream: IO[str] | None = None) -> Progress:
    """A bar when `stream` (stdout) is a terminal and no JSON was asked for."""
    stream = stream if stream is not None else sys.stdout
    if json_output or not stream.isatty():
        return Progress()
    return RichProgress(stream)


class CountingReader:
    """A binary file that reports each read to a Progress; seekable like the file, so a
    retried upload rewinds it (the bar then counts the bytes sent again)."""

    def __init__(self, file: IO[bytes], progress: Progress) -> None:
        self._file = file
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._progress.advance(len(chunk))
        return chunk

    def seekable(self) -> bool:
        return self._file.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()
