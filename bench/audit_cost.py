"""What storing an audit event costs: a refused request (403 ``permission_denied``) with its
event stored on the tenant's hash chain, against the same request past the denial bound (the
event logged, not stored).

Usage: python -m bench.audit_cost [--requests 300] [--runs 5] [--database-url URL] [--json]

The same app twice (``AUDIT_DENIALS_PER_MINUTE`` unset: every denial stored; ``0``: none),
rate limiting off, through the Flask test client, on the embedded default (SQLite in a
temporary folder) or on ``--database-url`` (a PostgreSQL database this bench migrates and
leaves behind). Each figure is wall-clock milliseconds per request; the cost is the median
over interleaved runs of (stored - not stored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask

from ctxcloud import create_app
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from tests.support.factories import bearer, make_api_key, make_tenant


def build_app(data_dir: str, stored: bool, database_url: str | None) -> flask.Flask:
    config = {
        "ENV": "testing",
        "DATA_DIR": data_dir,
        "RATE_LIMIT_ENABLED": False,
        "AUDIT_DENIALS_PER_MINUTE": None if stored else 0,
        "LOG_LEVEL": "WARNING",
    }
    if database_url:
        config["DATABASE_URL"] = database_url
    app = create_app(config)
    with app.app_context():
        upgrade(app.extensions["ctxcloud"].database, all_migrations())
    return app


def per_request_ms(app: flask.Flask, headers: dict, requests: int) -> float:
    client = app.test_client()
    start = time.perf_counter()
    for _ in range(requests):
        assert client.get("/api/v1/users", headers=headers).status_code == 403
    return (time.perf_counter() - start) / requests * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    apps, headers = {}, {}
    for stored in (True, False):
        app = apps[stored] = build_app(tempfile.mkdtemp(), stored, args.database_url)
        tenant = make_tenant(app)
        headers[stored] = bearer(make_api_key(app, tenant, scopes=["context:read"])[1])
        per_request_ms(app, headers[stored], 50)  # warm: caches, connections
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):
        for stored in (True, False):
            figures[stored].append(per_request_ms(apps[stored], headers[stored], args.requests))
    result = {
        "database": "postgresql" if args.database_url else "sqlite",
        "stored_ms": round(statistics.median(figures[True]), 3),
        "not_stored_ms": round(statistics.median(figures[False]), 3),
        "cost_ms": round(
            statistics.median(a - b for a, b in zip(figures[True], figures[False], strict=True)),
            3,
        ),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
