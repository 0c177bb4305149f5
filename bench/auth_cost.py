"""What authentication costs per request: API key and JWT, against the same route public.

Usage: python bench/auth_cost.py [--requests 3000] [--runs 7] [--redis redis://127.0.0.1:6379/15]
       [--json]

Through the Flask test client (no network, no server): a trivial route that answers
{"ok": true}, once `@public` and once `@requires("projects:read")`, called with no
credential, an API key (`Authorization: Bearer ctx_...` and `X-API-Key`) and a JWT access
token. The difference to the public route is the cost of authentication and authorisation.
Then the raw verify functions alone, in one request context. Rate limiting is measured on
and off (it is its own cost, paid by public routes too). Each figure is the median of --runs
runs, in microseconds per request. With --redis, the generation counters and rate limits
live in that Redis database (flushed before and after), as in a multi-process deployment.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask

from app import create_app
from app.auth import public, requires
from app.cli import all_migrations
from app.migrations import upgrade
from plugins.auth_apikey.verify import verify_api_key
from plugins.auth_jwt.verify import verify_access_token
from tests.support.factories import (
    bearer,
    login,
    make_api_key,
    make_tenant,
    make_user,
)


def build_app(data_dir: str, rate_limiting: bool, redis_url: str | None) -> flask.Flask:
    app = create_app(
        {
            "ENV": "testing",
            "DATA_DIR": data_dir,
            "RATE_LIMIT_ENABLED": rate_limiting,
            "RATE_LIMIT_DEFAULT": "1000000000/minute",
            "REDIS_URL": redis_url,
        }
    )
    with app.app_context():
        ext = app.extensions["ctxcloud"]
        if ext.redis is not None:
            ext.redis.flushdb()
        upgrade(ext.database, all_migrations())

    @public
    def open_route():
        return {"ok": True}

    @requires("projects:read")
    def guarded_route():
        return {"ok": True}

    app.add_url_rule("/bench/public", "bench_public", open_route)
    app.add_url_rule("/bench/guarded", "bench_guarded", guarded_route)
    return app


def per_call_us(call: Callable[[], object], count: int, runs: int) -> float:
    """Median over `runs` of the mean time of `count` calls, in microseconds."""
    for _ in range(min(count, 200)):
        call()  # warm caches and code paths
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(count):
            call()
        timings.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(timings)


def measure(rate_limiting: bool, count: int, runs: int, redis_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        app = build_app(data_dir, rate_limiting, redis_url)
        tenant = make_tenant(app, "bench")
        _, password = make_user(app, tenant, "viewer", "reader")
        _, key = make_api_key(app, tenant, scopes=["projects:read"])
        client = app.test_client()
        token = login(client, tenant, "reader", password)["access_token"]

        def get(path: str, headers: dict | None = None) -> Callable[[], object]:
            def call():
                response = client.get(path, headers=headers)
                assert response.status_code == 200, response.get_data(as_text=True)

            return call

        figures = {
            "public route, no credential": per_call_us(get("/bench/public"), count, runs),
            "guarded route, API key (Bearer)": per_call_us(
                get("/bench/guarded", bearer(key)), count, runs
            ),
            "guarded route, API key (X-API-Key)": per_call_us(
                get("/bench/guarded", {"X-API-Key": key}), count, runs
            ),
            "guarded route, JWT": per_call_us(get("/bench/guarded", bearer(token)), count, runs),
        }
        with app.test_request_context("/bench/guarded"):
            figures["raw verify_api_key"] = per_call_us(lambda: verify_api_key(key), count, runs)
            figures["raw verify_access_token"] = per_call_us(
                lambda: verify_access_token(token), count, runs
            )
        ext = app.extensions["ctxcloud"]
        if ext.redis is not None:
            ext.redis.flushdb()
        ext.database.close_all()
    base = figures["public route, no credential"]
    figures["auth cost, API key (Bearer)"] = figures["guarded route, API key (Bearer)"] - base
    figures["auth cost, JWT"] = figures["guarded route, JWT"] - base
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--redis", default=None, help="e.g. redis://127.0.0.1:6379/15")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "store": "redis" if args.redis else "in-process (memory-mapped generations)",
        "rate limiting on": measure(True, args.requests, args.runs, args.redis),
        "rate limiting off": measure(False, args.requests, args.runs, args.redis),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"store: {results['store']}; microseconds per request, median of {args.runs} runs")
    for mode in ("rate limiting on", "rate limiting off"):
        print(f"\n{mode}:")
        for name, value in results[mode].items():
            print(f"  {name:38s} {value:8.1f} us")


if __name__ == "__main__":
    main()
