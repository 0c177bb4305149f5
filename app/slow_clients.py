"""Bounds on slow clients: a deadline for request headers, a minimum rate for request bodies
and an idle limit on response writes, enforced on the connection's socket.

Reads and writes on a socket block a worker thread for as long as the peer takes; a client
that trickles a byte a second (or nothing at all) would hold the thread forever. The server
(app/gunicorn_worker.py) wraps each client socket in a ``GuardedSocket`` whose every recv and
send waits at most until the current phase's deadline:

- headers: complete within ``header_timeout`` seconds of the connection's first byte being
  awaited (new connections, and kept-alive ones when they speak again);
- body: at least ``body_min_rate`` bytes a second on average, after ``body_grace`` seconds of
  credit, counted from the first body read (``deadline = start + grace + bytes / rate``), so a
  fast client is never cut and a trickle is cut as soon as it falls behind;
- response: each write must make progress within ``send_timeout`` seconds.

A body read past its deadline raises ``RequestTimeout``, which the app answers with a 408
``request_timeout`` problem (app/errors.py) and which closes the connection. This module
imports nothing of Flask: the server loads it before the app.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["GuardedSocket", "RequestTimeout", "SlowClientLimits"]

log = logging.getLogger("ctxcloud.slow_clients")


class RequestTimeout(Exception):
    """The client took longer than its deadline to send the request (headers or body).

    Deliberately not an OSError: werkzeug turns OSErrors raised by the input stream into
    "client disconnected", which is a different answer (400).
    """

    def __init__(self, phase: str) -> None:
        super().__init__(f"the request {phase} did not arrive in time")
        self.phase = phase


@dataclass(frozen=True)
class SlowClientLimits:
    """How long a client may take; every value in seconds except the rate (bytes/second)."""

    header_timeout: float = 10.0
    body_min_rate: float = 4096.0
    body_grace: float = 10.0
    send_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_min_rate", "body_grace", "send_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)!r}")


_HEADERS, _BODY = "headers", "body"


class GuardedSocket:
    """A client socket whose blocking reads and writes end at the current phase's deadline.

    Bytes read ahead by the server's event loop (``pending``) are served first, so a request
    whose headers were gathered without a thread is parsed without touching the network.
    Everything else (fileno, setblocking, close...) is the wrapped socket's.
    """

    __slots__ = (
        "_body_bytes",
        "_body_started",
        "_deadline",
        "_on_timeout",
        "_phase",
        "limits",
        "pending",
        "sock",
    )

    def __init__(self, sock: socket.socket, limits: SlowClientLimits) -> None:
        self.sock = sock
        self.limits = limits
        self.pending = bytearray()
        self._phase: str | None = None
        self._deadline = 0.0
        self._body_started: float | None = None
        self._body_bytes = 0
        self._on_timeout: Callable[[], None] | None = None

    def __getattr__(self, name: str):
        return getattr(self.sock, name)

    # -- phases ----------------------------------------------------------------

    def expect_headers(self, deadline: float) -> None:
        """The next bytes are a request's head, due by `deadline` (time.monotonic())."""
        self._phase, self._deadline = _HEADERS, deadline

    def expect_body(self, on_timeout: Callable[[], None] | None = None) -> None:
        """The next bytes are the body: the minimum-rate clock starts at its first read.

        `on_timeout` runs before RequestTimeout is raised (the server marks the connection
        to close: the rest of the body is never read).
        """
        self._phase, self._body_started, self._body_bytes = _BODY, None, 0
        self._on_timeout = on_timeout

    def unguarded(self) -> None:
        """No deadline of ours (the server drains or closes with its own bounds)."""
        self._phase = None

    def _time_left(self) -> float | None:
        if self._phase is None:
            return None
        now = time.monotonic()
        if self._phase == _HEADERS:
            return self._deadline - now
        if self._body_started is None:
            self._body_started = now
        limits = self.limits
        allowed = limits.body_grace + self._body_bytes / limits.body_min_rate
        return self._body_started + allowed - now

    # -- reads -----------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        if self.pending:
            data = bytes(self.pending[:size])
            del self.pending[:size]
            return data
        left = self._time_left()
        if left is None:
            return self.sock.recv(size)
        if left <= 0:
            raise self._timed_out()
        previous = self.sock.gettimeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(size)
        except TimeoutError:
            raise self._timed_out() from None
        finally:
            self.sock.settimeout(previous)
        if self._phase == _BODY:
            self._body_bytes += len(data)
        return data

    def _timed_out(self) -> RequestTimeout:
        phase = self._phase or _BODY
        if self._on_timeout is not None:
            self._on_timeout()
        return RequestTimeout(phase)

    # -- writes ----------------------------------------------------------------

    def sendall(self, data: bytes) -> None:
        """Send everything, failing when the peer accepts nothing for `send_timeout` seconds.

        A reader that stopped reading is treated as gone (EPIPE): the server closes the
        connection quietly instead of holding the thread until the kernel gives up.
        """
        view = memoryview(data)
        previous = self.sock.gettimeout()
        if previous == 0.0:  # the server's own non-blocking writes (error pages) stay so
            self.sock.sendall(data)
            return
        self.sock.settimeout(self.limits.send_timeout)
        try:
            while view:
                sent = self.sock.send(view)
                view = view[sent:]
        except TimeoutError:
            log.info(
                "client stopped reading the response: connection closed",
                extra={"send_timeout": self.limits.send_timeout},
            )
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading the response") from None
        finally:
            self.sock.settimeout(previous)

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)
