"""Fuzz the live API with schemathesis: no 5xx, and nothing outside the documented contract.

A gunicorn (the project's config, a fresh data dir or database, rate limits raised out of the
way) serves the API; schemathesis' command line (`st run`, a subprocess, so its pytest plugin
and Hypothesis settings never touch this session) reads the server's own OpenAPI document
and runs every phase on every operation: the documented examples, coverage of the
schema's edges, generated requests (valid and invalid) and stateful sequences along the
links it infers from the document (POST /projects -> the project's context routes, POST
/api-keys -> GET|DELETE /api-keys/{key_id}, GET /users -> PATCH /users/{user_id}, ...).
Each response must pass:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: a status the operation documents. The document gives every
  operation a ``default`` problem+json response, which would let any status pass: the copy
  the fuzzer reads has those removed, so every status must be one listed explicitly (the
  server's own limits, such as the 414 for a request line past 4094 bytes that the schema's
  longest strings reach once percent-encoded, are documented on every operation);
- ``content_type_conformance``, ``response_schema_conformance`` and
  ``response_headers_conformance``: the documented media type, body schema and headers.

Four runs, one after the other, on one server:

1. Every operation as the owner of tenant ``fuzz`` (an API key holding every tenant
   permission, made with the command line before the server starts). The platform routes
   (/tenants..., /-/plugins, /-/metrics) answer 403 (401 for /-/metrics' bearer token) to it,
   which they document; nothing it can do deletes its own tenant.
2. The project and context routes (``^/api/v1/projects``) with an OAuth client-credentials
   token of ``fuzz`` (a client holding every tenant scope, made with the command line after
   run 1, so that run cannot delete it or rotate its secret), with fewer cases.
3. The same routes with a federated token: ``fuzz`` registers a fake identity provider
   (tests/support/fake_oidc.py, on a free loopback port, stopped at the end) whose people
   are owners, the highest role a provider may grant; the token is one of its.
4. The platform routes alone with a platform key, against a throwaway tenant made for it
   (deleting tenants is what those routes are for). Last: it could reach tenant ``fuzz``.

Each credential must work before its run and still work after it: a run that revoked its
own credential (or outlived its token) would have gone on testing nothing but 401s. Runs 2
and 3 reach no route that revokes a token or deletes a client, and their tokens live longer
than a run may last.

Schemathesis does not generate values for the security schemes (token attacks are
tests/security/test_token_attacks.py's job): a random ``X-API-Key`` beside the valid bearer
would make nearly every request a 401. Runs are seeded and derandomised, so a failure
reproduces; the failing request is printed as a curl command. Bounded for CI (about two
minutes on each tier); ``make fuzz`` runs the same test with many more examples for a
release check (CTXCLOUD_FUZZ_MAX_EXAMPLES, CTXCLOUD_FUZZ_SEED; docs/security.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from ctxcloud.roles import TENANT_PERMISSIONS
from tests.support.fake_oidc import FakeIdentityProvider, fake_identity_provider, provider_body
from tests.support.server import ROOT, cli, gunicorn

pytestmark = pytest.mark.server

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
MAX_EXAMPLES = int(os.environ.get("CTXCLOUD_FUZZ_MAX_EXAMPLES", "25"))
# The OAuth client and federated runs: the project and context routes only, a fifth of the
# cases (5 in CI, 60 for `make fuzz`'s 300).
CREDENTIAL_MAX_EXAMPLES = max(1, MAX_EXAMPLES // 5)
CREDENTIAL_PATHS = r"^/api/v1/projects"
# CI is derandomised (the same cases every run); a release check passes a seed of its own.
SEED = os.environ.get("CTXCLOUD_FUZZ_SEED", "")
RUN_TIMEOUT = float(os.environ.get("CTXCLOUD_FUZZ_TIMEOUT", "900"))
# Seconds the OAuth and federated tokens live: longer than a run may last (the OAuth default,
# an hour, is shorter than `make fuzz`'s timeout), so none expires mid-run.
TOKEN_LIFETIME = int(RUN_TIMEOUT) + 600
# Lower bounds: a broken loader, filter or server must not pass by testing nothing.
MIN_TENANT_OPERATIONS = 40
MIN_PLATFORM_OPERATIONS = 9
MIN_PROJECT_OPERATIONS = 20
PLATFORM_PATHS = r"^/api/v1/(tenants|-/)"
UNLIMITED = "1000000/minute"

# schemathesis (4.32) reads responses of YAML types to reuse their values, and a YAML error
# (an entry of type text/yaml holding random bytes) kills its worker thread: read such a
# body as "not YAML" instead. Loaded into the `st` process through SCHEMATHESIS_HOOKS.
HOOKS = """
import yaml
import schemathesis
from schemathesis.core.deserialization import deserialize_yaml
from schemathesis.core.media_types import YAML_MEDIA_TYPES


@schemathesis.deserializer(*YAML_MEDIA_TYPES)
def yaml_or_not(ctx, response):
    try:
        return deserialize_yaml(response.content.decode(response.encoding or "utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"not YAML: {exc}") from exc
"""


def fuzzed_document(url: str) -> dict[str, Any]:
    """The server's OpenAPI document, without `default` responses."""
    response = requests.get(f"{url}/api/v1/openapi.json", timeout=30)
    response.raise_for_status()
    document = response.json()
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].pop("default", None)
    return document


def st_run(
    document: Path,
    url: str,
    credential: str,
    report: Path,
    *extra: str,
    max_examples: int = MAX_EXAMPLES,
) -> tuple[dict[str, Any], str]:
    """Run `st run` on `document` against `url`; return its JSON report and its output."""
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        str(document),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {credential}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max_examples),
        *(["--seed", SEED] if SEED else ["--generation-deterministic"]),
        "--generation-with-security-parameters",
        "false",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
        *extra,
    ]
    ran = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        cwd=report.parent,
        env={
            **os.environ,
            "PYTHONPATH": str(report.parent),
            "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        },
    )
    output = ran.stdout + ran.stderr
    report.with_suffix(".txt").write_text(output)
    if not report.exists():
        pytest.fail(f"schemathesis wrote no report (exit {ran.returncode}):\n{output}")
    return json.loads(report.read_text()), output


def summary(name: str, report: dict[str, Any], max_examples: int = MAX_EXAMPLES) -> str:
    cases = report["test_cases"]
    return (
        f"{name}: {report['operations']['tested']} operations, {cases['generated']} test cases "
        f"(at most {max_examples} per operation and phase, "
        f"{f'seed {SEED}' if SEED else 'derandomised'}), "
        f"{cases['with_failures']} failing, {report['running_time']:.0f} s"
    )


def assert_clean(name: str, report: dict[str, Any], output: str, min_operations: int) -> None:
    shown = "\n".join(line[:400] for line in output.splitlines())  # curl lines can be huge
    where = f"{name}\n{shown[-20000:]}"
    assert "Traceback" not in output, where  # schemathesis itself failed somewhere
    assert report["complete"] and report["stop_reason"] == "completed", where
    assert report["errors"] == [], where
    assert report["failures"] == [] and report["exit_code"] == 0, where
    assert report["operations"]["tested"] >= min_operations, where
    assert report["operations"]["errored"] == 0, where
    assert report["test_cases"]["generated"] >= report["operations"]["tested"], where
    phases = report["phases"]
    assert all(phases[phase]["status"] == "success" for phase in phases), (phases, where)


def whoami(url: str, credential: str) -> requests.Response:
    return requests.get(
        f"{url}/api/v1/auth/whoami",
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )


def client_credentials_token(url: str, client: dict[str, Any]) -> str:
    response = requests.post(
        f"{url}/api/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["expires_in"] == TOKEN_LIFETIME, token
    assert set(token["scope"].split()) == set(TENANT_PERMISSIONS), token
    return token["access_token"]


def federated_owner_token(url: str, owner_key: str, idp: FakeIdentityProvider) -> str:
    """Tenant `fuzz` registers `idp`, whose `ctx-owners` are owners: one of their tokens."""
    body = provider_body(
        idp, claim_rules=[{"claim": "groups", "contains": "ctx-owners", "role": "owner"}]
    )
    registered = requests.put(
        f"{url}/api/v1/tenant/identity-providers/fuzz-idp",
        json=body,
        headers={"Authorization": f"Bearer {owner_key}"},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    return idp.token(groups=["ctx-owners"], sub="fuzz-owner", lifetime=TOKEN_LIFETIME)


def test_the_api_keeps_its_documented_contract_under_fuzzing(
    app, app_config, tmp_path, report_figure
):
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    env.update(
        CTXCLOUD_RATE_LIMIT_DEFAULT=UNLIMITED,
        CTXCLOUD_RATE_LIMIT_LOGIN=UNLIMITED,
        CTXCLOUD_RATE_LIMIT_TENANT=UNLIMITED,
        CTXCLOUD_RATE_LIMIT_OAUTH_TOKEN=UNLIMITED,
        CTXCLOUD_JWT_CLIENT_TOKEN_EXPIRES=str(TOKEN_LIFETIME),
        # Generated identity-provider registrations name made-up hosts: where DNS answers
        # (not on this loopback-only machine), a fetch must not hold a worker for long.
        CTXCLOUD_OIDC_HTTP_TIMEOUT="1",
        # A generated `wait` (up to 60 s) on a project with no change would wait it out.
        CTXCLOUD_WATCH_MAX_WAIT="0.2",
    )

    def run_cli(*args: str) -> dict[str, Any]:
        done = cli(env, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert cli(env, "db", "upgrade").returncode == 0
    run_cli("tenants", "create", "fuzz")
    scopes = ",".join(sorted(TENANT_PERMISSIONS))
    owner = run_cli("api-keys", "create", "--tenant", "fuzz", "--name", "fuzz", "--scopes", scopes)
    run_cli("tenants", "create", "throwaway")
    platform = run_cli("platform-keys", "create", "--name", "fuzz")

    with gunicorn(env, tmp_path / "logs") as server, fake_identity_provider() as idp:
        (tmp_path / "fuzz_hooks.py").write_text(HOOKS)
        document = tmp_path / "openapi.json"
        document.write_text(json.dumps(fuzzed_document(server.url)))
        tenant_report, tenant_output = st_run(
            document, server.url, owner["key"], tmp_path / "tenant.json"
        )
        owner_after = whoami(server.url, owner["key"])

        client = run_cli(
            "oauth-clients", "create", "--tenant", "fuzz", "--name", "fuzz", "--scopes", scopes
        )
        client_token = client_credentials_token(server.url, client)
        client_before = whoami(server.url, client_token)
        client_report, client_output = st_run(
            document,
            server.url,
            client_token,
            tmp_path / "oauth.json",
            "--include-path-regex",
            CREDENTIAL_PATHS,
            max_examples=CREDENTIAL_MAX_EXAMPLES,
        )
        client_after = whoami(server.url, client_token)

        federated_token = federated_owner_token(server.url, owner["key"], idp)
        federated_before = whoami(server.url, federated_token)
        federated_report, federated_output = st_run(
            document,
            server.url,
            federated_token,
            tmp_path / "federated.json",
            "--include-path-regex",
            CREDENTIAL_PATHS,
            max_examples=CREDENTIAL_MAX_EXAMPLES,
        )
        federated_after = whoami(server.url, federated_token)

        platform_report, platform_output = st_run(
            document,
            server.url,
            platform["key"],
            tmp_path / "platform.json",
            "--include-path-regex",
            PLATFORM_PATHS,
        )
        log = server.log()
    with pytest.raises(requests.ConnectionError):  # the fake provider is gone
        requests.get(idp.url + idp.discovery_path, timeout=5)

    report_figure(summary("fuzz, tenant owner", tenant_report))
    report_figure(summary("fuzz, OAuth client token", client_report, CREDENTIAL_MAX_EXAMPLES))
    report_figure(summary("fuzz, federated token", federated_report, CREDENTIAL_MAX_EXAMPLES))
    report_figure(summary("fuzz, platform operator", platform_report))
    assert_clean("as the tenant owner", tenant_report, tenant_output, MIN_TENANT_OPERATIONS)
    assert owner_after.status_code == 200, "the fuzzer revoked its own key: the run tested 401s"

    assert client_before.status_code == 200, client_before.text
    me = client_before.json()
    assert me["type"] == "oauth_client" and me["id"] == client["client_id"], me
    assert set(me["permissions"]) == set(TENANT_PERMISSIONS), me
    assert_clean("with an OAuth client token", client_report, client_output, MIN_PROJECT_OPERATIONS)
    assert client_after.status_code == 200, "the OAuth client's token died: the run tested 401s"

    assert federated_before.status_code == 200, federated_before.text
    me = federated_before.json()
    assert me["type"] == "federated" and me["role"] == "owner", me
    assert_clean(
        "with a federated token", federated_report, federated_output, MIN_PROJECT_OPERATIONS
    )
    assert federated_after.status_code == 200, "the federated token died: the run tested 401s"

    assert_clean(
        "as a platform operator", platform_report, platform_output, MIN_PLATFORM_OPERATIONS
    )
    assert "Traceback" not in log, log[-5000:]


def test_the_release_check_is_documented():
    """`make fuzz` runs this test with more examples; docs/security.md says so."""
    makefile = (ROOT / "Makefile").read_text()
    assert "\nfuzz:" in makefile and "CTXCLOUD_FUZZ_MAX_EXAMPLES" in makefile
    assert "tests/security/test_fuzz.py" in makefile
    assert "make fuzz" in (ROOT / "docs" / "security.md").read_text()
