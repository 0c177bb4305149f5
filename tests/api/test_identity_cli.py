"""`ctxcloud tenants|users|api-keys|platform-keys create`, run as operators run them."""

from __future__ import annotations

import secrets

import pytest

from ctxcloud import create_app
from tests.api.test_cli import one_json_object
from tests.support.factories import bearer
from tests.support.server import cli


@pytest.fixture
def env(stack_config, tmp_path):
    values = {"CTXCLOUD_ENV": "testing", "CTXCLOUD_DATA_DIR": str(tmp_path / "data")}
    for key, value in stack_config.items():
        values[f"CTXCLOUD_{key}"] = str(value)
    assert cli(values, "db", "upgrade").returncode == 0
    return values


def run_json(env, *args, stdin=None) -> dict:
    result = cli(env, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    return one_json_object(result.stdout)


def test_an_operator_sets_up_a_tenant_from_the_command_line(env, stack_config, tmp_path):
    slug = f"cli-{secrets.token_hex(4)}"  # the production stack's database is shared
    tenant = run_json(env, "tenants", "create", slug, "--name", "ACME")
    assert tenant["id"].startswith("tnt_") and tenant["slug"] == slug and tenant["name"] == "ACME"

    owner = run_json(
        env, "users", "create", "--tenant", slug, "--username", "Olivia", "--role", "owner"
    )
    assert owner["username"] == "olivia" and owner["role"] == "owner"
    generated = owner["password"]
    assert len(generated) >= 32
    chosen = run_json(
        env,
        "users",
        "create",
        "--tenant",
        slug,
        "--username",
        "bob",
        "--role",
        "viewer",
        "--password-stdin",
        stdin="a chosen passphrase\n",
    )
    assert "password" not in chosen

    key = run_json(
        env,
        "api-keys",
        "create",
        "--tenant",
        slug,
        "--name",
        "ci",
        "--scopes",
        "context:read, projects:read",
        "--project-ids",
        "prj_a,prj_b",
    )
    assert key["key"].startswith("ctx_") and key["scopes"] == ["context:read", "projects:read"]
    assert key["project_ids"] == ["prj_a", "prj_b"] and key["created_by"] == "cli"
    platform = run_json(env, "platform-keys", "create", "--name", "ops")
    assert platform["key"].startswith("ctx_") and platform["scopes"] == ["platform:admin"]

    app = create_app({**stack_config, "ENV": "testing", "DATA_DIR": env["CTXCLOUD_DATA_DIR"]})
    client = app.test_client()
    for username, password in (("olivia", generated), ("bob", "a chosen passphrase")):
        response = client.post(
            "/api/v1/auth/token",
            json={"tenant": slug, "username": username, "password": password},
        )
        assert response.status_code == 200, username
    me = client.get("/api/v1/auth/whoami", headers=bearer(key["key"])).get_json()
    assert me["project_ids"] == ["prj_a", "prj_b"] and me["tenant"]["id"] == tenant["id"]
    tenants = client.get("/api/v1/tenants", headers=bearer(platform["key"]))
    assert slug in [t["slug"] for t in tenants.get_json()]


def invoke(app, *args, stdin=None):
    """The same commands in-process (fast), on the test's app."""
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def test_the_human_output_shows_a_generated_password_once(app, tenant):
    result = invoke(
        app, "users", "create", "--tenant", "acme", "--username", "o", "--role", "owner"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("created user o (usr_")
    assert lines[1].startswith("password (shown once): ")


@pytest.mark.parametrize(
    "args,message",
    [
        (("tenants", "create", "Not A Slug"), "lowercase"),
        (("tenants", "create", "acme"), "taken"),
        (
            ("users", "create", "--tenant", "nosuch", "--username", "a", "--role", "owner"),
            "no tenant",
        ),
        (("users", "create", "--tenant", "acme", "--username", "a", "--role", "root"), "root"),
        (
            (
                "users",
                "create",
                "--tenant",
                "acme",
                "--username",
                "somebody",
                "--role",
                "owner",
                "--password-stdin",
            ),
            "characters",
        ),
        (
            ("api-keys", "create", "--tenant", "acme", "--name", "x", "--scopes", "context:nuke"),
            "Unknown scope",
        ),
        (
            ("api-keys", "create", "--tenant", "acme", "--name", "x", "--scopes", "platform:admin"),
            "platform keys only",
        ),
        (
            ("api-keys", "create", "--tenant", "acme", "--name", "x", "--scopes", ","),
            "At least one scope",
        ),
        (
            ("api-keys", "create", "--tenant", "nosuch", "--name", "x", "--scopes", "context:read"),
            "no tenant",
        ),
    ],
)
def test_bad_requests_fail_with_a_message_and_print_no_json(app, tenant, args, message):
    result = invoke(app, *args, "--json", stdin="short\n")
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert "{" not in result.output
