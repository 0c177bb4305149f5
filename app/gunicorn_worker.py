"""ctxcloud's gunicorn worker: gthread, with slow and idle clients kept off the threads.

gunicorn's threaded worker hands every connection to a thread, which then blocks on the
socket for as long as the client takes to send its request: a few hundred idle sockets, or a
few that trickle a header byte a second, hold every thread and the service stops answering.
This worker (``worker_class`` in config/gunicorn.conf.py) changes three things:

- **Headers are gathered by the event loop, not by a thread.** A new connection, or a
  kept-alive one that speaks again, waits in the poller until its request head is complete
  (or past gunicorn's size limits); only then does it take a thread. A head not complete
  within ``header_timeout`` seconds is answered 408 (if anything arrived) and closed.
- **Every blocking read and write has a deadline** (app/slow_clients.py): the body must keep
  a minimum average rate (else the app answers 408 ``request_timeout`` and nothing is
  stored), and a response write must make progress within ``send_timeout`` seconds.
- **A worker whose threads are all busy stops accepting while another has a thread free**,
  so new connections go there instead of queueing behind a busy one; with every worker busy,
  it accepts and the request queues first come, first served.
- **Kept-alive connections are spread evenly over the workers** (app/accept_balance.py): a
  worker holding more connections than another with a thread free stops accepting until it
  is even again, and answers a kept-alive request with ``Connection: close`` so that its
  client reconnects to the other.

gunicorn's own error answers (bad request line, 414, 431, a timed-out head...) are
``application/problem+json`` like the app's. TLS and HTTP/2 connections keep gunicorn's
stock handling (the shipped deployments terminate TLS at the proxy).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import selectors
import socket
import threading
import time
from collections import deque
from datetime import timedelta
from functools import partial
from http import HTTPStatus
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers import gthread

from ctxcloud.accept_balance import BOARD
from ctxcloud.bulkhead import WORKER_THREADS_ENV
from ctxcloud.slow_clients import GuardedSocket, RequestTimeout, SlowClientLimits

__all__ = ["ThreadWorker", "problem_bytes"]

PROBLEM_MIMETYPE = "application/problem+json"
# The longest detail echoed back (gunicorn's messages quote the offending input).
MAX_DETAIL = 200

# gunicorn's parse errors by the status and problem code they answer with.
_CLIENT_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (http_errors.LimitRequestLine, 414, "uri_too_long"),
    (http_errors.LimitRequestHeaders, 431, "request_header_fields_too_large"),
    (http_errors.UnsupportedTransferCoding, 501, "not_implemented"),
    (http_errors.ExpectationFailed, 417, "expectation_failed"),
    (http_errors.ForbiddenProxyRequest, 403, "forbidden"),
    (http_errors.ConfigurationProblem, 500, "internal_error"),
    (http_errors.ParseException, 400, "bad_request"),
)


# Reading states of a connection whose head is being gathered.
_WAITING, _COMPLETE, _GONE = "waiting", "complete", "gone"
# Closing: how long to read what the peer still sends after our FIN, in pieces of this size.
LINGER_SECONDS = 2.0
LINGER_READ = 64 * 1024
LINGER_READS = 16


def problem_bytes(status: int, code: str, detail: str, request_id: str | None = None) -> bytes:
    """A whole HTTP/1.1 response carrying a problem+json body; the connection then closes."""
    request_id = request_id or secrets.token_hex(16)
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {
            "type": f"urn:ctxcloud:problem:{code}",
            "title": phrase,
            "status": status,
            "detail": detail[:MAX_DETAIL],
            "code": code,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_MIMETYPE}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _classify(exc: BaseException) -> tuple[int, str, str]:
    """(status, code, detail) of an error gunicorn met outside the app."""
    if isinstance(exc, RequestTimeout):
        return 408, "request_timeout", f"The request {exc.phase} did not arrive in time."
    for kind, status, code in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return status, code, _describe(exc, status)
    return 500, "internal_error", "The server failed to answer this request."


def _describe(exc: BaseException, status: int) -> str:
    if status == 414:
        return "The request line is too long."
    if status == 431:
        return f"The request's header fields are too large: {exc}."
    return f"The request is malformed: {exc}."


def head_complete(data: bytes | bytearray) -> bool:
    """Whether `data` holds a whole request head (empty lines before it are allowed)."""
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    return data.find(b"\r\n\r\n", start) >= 0 or data.find(b"\n\n", start) >= 0


def _body_left(req: Any, conn: gthread.TConn) -> bool:
    """Whether part of the request body is still on the network (not read, not buffered)."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if isinstance(reader, LengthReader):
        if reader.length <= 0:
            return False
        buffered = len(conn.parser.unreader.buf.getbuffer()) + len(conn.sock.pending)
        return reader.length > buffered
    if isinstance(reader, ChunkedReader):
        return reader.parser is not None
    return reader is not None


# Seconds between looks at the board while held back by the balance (app/accept_balance.py).
HELD_BACK_POLL = 0.005
# After a connection closed to even the load, the pause before another is (_shed_if_over).
SHED_PAUSE = 0.05


class ThreadWorker(gthread.ThreadWorker):
    """gthread with slow-client bounds; ``configured(...)`` makes a subclass with the limits."""

    limits = SlowClientLimits()
    # Read per event while gathering a head; the parser's limits decide what is too big.
    HEAD_READ = 64 * 1024

    @classmethod
    def configured(cls, limits: SlowClientLimits) -> type[ThreadWorker]:
        """This worker with `limits` (gunicorn takes a class for ``worker_class``)."""
        return type(cls.__name__, (cls,), {"limits": limits, "__module__": cls.__module__})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        # TLS and HTTP/2 read their own preambles from the raw socket: stock handling there.
        self.guarded = not cfg.is_ssl and cfg.http2_cleartext == "off"
        self.busy = 0
        self.board_slot: int | None = None  # claimed once forked (init_process)
        self.held_back = False  # not accepting only because another worker holds fewer
        # A connection answered with Connection: close to even the load, not closed yet.
        self.shedding = False
        self.shed_closed_at = 0.0
        self._shed_lock = threading.Lock()
        self.lingering: deque[gthread.TConn] = deque()
        self.max_head = (
            cfg.limit_request_line + cfg.limit_request_fields * (cfg.limit_request_field_size + 2)
            if cfg.limit_request_line and cfg.limit_request_fields and cfg.limit_request_field_size
            else 1024 * 1024
        )

    def init_process(self) -> None:
        # The app sizes its bulkheads (app/bulkhead.py) from this worker's threads.
        os.environ[WORKER_THREADS_ENV] = str(self.cfg.threads)
        self.board_slot = BOARD.claim(start=self.age)
        try:
            super().init_process()  # loads the app, then runs until the worker stops
        finally:
            if self.board_slot is not None:
                BOARD.release(self.board_slot)

    def notify(self) -> None:
        """The heartbeat, once per turn of the event loop: this worker's connections go on
        the board too (app/accept_balance.py)."""
        super().notify()
        self._publish()

    def _publish(self) -> None:
        """This worker's connections, and whether it can take more (a thread free, not
        stopping), for the other workers' balancing."""
        if self.board_slot is not None:
            free = self.alive and self.busy < self.cfg.threads
            BOARD.publish(self.board_slot, self.nr_conns, free)

    # -- accepting -------------------------------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        """Accept unless another worker should take the connection: one with a thread free
        while every thread here is busy, or (balance) one holding fewer connections.

        With every thread busy here and none free elsewhere, the worker holding fewest
        connections still accepts: the new connection's request then queues with the
        kept-alive ones (first come, first served) instead of waiting in the listen backlog
        until a thread happens to be free when the loop looks; under steady load that wait
        was the slowest one in a hundred (over a second at 64 connections)."""
        self.held_back = False
        busy = self.guarded and self.busy >= self.cfg.threads
        if enabled and self.alive and self.board_slot is not None:
            self.held_back = not BOARD.may_accept(self.board_slot, self.nr_conns, not busy)
            enabled = not self.held_back
        elif busy and enabled:
            enabled = self.board_slot is None and self.alive  # alone: nobody else can take it
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Held back for another worker, nothing tells this one when that changes: it looks
        again every ``HELD_BACK_POLL`` seconds instead of once a second."""
        if self.held_back:
            timeout = min(timeout, HELD_BACK_POLL)
        super().wait_for_and_dispatch_events(timeout)

    def _update_accepting(self) -> None:
        """Look again at whether to accept (``set_accept_enabled``: threads and the balance;
        gunicorn looks at connection counts alone)."""
        if self.alive:
            self.set_accept_enabled(self.nr_conns < self.worker_connections)

    def accept(self, listener: Any) -> None:
        if not self.guarded:
            return super().accept(listener)
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        client.setblocking(False)
        sock = GuardedSocket(client, self.limits)
        self._await_head(gthread.TConn(self.cfg, sock, address, listener.getsockname()))
        if self.board_slot is not None:
            self._publish()
            self._update_accepting()
        return None

    # -- gathering request heads in the event loop ----------------------------

    def _await_head(self, conn: gthread.TConn) -> None:
        """Collect the head without a thread: hand it to one when complete, else wait."""
        conn.timeout = time.monotonic() + self.limits.header_timeout
        conn.sock.expect_headers(conn.timeout)
        state = self._read_head(conn)
        if state == _WAITING:
            self.pending_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn)
            )
        else:
            self._leave_loop(conn, state)

    def _read_head(self, conn: gthread.TConn) -> str:
        """Read what the socket has: _WAITING for more, _COMPLETE, or _GONE."""
        sock: GuardedSocket = conn.sock
        while True:
            try:
                data = sock.sock.recv(self.HEAD_READ)
            except (BlockingIOError, InterruptedError):
                return _WAITING
            except OSError:
                return _GONE
            if not data:  # the client went away before sending a request
                return _GONE
            sock.pending += data
            if head_complete(sock.pending) or len(sock.pending) > self.max_head:
                return _COMPLETE

    def _on_head_bytes(self, conn: gthread.TConn, _fileobj: Any) -> None:
        state = self._read_head(conn)
        if state != _WAITING:
            self.poller.unregister(conn.sock)
            self.pending_conns.remove(conn)
            self._leave_loop(conn, state)

    def _leave_loop(self, conn: gthread.TConn, state: str) -> None:
        if state == _COMPLETE:
            conn.data_ready = True
            self.enqueue_req(conn)
        else:
            self._closed(conn)

    def on_client_socket_readable(self, conn: gthread.TConn, client: Any) -> None:
        """A kept-alive connection speaks again: gather its next head in the loop too."""
        if not self.guarded:
            return super().on_client_socket_readable(conn, client)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_head(conn)
        return None

    def murder_pending(self) -> None:
        """Heads past their deadline get a 408 if part of a request arrived; lingering
        closes past theirs are closed."""
        if not self.guarded:
            return super().murder_pending()
        now = time.monotonic()
        while self.pending_conns and self.pending_conns[0].timeout <= now:
            conn = self.pending_conns.popleft()
            self._unregister(conn)
            if conn.sock.pending:
                status, code, detail = _classify(RequestTimeout("headers"))
                _send_nonblocking(conn.sock.sock, problem_bytes(status, code, detail))
            self._linger(conn)
        while self.lingering and self.lingering[0].timeout <= now:
            conn = self.lingering.popleft()
            self._unregister(conn)
            self._closed(conn)
        return None

    def _unregister(self, conn: gthread.TConn) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)

    # -- closing without blocking the loop -------------------------------------

    def _linger(self, conn: gthread.TConn) -> None:
        """Close like gunicorn's close_graceful (FIN, then read until the peer closes, so no
        RST cuts the last answer), but waiting in the poller instead of on the loop's thread."""
        raw = conn.sock.sock
        try:
            raw.setblocking(False)
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            self._closed(conn)
            return
        if self._drained(raw):
            self._closed(conn)
            return
        conn.timeout = time.monotonic() + LINGER_SECONDS
        self.lingering.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger, conn))

    @staticmethod
    def _drained(raw: socket.socket) -> bool:
        """Read and discard what arrived; True when done (the peer closed, or sent too much)."""
        for _ in range(LINGER_READS):
            try:
                if not raw.recv(LINGER_READ):
                    return True
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
        return True

    def _on_linger(self, conn: gthread.TConn, _fileobj: Any) -> None:
        if self._drained(conn.sock.sock):
            self._unregister(conn)
            self.lingering.remove(conn)
            self._closed(conn)

    def _closed(self, conn: gthread.TConn) -> None:
        self.nr_conns -= 1
        if getattr(conn, "shed", False):
            self.shed_closed_at = time.monotonic()
            self.shedding = False
        conn.close()
        self._update_accepting()

    # -- threads ---------------------------------------------------------------

    def enqueue_req(self, conn: gthread.TConn) -> None:
        self.busy += 1
        super().enqueue_req(conn)
        self._update_accepting()
        if self.busy >= self.cfg.threads:
            self._publish()

    def finish_request(self, conn: gthread.TConn, fs: Any) -> None:
        self.busy -= 1
        if self.busy == self.cfg.threads - 1:
            self._publish()  # a thread is free again
        if not self.guarded:
            super().finish_request(conn, fs)
            self._update_accepting()
            return
        try:
            keepalive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keepalive = False
        if not keepalive:
            self._linger(conn)
        elif conn.parser is not None and (early := conn.parser.unreader.take_buffered()):
            # Bytes of the next request came with this one (pipelining): they must make a
            # whole head before a thread is spent on them, like any other request.
            conn.sock.pending[:0] = early
            conn.sock.setblocking(False)
            self._await_head(conn)
        else:
            super().finish_request(conn, fs)
        self._update_accepting()

    def handle_request(self, req: Any, conn: gthread.TConn) -> bool:
        if not self.guarded:
            return super().handle_request(req, conn)
        self._shed_if_over(req, conn)
        # A body cut for being too slow leaves the rest unread: the answer closes the connection.
        conn.sock.expect_body(on_timeout=partial(setattr, req, "must_close", True))
        try:
            keepalive = super().handle_request(req, conn)
        finally:
            conn.sock.unguarded()
        # gunicorn would read what is left of a body the app did not read (a refused upload)
        # on this thread, for up to 5 s; a slow client would hold it all that time. Unless
        # the rest is already here, close instead: the loop lingers without a thread.
        return keepalive and not _body_left(req, conn)

    def _shed_if_over(self, req: Any, conn: gthread.TConn) -> None:
        """Answer with ``Connection: close`` when this worker holds more kept-alive
        connections than its share (app/accept_balance.py): the client reconnects and
        another worker takes the connection. Accepting evenly is not enough, since
        connections stick to the worker that accepted them: a burst that arrived while one
        worker's threads were busy, or clients that went away from the other, leave the
        load uneven for as long as the connections live (4 KiB PUTs with wrk: 13 of 16
        connections on one worker for the whole run).

        One connection at a time, and not again within ``SHED_PAUSE`` seconds of the last
        one closing: the board then shows where it went before the next is moved, so a
        worker never sheds past even and the other never sheds them back."""
        if self.board_slot is None or self.shedding:
            return
        if time.monotonic() - self.shed_closed_at < SHED_PAUSE:
            return
        if not BOARD.should_shed(self.board_slot, self.nr_conns):
            return
        with self._shed_lock:
            if self.shedding:
                return
            self.shedding = True
        conn.shed = True
        req.must_close = True

    # -- errors outside the app ------------------------------------------------

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's error pages as problem+json, logged and counted like gunicorn's own."""
        status, code, detail = _classify(exc)
        if status >= 500:
            self.log.exception("Error handling request", exc_info=exc)
        else:
            ip = (addr or ("", -1))[0]
            self.log.warning("Invalid request from ip=%s: %s", ip, exc)
        request_id = secrets.token_hex(16)
        if req is not None:
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"] = (addr or ("", -1))[0]
            resp = Response(req, client, self.cfg)
            resp.status = f"{status} {HTTPStatus(status).phrase}"
            resp.response_length = 0
            resp.headers.append(("X-Request-ID", request_id))
            self.log.access(resp, req, environ, timedelta(0))

        _send_nonblocking(
            getattr(client, "sock", client), problem_bytes(status, code, detail, request_id)
        )


def _send_nonblocking(raw: socket.socket, data: bytes) -> None:
    """Best effort, never blocking: the client may be gone or not reading."""
    try:
        previous = raw.gettimeout()
        raw.setblocking(False)
        try:
            raw.send(data)
        finally:
            raw.settimeout(previous)
    except OSError:
        pass
