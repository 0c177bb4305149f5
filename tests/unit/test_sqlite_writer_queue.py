"""SQLite write transactions queue on a lock in the process, and always give it back."""

from __future__ import annotations

import threading

import peewee
import pytest

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
