"""What authentication costs per request: API key and JWT, against the same route public.

Usage: python bench/auth_cost.py [--requests 3000] [--runs 7] [--redis redis://127.0.0.1:6379/15]
       [--json]

Through the Flask test client (no network, no server): a trivial route that answers
{"ok": true}, once `@public` and once `@requires("projects:read")`, called with no
credential, an API key (`Authorization: Bearer ctx_...` and `X-API-Key`) and a JWT access
token. The difference to the public route is the cost of authentication and authorisation
(noisy: it is the difference of two larger figures). Then, inside one request context, the
exact work the request pipeline does before a guarded route's view (`ctxcloud.pipeline.run`:
the `authenticate` and `tenant_resolved` hooks, the tenant's status, the rate limits when on,
the `permission_allowed` veto rule) and the raw verify functions alone. Rate limiting is
measured on and off (it is its own cost, paid by public routes too; `bench/ratelimit_cost.py`
measures it against its budget). Each figure is the median of --runs
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
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask

from ctxcloud import create_app
from ctxcloud import pipeline as request_pipeline
from ctxcloud.auth import public, requires
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from ctxcloud.plugins.auth_apikey.verify import verify_api_key
from ctxcloud.plugins.users.verify import verify_access_token
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


def timed_us(call: Callable[[], object], count: int) -> float:
    """Mean time of `count` calls, in microseconds."""
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def scenarios(app: flask.Flask) -> dict[str, tuple[Callable[[], object], Callable]]:
    """Each scenario as (call, context to time it in); the credentials are made here."""
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

    # The raw verify functions run in one request context; client calls push their own.
    def in_request(headers: dict | None = None):
        return lambda: app.test_request_context("/bench/guarded", headers=headers)

    def pipeline():
        """What a guarded route pays before its view: authenticate (hooks included), the
        tenant, the rate limits (when on), the permission."""
        request_pipeline.run(flask.current_app, flask.request, flask.g)

    return {
        "public route, no credential": (get("/bench/public"), nullcontext),
        "guarded route, API key (Bearer)": (get("/bench/guarded", bearer(key)), nullcontext),
        "guarded route, API key (X-API-Key)": (
            get("/bench/guarded", {"X-API-Key": key}),
            nullcontext,
        ),
        "guarded route, JWT": (get("/bench/guarded", bearer(token)), nullcontext),
        "request pipeline, API key": (pipeline, in_request(bearer(key))),
        "request pipeline, JWT": (pipeline, in_request(bearer(token))),
        "raw verify_api_key": (lambda: verify_api_key(key), in_request()),
        "raw verify_access_token": (lambda: verify_access_token(token), in_request()),
    }


def measure(count: int, runs: int, redis_url: str | None) -> dict[str, dict[str, float]]:
    """Every scenario of both modes once per run (interleaved, so drift hits all alike)."""
    with tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir:
        apps = {
            "rate limiting on": build_app(on_dir, True, redis_url),
            "rate limiting off": build_app(off_dir, False, redis_url),
        }
        calls = {mode: scenarios(app) for mode, app in apps.items()}
        for mode_calls in calls.values():
            for call, context in mode_calls.values():
                with context():
                    timed_us(call, min(count, 200))  # warm caches and code paths
        samples: dict[str, dict[str, list[float]]] = {
            mode: {name: [] for name in mode_calls} for mode, mode_calls in calls.items()
        }
        for _ in range(runs):
            for mode, mode_calls in calls.items():
                for name, (call, context) in mode_calls.items():
                    with context():
                        samples[mode][name].append(timed_us(call, count))
        for app in apps.values():
            ext = app.extensions["ctxcloud"]
            if ext.redis is not None:
                ext.redis.flushdb()
            ext.database.close_all()
    results = {}
    for mode, by_name in samples.items():
        figures = {name: statistics.median(values) for name, values in by_name.items()}
        public = by_name["public route, no credential"]
        for label, name in (
            ("auth cost, API key (Bearer)", "guarded route, API key (Bearer)"),
            ("auth cost, JWT", "guarded route, JWT"),
        ):
            figures[label] = statistics.median(
                guarded - base for guarded, base in zip(by_name[name], public, strict=True)
            )
        results[mode] = figures
    off_public = samples["rate limiting off"]["public route, no credential"]
    on_public = samples["rate limiting on"]["public route, no credential"]
    results["rate limiting on"]["rate limit cost (public route)"] = statistics.median(
        on - off for on, off in zip(on_public, off_public, strict=True)
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--redis", default=None, help="e.g. redis://127.0.0.1:6379/15")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "store": "redis" if args.redis else "in-process (memory-mapped generations)",
        **measure(args.requests, args.runs, args.redis),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"store: {results['store']}; microseconds per request, median of {args.runs} runs")
    for mode in ("rate limiting on", "rate limiting off"):
        print(f"\n{mode}:")
        for name, value in results[mode].items():
            print(f"  {name:38s} {value:8.1f} us")
    print("\n(auth cost = guarded route minus public route, median of the per-run differences)")


if __name__ == "__main__":
    main()
