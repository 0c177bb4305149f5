"""Kept-alive connections spread evenly over a server's workers (app/accept_balance.py).

A worker is one Python process (one CPU at most): when kept-alive connections pile onto one
worker, the server runs at that worker's speed. These run gunicorn with the shipped
configuration and count, per worker, the established connections it holds."""

from __future__ import annotations

import http.client
import os
import time

import psutil
import pytest

from ctxcloud.accept_balance import STALE_AFTER, ConnectionBoard
from tests.support.server import gunicorn

pytestmark = [pytest.mark.server, pytest.mark.integration]

LIVE = "/api/v1/health/live"


def held_by_worker(pids: list[int], port: int) -> dict[int, int]:
    """Established connections to `port` each worker holds."""
    held = {}
    for pid in pids:
        held[pid] = sum(
            1
            for conn in psutil.Process(pid).net_connections(kind="tcp")
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == port
        )
    return held


def open_kept_alive(url: str, count: int) -> list[http.client.HTTPConnection]:
    """`count` connections, one after another, each answered once and kept open."""
    host, port = url.removeprefix("http://").split(":")
    connections = []
    for _ in range(count):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", LIVE)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        connections.append(conn)
    return connections


@pytest.fixture
def server(app_config, tmp_path):
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    with gunicorn(env, tmp_path / "logs", workers=2, threads=4) as running:
        yield running


def test_kept_alive_connections_are_spread_over_the_workers(server):
    port = int(server.url.rsplit(":", 1)[1])
    pids = server.worker_pids()
    connections = open_kept_alive(server.url, 16)
    try:
        held = held_by_worker(pids, port)
        assert sum(held.values()) == 16, held
        assert max(held.values()) - min(held.values()) <= 1, held
    finally:
        for conn in connections:
            conn.close()


def test_the_board_balances_against_free_live_workers_only(monkeypatch):
    board = ConnectionBoard(slots=4)
    now = [100.0]
    monkeypatch.setattr("ctxcloud.accept_balance.time.monotonic", lambda: now[0])
    monkeypatch.setattr(os, "getpid", lambda: 1001)
    mine = board.claim(start=0)
    monkeypatch.setattr(os, "getpid", lambda: 1002)
    other = board.claim(start=0)
    assert (mine, other) == (0, 1)
    # A worker just claimed counts as free with no connection: leave it the next one.
    monkeypatch.setattr(os, "getpid", lambda: 1001)
    board.publish(mine, 1, True)
    assert not board.may_accept(mine, 1)
    assert board.may_accept(other, 0)
    # Even: either takes the next.
    monkeypatch.setattr(os, "getpid", lambda: 1002)
    board.publish(other, 1, True)
    assert board.may_accept(mine, 1) and board.may_accept(other, 1)
    assert board.fewest_elsewhere(mine) == (1, 1)
    # A peer with every thread busy is left out: it could not take the connection.
    board.publish(other, 0, False)
    assert board.may_accept(mine, 5)
    assert board.fewest_elsewhere(mine) == (None, 0)
    # Every thread busy here too: the one holding fewest connections takes it.
    assert not board.may_accept(mine, 5, free_here=False)
    assert board.may_accept(mine, 0, free_here=False)
    # Busy here, a thread free there: there, whatever the counts.
    board.publish(other, 9, True)
    assert not board.may_accept(mine, 0, free_here=False)
    # So is a silent one (hung or killed), once its heartbeat is stale.
    board.publish(other, 0, True)
    assert not board.may_accept(mine, 5)
    now[0] += STALE_AFTER + 0.1
    monkeypatch.setattr(os, "getpid", lambda: 1001)
    board.publish(mine, 5, True)
    assert board.may_accept(mine, 5)
    # A released slot is free for the next worker; the stale one is taken again too.
    board.release(mine)
    monkeypatch.setattr(os, "getpid", lambda: 1003)
    assert board.claim(start=0) == 0
    monkeypatch.setattr(os, "getpid", lambda: 1004)
    assert board.claim(start=0) == 1


def test_a_worker_sheds_connections_only_to_a_free_worker_holding_fewer(monkeypatch):
    board = ConnectionBoard(slots=2)
    monkeypatch.setattr(os, "getpid", lambda: 3001)
    mine = board.claim(start=0)
    monkeypatch.setattr(os, "getpid", lambda: 3002)
    other = board.claim(start=1)
    board.publish(other, 7, True)
    assert not board.should_shed(mine, 8)  # one more than the other: even enough
    assert board.should_shed(mine, 9)
    board.publish(other, 0, False)  # fewer, but no thread free: it could not take it
    assert not board.should_shed(mine, 9)
    board.publish(other, 16, True)  # a free thread, and more connections
    assert not board.should_shed(mine, 9)


def test_a_full_board_balances_nothing(monkeypatch):
    board = ConnectionBoard(slots=1)
    monkeypatch.setattr(os, "getpid", lambda: 2001)
    assert board.claim() == 0
    monkeypatch.setattr(os, "getpid", lambda: 2002)
    assert board.claim() is None


def _worker_of(conn: http.client.HTTPConnection, pids: list[int]) -> int:
    """The worker holding the server side of a client connection."""
    local = conn.sock.getsockname()[1]
    for pid in pids:
        for held in psutil.Process(pid).net_connections(kind="tcp"):
            if held.raddr and held.raddr.port == local:
                return pid
    raise AssertionError("no worker holds this connection")


def test_a_worker_holding_more_than_its_share_sends_clients_to_the_other(server):
    """Clients that leave one worker leave the other holding every connection: it answers
    kept-alive requests with Connection: close, one at a time, until they are even, and
    each client reconnects to the worker holding fewer."""
    port = int(server.url.rsplit(":", 1)[1])
    pids = server.worker_pids()
    connections = open_kept_alive(server.url, 8)
    try:
        first = _worker_of(connections[0], pids)
        # Every client of the other worker goes away: 4 connections here, none there.
        for conn in [c for c in connections if _worker_of(c, pids) != first]:
            conn.close()
            connections.remove(conn)
        assert held_by_worker(pids, port)[first] == len(connections) >= 4
        closes, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            held = held_by_worker(pids, port)
            if max(held.values()) - min(held.values()) <= 1:
                break
            for index, conn in enumerate(connections):
                conn.request("GET", LIVE)
                response = conn.getresponse()
                response.read()
                assert response.status == 200
                if response.getheader("Connection", "").lower() == "close":
                    closes += 1
                    conn.close()
                    # The client reconnects, as HTTP clients do after Connection: close.
                    connections[index] = open_kept_alive(server.url, 1)[0]
                    assert _worker_of(connections[index], pids) != first
        held = held_by_worker(pids, port)
        assert max(held.values()) - min(held.values()) <= 1, held
        assert sum(held.values()) == len(connections)
        assert 1 <= closes <= 2  # one at a time: never past even, never back again
    finally:
        for conn in connections:
            conn.close()
