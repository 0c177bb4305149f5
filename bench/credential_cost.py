"""An authenticated manifest GET with each kind of credential, in one run: API key, a login's
JWT, a client-credentials token (OAuth 2) and a federated token (the tenant's identity
provider).

Usage: python -m bench.credential_cost [--requests 2000] [--runs 7] [--redis redis://...]
       [--json]

Through the Flask test client (no network between client and app): the manifest of a project
of 20 entries, asked with each credential in turn, interleaved run by run so drift hits all
alike. Each figure is the median of --runs runs, in microseconds per request, and its ratio
to the API key's in the same run. The federated token's identity provider is a real HTTP
server on loopback (tests/support/fake_oidc.py); the fetches of its key set are counted: a
cached key set costs no network round trip, so after the first request there are none.
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

from ctxcloud import create_app
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user
from tests.support.fake_oidc import fake_identity_provider, provider_body
from tests.support.oauth import client_token, make_oauth_client

ENTRIES = 20


def build_app(data_dir: str, redis_url: str | None) -> flask.Flask:
    app = create_app(
        {
            "ENV": "testing",
            "DATA_DIR": data_dir,
            "RATE_LIMIT_DEFAULT": "1000000000/minute",
            "REDIS_URL": redis_url,
        }
    )
    with app.app_context():
        ext = app.extensions["ctxcloud"]
        if ext.redis is not None:
            ext.redis.flushdb()
        upgrade(ext.database, all_migrations())
    return app


def timed_us(call: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def credentials(app: flask.Flask, idp) -> tuple[str, dict[str, dict[str, str]]]:
    """The manifest's URL and a header set per credential kind, all of one tenant."""
    client = app.test_client()
    tenant = make_tenant(app, "bench")
    _, owner = make_api_key(app, tenant, name="owner")
    project = client.post("/api/v1/projects", json={"name": "Bench"}, headers=bearer(owner))
    project_id = project.get_json()["id"]
    for n in range(ENTRIES):
        url = f"/api/v1/projects/{project_id}/context/entries/notes/{n:02d}.md"
        client.put(
            url, data=b"# note\n" * 8, headers={**bearer(owner), "Content-Type": "text/markdown"}
        )
    _, key = make_api_key(app, tenant, name="reader", scopes=["context:read"])
    _, password = make_user(app, tenant, "viewer", "reader")
    login_token = login(client, tenant, "reader", password)["access_token"]
    pair = make_oauth_client(app, tenant, scopes=["context:read"])
    registered = client.put(
        "/api/v1/tenant/identity-providers/bench-idp",
        json=provider_body(idp),
        headers=bearer(owner),
    )
    assert registered.status_code in (200, 201), registered.get_data(as_text=True)
    federated = idp.token(groups=["ctx-writers"], lifetime=3600)
    return f"/api/v1/projects/{project_id}/context", {
        "API key": bearer(key),
        "login JWT": bearer(login_token),
        "client-credentials token": bearer(client_token(client, *pair)),
        "federated token": bearer(federated),
    }


def measure(count: int, runs: int, redis_url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as data_dir, fake_identity_provider() as idp:
        app = build_app(data_dir, redis_url)
        client = app.test_client()
        url, kinds = credentials(app, idp)

        def get(headers: dict[str, str]) -> Callable[[], object]:
            def call() -> None:
                response = client.get(url, headers=headers)
                assert response.status_code == 200, response.get_data(as_text=True)

            return call

        calls = {name: get(headers) for name, headers in kinds.items()}
        for call in calls.values():
            timed_us(call, min(count, 200))  # warm caches and code paths
        fetches_after_warmup = idp.jwks_fetches
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(runs):
            for name, call in calls.items():
                samples[name].append(timed_us(call, count))
        fetches_while_measured = idp.jwks_fetches - fetches_after_warmup
        ext = app.extensions["ctxcloud"]
        if ext.redis is not None:
            ext.redis.flushdb()
        ext.database.close_all()
    baseline = samples["API key"]
    return {
        "microseconds": {name: statistics.median(values) for name, values in samples.items()},
        "ratio to API key": {
            name: statistics.median(v / b for v, b in zip(values, baseline, strict=True))
            for name, values in samples.items()
        },
        "key-set fetches": {
            "during warm-up": fetches_after_warmup,
            "while measured": fetches_while_measured,
            "requests measured": count * runs * len(calls),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
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
    print(f"manifest GET ({ENTRIES} entries), {results['store']}; median of {args.runs} runs")
    for name, value in results["microseconds"].items():
        ratio = results["ratio to API key"][name]
        print(f"  {name:26s} {value:8.1f} us   {ratio:5.2f}x the API key")
    fetches = results["key-set fetches"]
    print(
        f"  identity provider key-set fetches: {fetches['during warm-up']} during warm-up, "
        f"{fetches['while measured']} in {fetches['requests measured']} measured requests"
    )


if __name__ == "__main__":
    main()
