"""What rate limiting costs per request, against its budgets.

Usage: python -m bench.ratelimit_cost [--requests 3000] [--runs 7] [--redis URL] [--json]

1. **CPU on the embedded default** (budget: 60 us per request). The same app twice, rate
   limiting on and off (``RATE_LIMIT_ENABLED``), through the Flask test client: a guarded
   route called with an API key (credential + tenant windows, the RateLimit-* headers) and a
   public route without a credential (the client address's window). Each figure is the
   process CPU time (``time.process_time``: every thread, so a timer thread would show) per
   request; the cost is the median over runs of (on - off), the runs interleaved.
2. **Redis round trips per request** (budget: one per authenticated request). The app on
   Redis (``--redis``, default this machine's ``redis://127.0.0.1:6379``, database 15,
   flushed before and after): every command, pipeline or transaction the request's thread
   sends is counted, after the credential is cached and the revocation mirror subscribed.
   Also the CPU cost of rate limiting there (on - off, the same way).
3. **Revocation reach with Redis**: a generation raised by one subscriber's owner, until
   another's mirror shows it (two subscriptions in this process, as two processes would have),
   against the bound ``REVOCATION_MAX_DELAY`` (0.5 s).
4. **Why flask-limiter's own middleware is left out** (the design note in app/ratelimit.py):
   a bare Flask route, with flask-limiter initialised the usual way (its before/after-request
   hooks) and no limit at all, one default limit on limits' ``memory://`` (timer thread) and
   one on ``ctxcloud-memory://``; CPU per request above the bare route.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flask
import redis

from ctxcloud import create_app, public, requires
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from ctxcloud.tenancy.credentials import RedisGenerations
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user

CPU_BUDGET_US = 60.0
ROUND_TRIP_BUDGET = 1
UNLIMITED = "1000000000/minute"


def build_app(data_dir: str, rate_limiting: bool, redis_url: str | None) -> flask.Flask:
    app = create_app(
        {
            "ENV": "testing",
            "DATA_DIR": data_dir,
            "RATE_LIMIT_ENABLED": rate_limiting,
            "RATE_LIMIT_DEFAULT": UNLIMITED,
            "REDIS_URL": redis_url,
        }
    )
    with app.app_context():
        upgrade(app.extensions["ctxcloud"].database, all_migrations())

    @public
    def open_route():
        return {"ok": True}

    @requires("projects:read")
    def guarded_route():
        return {"ok": True}

    app.add_url_rule("/bench/public", "bench_public", open_route)
    app.add_url_rule("/bench/guarded", "bench_guarded", guarded_route)
    return app


def calls(app: flask.Flask) -> dict[str, Callable[[], None]]:
    tenant = make_tenant(app, "bench")
    _, key = make_api_key(app, tenant, scopes=["projects:read"])
    _, password = make_user(app, tenant, "viewer", "reader")
    client = app.test_client()
    token = login(client, tenant, "reader", password)["access_token"]

    def get(path: str, headers: dict | None = None) -> Callable[[], None]:
        def call() -> None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)

        return call

    return {
        "guarded route, API key": get("/bench/guarded", bearer(key)),
        "guarded route, JWT": get("/bench/guarded", bearer(token)),
        "public route, no credential": get("/bench/public"),
    }


def cpu_us(call: Callable[[], None], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - started) / count * 1e6


def cpu_cost(count: int, runs: int, redis_url: str | None) -> dict[str, dict[str, float]]:
    """CPU per request with the limiter on and off, and the median per-run difference."""
    with tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir:
        if redis_url:
            redis.Redis.from_url(redis_url).flushdb()
        apps = {
            True: build_app(on_dir, True, redis_url),
            False: build_app(off_dir, False, redis_url),
        }
        scenarios = {mode: calls(app) for mode, app in apps.items()}
        for mode_calls in scenarios.values():
            for call in mode_calls.values():
                cpu_us(call, min(count, 300))  # warm caches, subscriptions, code paths
        samples = {mode: {name: [] for name in scenarios[mode]} for mode in apps}
        for _ in range(runs):
            for mode, mode_calls in scenarios.items():
                for name, call in mode_calls.items():
                    samples[mode][name].append(cpu_us(call, count))
        for app in apps.values():
            app.extensions["ctxcloud"].database.close_all()
            if app.extensions["ctxcloud"].redis is not None:
                app.extensions["ctxcloud"].redis.flushdb()
    results = {}
    for name in samples[True]:
        on, off = samples[True][name], samples[False][name]
        results[name] = {
            "limiter_on_us": statistics.median(on),
            "limiter_off_us": statistics.median(off),
            "rate_limit_cost_us": statistics.median(a - b for a, b in zip(on, off, strict=True)),
        }
    return results


class RoundTrips:
    """Redis round trips sent by this thread (each command, pipeline or transaction)."""

    def __init__(self) -> None:
        self.count = 0
        self.thread = threading.get_ident()
        self.send = redis.connection.AbstractConnection.send_packed_command

    def __enter__(self) -> RoundTrips:
        counter = self

        def counted(connection, command, check_health=True):
            if threading.get_ident() == counter.thread:
                counter.count += 1
            return counter.send(connection, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted
        return self

    def __exit__(self, *exc) -> None:
        redis.connection.AbstractConnection.send_packed_command = self.send


def round_trips(redis_url: str, requests: int = 50) -> dict[str, float]:
    """Redis round trips per request once the credential is cached and the mirror current."""
    with tempfile.TemporaryDirectory() as data_dir:
        redis.Redis.from_url(redis_url).flushdb()
        app = build_app(data_dir, True, redis_url)
        scenarios = calls(app)
        mirror = app.extensions["ctxcloud.credentials"].generations.mirror
        deadline = time.monotonic() + 10
        while not mirror.synced and time.monotonic() < deadline:
            scenarios["guarded route, API key"]()
            time.sleep(0.01)
        results = {}
        for name, call in scenarios.items():
            call()  # this credential's generation learned
            with RoundTrips() as trips:
                for _ in range(requests):
                    call()
            results[name] = trips.count / requests
        app.extensions["ctxcloud"].redis.flushdb()
        app.extensions["ctxcloud"].database.close_all()
    return results


def revocation_reach(redis_url: str, trials: int = 50) -> dict[str, float]:
    """Seconds from a raise in one 'process' until another's mirror shows it."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    here, there = RedisGenerations(client, "bench:"), RedisGenerations(client, "bench:")
    for generations in (here, there):
        generations.current("tnt_bench")
    deadline = time.monotonic() + 10
    while not (here.mirror.synced and there.mirror.synced) and time.monotonic() < deadline:
        time.sleep(0.01)
    delays = []
    for _ in range(trials):
        there.current("tnt_bench")  # mirrored
        expected = here.current("tnt_bench") + 1
        started = time.perf_counter()
        here.bump("tnt_bench")
        while there.current("tnt_bench") != expected:
            pass
        delays.append(time.perf_counter() - started)
    client.flushdb()
    return {
        "median_ms": statistics.median(delays) * 1000,
        "max_ms": max(delays) * 1000,
        "bound_ms": here.mirror.max_delay * 1000,
    }


def flask_limiter_middleware(count: int, runs: int) -> dict[str, float]:
    """CPU per request that flask-limiter's middleware adds to a bare Flask route."""
    import warnings

    from flask_limiter import Limiter

    import ctxcloud.ratelimit_storage  # noqa: F401 (registers ctxcloud-memory://)

    def bare(variant: str | None) -> Callable[[], None]:
        app = flask.Flask(f"bare-{variant}")
        app.add_url_rule("/r", "r", lambda: {"ok": True})
        if variant is not None:
            limits = [] if variant == "no limit" else [UNLIMITED]
            uri = "memory://" if "memory://" in variant else "ctxcloud-memory://"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Limiter(lambda: "caller", app=app, storage_uri=uri, default_limits=limits)
        client = app.test_client()
        return lambda: client.get("/r")

    variants = {
        name: bare(name)
        for name in (None, "no limit", "one limit, memory://", "one limit, ctxcloud-memory://")
    }
    for call in variants.values():
        cpu_us(call, min(count, 300))
    samples: dict[str | None, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, call in variants.items():
            samples[name].append(cpu_us(call, count))
    return {
        str(name): statistics.median(a - b for a, b in zip(values, samples[None], strict=True))
        for name, values in samples.items()
        if name is not None
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {
        "embedded": cpu_cost(args.requests, args.runs, None),
        "flask_limiter_middleware_us": flask_limiter_middleware(args.requests, args.runs),
    }
    if not args.no_redis:
        results["redis"] = cpu_cost(args.requests, args.runs, args.redis)
        results["redis_round_trips_per_request"] = round_trips(args.redis)
        results["revocation_reach"] = revocation_reach(args.redis)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"CPU per request (process time), median of {args.runs} runs of {args.requests}:")
    for store in ("embedded", "redis"):
        for name, figures in results.get(store, {}).items():  # type: ignore[union-attr]
            verdict = ""
            if store == "embedded":
                met = figures["rate_limit_cost_us"] <= CPU_BUDGET_US
                verdict = f"  (budget {CPU_BUDGET_US:.0f} us: {'met' if met else 'NOT met'})"
            print(
                f"  {store:8s} {name:28s} on {figures['limiter_on_us']:7.1f} us, "
                f"off {figures['limiter_off_us']:7.1f} us, "
                f"rate limiting {figures['rate_limit_cost_us']:6.1f} us{verdict}"
            )
    print("flask-limiter's own middleware on a bare Flask route (not used by ctxcloud):")
    for name, cost in results["flask_limiter_middleware_us"].items():  # type: ignore[union-attr]
        print(f"  {name:28s} +{cost:6.1f} us")
    trips = results.get("redis_round_trips_per_request")
    if trips:
        print(f"Redis round trips per request (budget {ROUND_TRIP_BUDGET} when authenticated):")
        for name, count in trips.items():  # type: ignore[union-attr]
            print(f"  {name:28s} {count:.2f}")
    reach = results.get("revocation_reach")
    if reach:
        print(
            "Revocation reach with Redis (another process's mirror): "
            f"median {reach['median_ms']:.2f} ms, max {reach['max_ms']:.2f} ms "  # type: ignore[index]
            f"(bound {reach['bound_ms']:.0f} ms)"  # type: ignore[index]
        )


if __name__ == "__main__":
    main()
