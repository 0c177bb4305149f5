"""SQLite write transactions queue on a lock in the process and on one of the host, and always
give them back."""

from __future__ import annotations

import subprocess
import sys
import threading

import peewee
import pytest

from ctxcloud import db as db_module
from ctxcloud.db import QueuedSqliteDatabase


@pytest.fixture
def db(tmp_path):
    database = QueuedSqliteDatabase(
        str(tmp_path / "q.sqlite3"),
        pragmas={"journal_mode": "wal", "busy_timeout": 30000},
        lock_type="IMMEDIATE",
        check_same_thread=False,
        max_connections=16,
    )
    database.execute_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
    database.execute_sql("INSERT INTO counter VALUES (0)")
    # Back to the pool: the writers below take all 16 of its connections.
    database.close()
    yield database
    database.close_all()


def test_the_lock_is_free_after_commit_rollback_and_a_failed_transaction(db):
    with db.atomic():
        assert db._writer.locked()
        db.execute_sql("UPDATE counter SET n = n + 1")
    assert not db._writer.locked()
    with pytest.raises(RuntimeError), db.atomic():
        db.execute_sql("UPDATE counter SET n = n + 1")
        raise RuntimeError("rolled back")
    assert not db._writer.locked()
    with pytest.raises(peewee.OperationalError), db.atomic():
        db.execute_sql("UPDATE no_such_table SET n = 1")
    assert not db._writer.locked()
    with db.atomic(), db.atomic():  # nested: a savepoint, one lock
        db.execute_sql("UPDATE counter SET n = n + 1")
    assert not db._writer.locked()
    assert db.execute_sql("SELECT n FROM counter").fetchone()[0] == 2


def test_concurrent_writers_all_get_their_turn(db):
    barrier = threading.Barrier(16)
    failures: list[BaseException] = []

    def write() -> None:
        barrier.wait()
        try:
            for _ in range(20):
                with db.atomic():
                    (n,) = db.execute_sql("SELECT n FROM counter").fetchone()
                    db.execute_sql("UPDATE counter SET n = ?", (n + 1,))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=write) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert db.execute_sql("SELECT n FROM counter").fetchone()[0] == 16 * 20
    assert not db._writer.locked()


# Another process (a second gunicorn worker, the CLI) holding the host's writer lock: it
# takes the lock, says so, and lets go when its stdin closes (or when it is killed).
HOLDER = """
import sys
from ctxcloud.host_writer_lock import HostWriterLock
lock = HostWriterLock(sys.argv[1])
assert lock.acquire(5)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(db):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"{db.database}-writer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait(10)


def _write_in_thread(db):
    began = threading.Event()

    def write() -> None:
        with db.atomic():
            began.set()
            db.execute_sql("UPDATE counter SET n = n + 1")
        db.close()

    thread = threading.Thread(target=write)
    thread.start()
    return thread, began


def test_a_writer_waits_while_another_process_writes_then_goes_in(db, holder):
    thread, began = _write_in_thread(db)
    # SQLite itself is free (the other process holds only the host's lock): without the
    # host lock the transaction would begin at once.
    assert not began.wait(0.5)
    holder.stdin.close()  # the other process's transaction ends
    thread.join(10)
    assert began.is_set() and not thread.is_alive()
    assert db.execute_sql("SELECT n FROM counter").fetchone()[0] == 1
    assert not db._writer.locked()


def test_a_killed_writer_process_leaves_no_lock_behind(db, holder):
    holder.kill()
    holder.wait(10)
    thread, began = _write_in_thread(db)
    thread.join(10)
    assert began.is_set() and not thread.is_alive()


def test_the_wait_for_the_host_lock_is_bounded(db, holder, monkeypatch):
    # A process that never lets go (stopped, hung): past the queue's bound the writer goes on
    # and SQLite arbitrates, as it did before the host lock.
    monkeypatch.setattr(db_module, "WRITER_QUEUE_TIMEOUT", 0.2)
    thread, began = _write_in_thread(db)
    thread.join(10)
    assert began.is_set() and not thread.is_alive()
    assert db.execute_sql("SELECT n FROM counter").fetchone()[0] == 1
    assert not db._writer.locked()
