"""The database: peewee on SQLite (embedded default) or PostgreSQL, one pool per app."""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import flask
import peewee
from flask.globals import _cv_app
from playhouse.pool import PooledSqliteDatabase
from playhouse.postgres_ext import PooledPsycopg3Database

from ctxcloud.host_writer_lock import HostWriterLock
from ctxcloud.settings import ConfigError


class AppDatabase(peewee.DatabaseProxy):
    """Resolves to the current app's database, so two apps in one process never share one."""

    __slots__ = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_callbacks", [])

    @property
    def obj(self) -> peewee.Database | None:  # type: ignore[override]
        # Asked on every statement (peewee reads the database through the proxy dozens of
        # times a request): one context lookup, not has_app_context() then current_app.
        context = _cv_app.get(None)
        if context is None:
            return None  # model classes are defined at import time, outside any app
        return context.app.extensions["ctxcloud"].database

    def initialize(self, obj: Any) -> None:
        raise TypeError("the database comes from the current app; configure DATABASE_URL instead")


database = AppDatabase()


class BaseModel(peewee.Model):
    """Base of every model: bound to the current app's database."""

    class Meta:
        database = database
        legacy_table_names = False


class JSONField(peewee.TextField):
    """JSON stored as text: the same on SQLite and PostgreSQL, independent of the bound database.

    (peewee's own JSONField picks its SQL helpers when the model is bound, which a per-app
    database cannot do at import time.)

    Only strict RFC 8259 JSON is written. Rows written before the service refused NaN and
    Infinity may hold them: they read as None (logged once per column), so no response built
    from them is invalid JSON.
    """

    def db_value(self, value: Any) -> Any:
        if value is None or isinstance(value, peewee.Node):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        if "NaN" not in value and "Infinity" not in value:  # inside a string: the slower read
            return json.loads(value)
        return json.loads(value, parse_constant=lambda _: self._non_finite())

    def _non_finite(self) -> None:
        column = f"{self.model._meta.table_name}.{self.column_name}"
        if column not in _NON_FINITE_COLUMNS:
            _NON_FINITE_COLUMNS.add(column)
            _log.warning(
                "stored JSON holds NaN or Infinity (written before they were refused); "
                "read as null",
                extra={"column": column},
            )
        return None


# Columns already logged as holding NaN or Infinity.
_NON_FINITE_COLUMNS: set[str] = set()
_log = logging.getLogger("ctxcloud.db")


class BytesField(peewee.BlobField):
    """Binary values as plain bytes on every database."""

    def db_value(self, value: Any) -> Any:
        if isinstance(value, memoryview | bytearray):
            value = bytes(value)
        return value

    def python_value(self, value: Any) -> Any:
        return None if value is None else bytes(value)


def utcnow() -> datetime.datetime:
    """Now, as naive UTC: how every timestamp is stored, the same on SQLite and PostgreSQL."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def database_url(config: Mapping[str, Any]) -> str:
    """The configured URL, or the embedded default's SQLite file in the data directory."""
    url = config.get("DATABASE_URL")
    if url:
        return str(url)
    return "sqlite:///" + os.path.join(config["DATA_DIR"], "ctxcloud.sqlite3")


WRITER_QUEUE_TIMEOUT = 30.0


class QueuedSqliteDatabase(PooledSqliteDatabase):
    """SQLite whose write transactions queue: on a lock inside the process, then on one of
    the host (app/host_writer_lock.py).

    SQLite lets one writer in at a time and makes the others poll (its busy handler sleeps
    1, 2, 5... up to 100 ms between tries), so under many concurrent writers some wait far
    longer than their turn. Threads of one process wait on a lock instead and go in as soon
    as the writer before them commits; one thread per process at a time then waits for the
    host's lock, which another process's writer gets within a millisecond of a commit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._held = threading.local()
        self._host = HostWriterLock(f"{self.database}-writer")

    def begin(self, lock_type: str | None = None) -> None:
        # Bounded like SQLite's own busy timeout: past it, go on and let SQLite arbitrate.
        deadline = time.monotonic() + WRITER_QUEUE_TIMEOUT
        held = self._held
        held.value = self._writer.acquire(timeout=WRITER_QUEUE_TIMEOUT)
        held.host = held.value and self._host.acquire(max(0.0, deadline - time.monotonic()))
        try:
            super().begin(lock_type)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        held = self._held
        if getattr(held, "host", False):
            held.host = False
            self._host.release()
        if getattr(held, "value", False):
            held.value = False
            self._writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()


def postgres_bounds(config: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    """libpq settings that bound every wait on PostgreSQL (the URL's own settings win).

    Connecting gives up after DATABASE_CONNECT_TIMEOUT seconds; TCP keepalives and
    tcp_user_timeout notice a server or network gone silent mid-query within seconds (the
    kernel default is many minutes); the server ends a statement after
    DATABASE_STATEMENT_TIMEOUT seconds, a wait for a row lock after DATABASE_LOCK_TIMEOUT,
    and a transaction left idle after a minute. Each failure is a 503 for the request.
    """
    statement = int(float(config.get("DATABASE_STATEMENT_TIMEOUT", 30)) * 1000)
    lock = int(float(config.get("DATABASE_LOCK_TIMEOUT", 10)) * 1000)
    server = (
        f"-c statement_timeout={statement} -c lock_timeout={lock} "
        "-c idle_in_transaction_session_timeout=60000"
    )
    bounds: dict[str, Any] = {
        "connect_timeout": int(config.get("DATABASE_CONNECT_TIMEOUT", 3)),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 15000,
    }
    bounds = {name: value for name, value in bounds.items() if name not in given}
    bounds["options"] = f"{server} {given.get('options', '')}".strip()
    return bounds


def open_database(config: Mapping[str, Any]) -> peewee.Database:
    """Build (not connect) the pooled database the URL names."""
    url = database_url(config)
    parsed = urlparse(url)
    pool = {
        "max_connections": int(config.get("DATABASE_POOL_SIZE", 16)),
        "stale_timeout": 300,
        "timeout": float(config.get("DATABASE_POOL_TIMEOUT", 10)),
    }
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :]
        if not path:
            raise ConfigError("CTXCLOUD_DATABASE_URL: sqlite URLs need a file path")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return QueuedSqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": 30000,
                "synchronous": "normal",
                "cache_size": -16000,
            },
            # Writers take the lock up front, so two writers never deadlock on upgrade.
            lock_type="IMMEDIATE",
            check_same_thread=False,
            **pool,
        )
    if parsed.scheme in ("postgresql", "postgres"):
        options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        options.update(postgres_bounds(config, options))
        return PooledPsycopg3Database(
            unquote(parsed.path.lstrip("/")) or "postgres",
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            **options,
            **pool,
        )
    raise ConfigError(
        f"CTXCLOUD_DATABASE_URL: unsupported scheme {parsed.scheme!r} (use sqlite or postgresql)"
    )


def describe_database(db: peewee.Database) -> str:
    """A loggable name for the database that never includes a password."""
    kind = "postgresql" if isinstance(db, peewee.PostgresqlDatabase) else "sqlite"
    return f"{kind}:{db.database}"


def for_update(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """Lock the selected rows where the database can; SQLite's IMMEDIATE transactions already do."""
    if database.obj.for_update:
        return query.for_update()
    return query


def _with_markers(
    build: Callable[..., peewee.Query], count: int, wrap: Callable[[str], Any]
) -> tuple[peewee.Query, str, list[int]]:
    """The query `build` makes with `count` markers (each as `wrap` hands it over), its SQL for
    the current database, and which value goes to each parameter of that SQL."""
    markers = [f"\x00prepared-{index}\x00" for index in range(count)]
    query = build(*(wrap(marker) for marker in markers))
    sql, params = query.sql()
    return query, sql, [markers.index(param) for param in params]


class PreparedSelect:
    """A hot model SELECT whose SQL is built once per database kind, then run with new values.

    peewee spends most of a simple lookup generating its SQL, and a hot lookup (a project by
    tenant and id, on every request) always has the same shape: only the values change.
    `build(*markers)` returns the query with each marker used exactly once as a value; the
    first row comes back as a model instance with the fields' own conversions (what
    ``Model.raw`` gives), its columns matched to fields once per statement.
    """

    def __init__(self, model: type[peewee.Model], build: Callable[..., peewee.ModelSelect]):
        self.model = model
        self.build = build
        self.compiled: dict[str, tuple[str, list[int]]] = {}
        self.converters: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {}

    def first(self, *values: Any) -> Any:
        kind = type(database.obj).__name__
        compiled = self.compiled.get(kind)
        if compiled is None:
            _, sql, order = _with_markers(self.build, len(values), lambda marker: marker)
            compiled = self.compiled[kind] = (sql, order)
        sql, order = compiled
        cursor = database.execute_sql(sql, [values[index] for index in order])
        row = cursor.fetchone()
        if row is None:
            return None
        # The row as the model instance peewee's raw() would build, its columns' conversions
        # resolved once per statement (resolving them is most of a small read's CPU).
        converters = self.converters.get(kind)
        if converters is None:
            by_column = {field.column_name: field for field in self.model._meta.sorted_fields}
            converters = self.converters[kind] = [
                (by_column[column[0]].name, by_column[column[0]].python_value)
                for column in cursor.description
            ]
        instance = self.model.__new__(self.model)
        instance.__data__ = {
            name: None if value is None else convert(value)
            for (name, convert), value in zip(converters, row, strict=True)
        }
        instance._dirty = set()
        instance.__rel__ = {}
        return instance


class PreparedWrite:
    """A hot INSERT or UPDATE whose SQL peewee builds once per database kind, then run with
    new values (as ``PreparedSelect`` does for reads: building is most of a small write's CPU).

    `build(*markers)` returns the query with each marker used exactly once, where a value goes
    (``Model.insert(path=marker, ...)``, ``.where(Model.id == marker)``); markers reach the SQL
    unconverted. `fields[i]` converts the i-th value as that field would (``db_value``: JSON,
    timestamps), or None to pass it as is. ``execute`` answers the inserted row's primary key
    (an INSERT) or the number of rows changed (an UPDATE).
    """

    def __init__(
        self,
        build: Callable[..., peewee.Query],
        fields: list[peewee.Field | None],
    ) -> None:
        self.build = build
        self.fields = fields
        self.compiled: dict[str, tuple[str, list[int], bool]] = {}

    def execute(self, *values: Any) -> Any:
        kind = type(database.obj).__name__
        compiled = self.compiled.get(kind)
        if compiled is None:
            query, sql, order = _with_markers(
                self.build, len(values), lambda marker: peewee.Value(marker, converter=False)
            )
            compiled = self.compiled[kind] = (sql, order, isinstance(query, peewee.Insert))
        sql, order, insert = compiled
        converted = [
            value if field is None else field.db_value(value)
            for field, value in zip(self.fields, values, strict=True)
        ]
        cursor = database.execute_sql(sql, [converted[index] for index in order])
        if not insert:
            return cursor.rowcount
        row = cursor.fetchone() if database.obj.returning_clause else None
        return row[0] if row else cursor.lastrowid


def init_database(app: flask.Flask) -> None:
    """One connection per request: opened on first query, back to the pool at teardown."""

    @app.teardown_request
    def _close_connection(exc: BaseException | None) -> None:
        db = app.extensions["ctxcloud"].database
        if not db.is_closed():
            db.close()
