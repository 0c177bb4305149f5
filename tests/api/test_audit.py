"""Security events: structured records on ctxcloud.audit, and never a secret in any log."""

from __future__ import annotations

import json
import logging

from ctxcloud.auth import emit_audit
from ctxcloud.requestlog import JsonFormatter
from tests.support.factories import bearer, login, make_api_key, make_user


def audit_records(caplog):
    return [r for r in caplog.records if r.name == "ctxcloud.audit"]


def test_an_event_is_one_json_line_with_tenant_actor_and_request_id(app, client, tenant, caplog):
    _, reader = make_api_key(app, tenant, scopes=["context:read"])
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        response = client.get("/api/v1/users", headers={**bearer(reader), "X-Request-ID": "req-7"})
    assert response.status_code == 403
    record = audit_records(caplog)[-1]
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "ctxcloud.audit" and line["message"] == "permission_denied"
    assert line["audit"]["tenant_id"] == tenant.id
    assert line["audit"]["actor"].startswith("api_key:key_")
    assert line["audit"]["request_id"] == "req-7"
    assert line["audit"]["action"] == "users:manage"


def test_fields_named_like_secrets_are_dropped(app, caplog):
    with app.test_request_context(), caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        emit_audit(
            "custom_event", password="hunter2hunter2", token="eyJ.x.y", key="ctx_x", note="ok"
        )
    event = audit_records(caplog)[-1].audit
    assert event["note"] == "ok"
    assert not {"password", "token", "key"} & set(event)


def test_no_secret_reaches_any_log_in_a_whole_session(app, client, tenant, owner_key, caplog):
    _, password = make_user(app, tenant, "owner", "olivia")
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="ctxcloud"):
        tokens = login(client, tenant, "olivia", password)
        client.post(
            "/api/v1/auth/token",
            json={"tenant": "acme", "username": "olivia", "password": password + "-wrong"},
        )
        created = client.post(
            "/api/v1/api-keys",
            json={"name": "ci", "scopes": ["context:read"]},
            headers=bearer(tokens["access_token"]),
        ).get_json()
        client.get("/api/v1/auth/whoami", headers=bearer(created["key"]))
        client.get("/api/v1/users", headers=bearer(created["key"]))
        rotated = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
        client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
        client.delete(f"/api/v1/api-keys/{created['id']}", headers=bearer(owner_key))
        client.get("/api/v1/auth/whoami", headers=bearer(created["key"]))
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    secrets = [
        password,
        created["key"][13:],
        owner_key[13:],
        tokens["access_token"].split(".")[2],
        tokens["refresh_token"].split(".")[2],
        rotated.get_json()["refresh_token"].split(".")[2],
    ]
    for secret in secrets:
        assert secret not in logged
    types = [r.audit["type"] for r in audit_records(caplog)]
    for expected in (
        "login_succeeded",
        "login_failed",
        "api_key_created",
        "permission_denied",
        "token_reuse_detected",
        "api_key_revoked",
    ):
        assert expected in types
