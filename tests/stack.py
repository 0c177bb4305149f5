"""Which stack the tests run on: the embedded default, or PostgreSQL + Redis + S3 for real.

`CTXCLOUD_TEST_STACK=production` points every app the tests build at the PostgreSQL and
Redis servers on this machine (a fresh database and a Redis db index claimed by this run, both
emptied afterwards) and at an S3 server (moto over HTTP on a free loopback port, started
here). Anything unreachable fails the run: the production tier never skips.

`CTXCLOUD_TEST_STORAGE=gcs` or `=azure` (production tier only) puts the objects on that
backend instead of S3: gcp-storage-emulator (in this process) or Azurite, each on a free
loopback port, a fresh bucket or container per run and a fresh prefix per test. The Makefile
runs the tests marked `every_backend` (entries, commits, historic reads, streaming, tamper
detection, tenant deletion) once on each.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import flask
import peewee

from ctxcloud import create_app
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from tests.support import redisdb

STACK = os.environ.get("CTXCLOUD_TEST_STACK", "embedded")
PG_ADMIN_URL = os.environ.get("CTXCLOUD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

STORAGE = os.environ.get("CTXCLOUD_TEST_STORAGE", "s3")
STORAGE_PREFIX = {"s3": "S3_PREFIX", "gcs": "GCS_PREFIX", "azure": "AZURE_PREFIX"}

is_production = STACK == "production"


@contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"ctxcloud_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def redis_db() -> Iterator[str]:
    """This run's own Redis database (tests/support/redisdb.py), emptied before and after."""
    import redis

    url = redisdb.url()
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    redisdb.flush(client)
    try:
        yield url
    finally:
        redisdb.flush(client)
        client.close()


@contextmanager
def configured(tmp_path_factory) -> Iterator[dict]:
    """Yield base settings for the chosen stack, starting and cleaning up what it needs."""
    if STACK == "embedded":
        yield {}
        return
    if STACK != "production":
        raise RuntimeError(f"CTXCLOUD_TEST_STACK={STACK!r}: use embedded or production")
    if STORAGE not in STORAGE_PREFIX:
        raise RuntimeError(f"CTXCLOUD_TEST_STORAGE={STORAGE!r}: use s3, gcs or azure")
    from tests.support.s3server import aws_environment, moto_s3

    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        redis_url = stack.enter_context(redis_db())
        s3 = stack.enter_context(moto_s3())
        stack.enter_context(aws_environment(s3.env))
        yield {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            **s3.config(),
            **stack.enter_context(object_store(STORAGE)),
        }


@contextmanager
def object_store(name: str) -> Iterator[dict]:
    """Settings of the production tier's object store other than S3 (none for S3)."""
    if name == "gcs":
        from tests.support.gcs_emulator import gcs_emulator

        with gcs_emulator() as gcs:
            yield gcs.config(gcs.create_bucket(f"run-{secrets.token_hex(8)}"))
    elif name == "azure":
        from tests.support.azurite import azurite

        with azurite() as azure:
            yield azure.config(AZURE_CONTAINER=azure.create_container())
    else:
        yield {}


def per_test_config() -> dict:
    """Settings that keep tests apart on shared servers (a fresh object-store prefix per test)."""
    if not is_production:
        return {}
    return {STORAGE_PREFIX[STORAGE]: f"t-{secrets.token_hex(6)}/"}


def reset(app: flask.Flask) -> None:
    """Give the test an empty database and cache (SQLite files are per test already)."""
    ext = app.extensions["ctxcloud"]
    if not is_production:
        return
    db = ext.database
    tables = [t for t in db.get_tables() if t != "ctxcloud_schema_migration"]
    if tables:
        quoted = ", ".join(f'"{t}"' for t in tables)
        db.execute_sql(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
    if ext.redis is not None:
        redisdb.flush(ext.redis)


def close(app: flask.Flask) -> None:
    """Release the app's pooled connections so databases can be dropped."""
    ext = app.extensions["ctxcloud"]
    db: peewee.Database = ext.database
    if not db.is_closed():
        db.close()
    db.close_all()
    ext.storage.close()
    if ext.redis is not None:
        ext.redis.close()


@contextmanager
def migrated_app(config: dict) -> Iterator[flask.Flask]:
    """An app built from `config` on a fresh, migrated schema; closed afterwards."""
    application = create_app(config)
    with application.app_context():
        reset(application)
        upgrade(application.extensions["ctxcloud"].database, all_migrations())
        application.extensions["ctxcloud"].database.close()
    yield application
    close(application)
