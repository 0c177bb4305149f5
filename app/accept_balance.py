"""Kept-alive connections spread evenly over a server's workers.

A gthread worker accepts whenever it has room, and every worker is woken for each new
connection: whichever runs first takes it. Kept-alive connections then stay with the worker
that accepted them, so a burst of clients (a load balancer's pool, an agent fleet, wrk) can
land mostly on one worker, and since a worker is one Python process it uses at most one CPU:
the server then runs at the speed of one worker. Measured with wrk on 2 workers x 8 threads
(bench/README.md): the busiest worker did 0.99 of the work in one run of five.

Here the workers of one server (forked from one master) share a small board in memory: each
publishes how many connections it holds and whether it has a thread free. A worker holding
more connections than another worker with a thread free (give or take an eighth of them)
stops accepting until that is no longer so, and the other takes the next connections; held
back, it looks at the board every few milliseconds (``HELD_BACK_POLL`` in
app/gunicorn_worker.py), so a connection never waits longer for the right worker. A worker
stopping, or silent for ``STALE_AFTER`` seconds (hung, killed) is left out, so a stuck
worker never stops the others; one with every thread busy is left out too while another
has a thread free (when all are busy, the one holding fewest connections takes the next).

Connections stick to the worker that accepted them, so the load can still become uneven
(a burst accepted while the other worker's threads were all busy, clients leaving one
worker): a worker holding more than its share answers a kept-alive request with
``Connection: close``, one connection at a time (``should_shed``; app/gunicorn_worker.py),
and its client reconnects to the worker holding fewer.

The board is an anonymous shared mapping made when this module is imported, which the
gunicorn master does (config/gunicorn.conf.py names the worker class), so every worker it
forks shares it. Each worker claims a free slot when it starts, looking from its age (the
master numbers the workers it spawns, so workers starting together look at different slots
first), and frees it when it stops; a slot of a dead worker is taken again once its
heartbeat is stale. A server of more than ``SLOTS`` workers balances its first ``SLOTS``.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

SLOTS = 16
# pid, connections, a thread free (0/1), heartbeat (time.monotonic(): the same clock in every
# process of the host).
_RECORD = struct.Struct("<qqqd")
STALE_AFTER = 5.0


class ConnectionBoard:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        self.map = mmap.mmap(-1, slots * _RECORD.size)  # MAP_SHARED: survives fork, shared
        self._all = struct.Struct("<" + _RECORD.format[1:] * slots)

    def _read(self, slot: int) -> tuple[int, int, int, float]:
        return _RECORD.unpack_from(self.map, slot * _RECORD.size)

    def claim(self, start: int = 0) -> int | None:
        """A free slot for this process, looking from `start` (None: the board is full).

        Claimed as a worker starts, before it loads the app: it counts as free with no
        connection, so a worker already serving leaves it the next connections (a burst of
        clients right after a start is spread too). One that never gets going is left out
        once its heartbeat is ``STALE_AFTER`` seconds old."""
        now = time.monotonic()
        for step in range(self.slots):
            slot = (start + step) % self.slots
            pid, _, _, heartbeat = self._read(slot)
            if pid == 0 or now - heartbeat > STALE_AFTER:
                self.publish(slot, 0, True)
                if self._read(slot)[0] == os.getpid():
                    return slot
        return None

    def publish(self, slot: int, connections: int, free: bool) -> None:
        _RECORD.pack_into(
            self.map,
            slot * _RECORD.size,
            os.getpid(),
            connections,
            int(free),
            time.monotonic(),
        )

    def release(self, slot: int) -> None:
        _RECORD.pack_into(self.map, slot * _RECORD.size, 0, 0, 0, 0.0)

    def fewest_elsewhere(self, slot: int) -> tuple[int | None, int | None]:
        """The fewest connections held by another live worker with a thread free, and by
        any other live worker (None: no such worker)."""
        now = time.monotonic()
        fewest_free: int | None = None
        fewest: int | None = None
        values = self._all.unpack_from(self.map, 0)
        for other in range(self.slots):
            pid, connections, free, heartbeat = values[4 * other : 4 * other + 4]
            if other == slot or pid == 0 or now - heartbeat > STALE_AFTER:
                continue
            if fewest is None or connections < fewest:
                fewest = connections
            if free and (fewest_free is None or connections < fewest_free):
                fewest_free = connections
        return fewest_free, fewest

    def may_accept(self, slot: int, connections: int, free_here: bool = True) -> bool:
        """Whether to take the next connection.

        With a thread free here: not while holding more than another worker with a thread
        free, give or take an eighth (a flood of new connections then changes hands every
        few connections, not at each). With every thread busy here: not while another worker
        has a thread free, nor while another busy one holds fewer (the same give or take):
        when all are busy the one holding fewest takes it, so the connections of a burst
        that arrives while every thread is busy still spread."""
        fewest_free, fewest = self.fewest_elsewhere(slot)
        if free_here:
            return fewest_free is None or connections <= fewest_free + fewest_free // 8
        if fewest_free is not None:
            return False
        return fewest is None or connections <= fewest + fewest // 8

    def should_shed(self, slot: int, connections: int) -> bool:
        """Whether to close a kept-alive connection after its answer, for its client to
        reconnect to another worker: when another worker with a thread free holds fewer
        connections by more than one, give or take an eighth (that one then takes the new
        connection: ``may_accept`` holds this one back)."""
        fewest_free, _ = self.fewest_elsewhere(slot)
        return fewest_free is not None and connections > fewest_free + 1 + fewest_free // 8


# Made in the master at import, shared by the workers it forks.
BOARD = ConnectionBoard()
