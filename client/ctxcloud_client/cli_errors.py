"""The `ctx` command's exit codes and the exceptions that carry them to `main`."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3


class CommandError(Exception):
    """A failure `main` reports on stderr (and as `{"error": ...}` with --json), exiting
    `exit_code`; `extra` goes into the JSON object as it is."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, code: str = "error", **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra


class UsageError(CommandError):
    exit_code = EXIT_USAGE

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, code="usage", **extra)


class ConflictError(CommandError):
    """The remote moved where the folder changed (or the folder where the remote changed):
    nothing was written; pull first (or decide with --force)."""

    exit_code = EXIT_CONFLICT

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, code="conflict", **extra)
