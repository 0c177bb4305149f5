"""A TCP server that accepts connections and never answers: a dependency that hangs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class BlackHole:
    """Listens on 127.0.0.1:<free port>, accepts every connection, reads and sends nothing."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port: int = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        """Stop listening and drop every held connection (the hang ends: peers see a reset)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.listener.close()
        self.thread.join(5)
        for conn in self.held:
            conn.close()


@contextmanager
def black_hole() -> Iterator[BlackHole]:
    """A BlackHole for the block, closed afterwards."""
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()
