"""The `ctxcloud` console script, run as operators do: a subprocess with CTXCLOUD_* set."""

from __future__ import annotations

import json

import pytest

from tests import stack
from tests.support.server import cli


@pytest.fixture
def env(stack_config, tmp_path):
    """The stack's settings as variables, with a database of its own (these tests migrate it)."""
    values = {"CTXCLOUD_ENV": "testing", "CTXCLOUD_DATA_DIR": str(tmp_path / "data")}
    for key, value in stack_config.items():
        values[f"CTXCLOUD_{key}"] = str(value)
    if not stack.is_production:
        yield values
        return
    with stack.postgres_database() as url:
        yield {**values, "CTXCLOUD_DATABASE_URL": url}


def one_json_object(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_db_upgrade_is_idempotent_and_prints_one_json_object(env):
    first = cli(env, "db", "upgrade", "--json")
    assert first.returncode == 0, first.stderr
    applied = one_json_object(first.stdout)["applied"]
    assert "core.0001_tenant_keys" in applied
    assert applied.index("projects.0001_initial") < applied.index("context.0001_initial")
    second = cli(env, "db", "upgrade", "--json")
    assert second.returncode == 0, second.stderr
    assert one_json_object(second.stdout)["applied"] == []
    status = cli(env, "db", "status", "--json")
    assert status.returncode == 0 and one_json_object(status.stdout)["pending"] == []


def test_db_status_exits_non_zero_while_migrations_are_pending(env):
    status = cli(env, "db", "status", "--json")
    assert status.returncode == 1
    assert "core.0001_tenant_keys" in one_json_object(status.stdout)["pending"]


def test_production_refuses_to_start_and_names_the_variable(env):
    result = cli({**env, "CTXCLOUD_ENV": "production", "CTXCLOUD_MASTER_KEYS": ""}, "db", "upgrade")
    assert result.returncode != 0
    assert "CTXCLOUD_MASTER_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
