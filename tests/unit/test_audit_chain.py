"""The audit log's hash chain: verify passes on a clean chain and names an edited, deleted,
reordered or truncated row; concurrent appends keep a chain valid; retention sweeps keep it
verifiable from the checkpoint."""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import threading

import pytest

from ctxcloud.auth import emit_audit
from ctxcloud.db import database, utcnow
from ctxcloud.plugins.audit_log import chain as audit_chain
from ctxcloud.plugins.audit_log import retention
from ctxcloud.plugins.audit_log.models import AuditChain, AuditEvent
from tests.support.factories import bearer, make_api_key, make_tenant


def emit_many(app, tenant_id, count, event_type="link.created"):
    with app.test_request_context():
        for number in range(count):
            emit_audit(event_type, tenant_id=tenant_id, actor="user:usr_a", link_id=f"l{number}")


def run_cli(app, *args):
    result = app.test_cli_runner().invoke(args=["audit", *args])
    return result.exit_code, result.output


def verify_json(app, *args):
    code, output = run_cli(app, "verify", "--json", *args)
    return code, json.loads(output)


def problems(report, chain):
    found = [c for c in report["chains"] if c["chain"] == chain]
    assert found, report
    return [(p["kind"], p["seq"]) for p in found[0]["problems"]]


def seq_row(app, chain, seq):
    with app.app_context():
        return AuditEvent.get(AuditEvent.chain == chain, AuditEvent.seq == seq)


@pytest.fixture
def acme(app):
    tenant = make_tenant(app, "acme")
    emit_many(app, tenant.id, 5)  # seq 1 is tenant_created: 6 rows
    return tenant


def test_a_clean_chain_verifies_and_links_every_row(app, acme):
    code, report = verify_json(app)
    assert code == 0 and report["ok"] is True
    chain = next(c for c in report["chains"] if c["chain"] == acme.id)
    assert chain["rows"] == 6 and chain["head_seq"] == 6
    with app.app_context():
        rows = list(AuditEvent.select().where(AuditEvent.chain == acme.id).order_by(AuditEvent.seq))
        assert rows[0].prev_hash == audit_chain.GENESIS
        for before, after in itertools.pairwise(rows):
            assert after.prev_hash == before.hash
        assert AuditChain.get_by_id(acme.id).head_hash == rows[-1].hash
    code, output = run_cli(app, "verify", "--tenant", "acme")
    assert code == 0 and f"{acme.id}: 6 rows, head 6" in output and output.rstrip().endswith("ok")


def test_an_edited_row_is_named(app, acme):
    row = seq_row(app, acme.id, 3)
    with app.app_context():
        AuditEvent.update(details={"name": "innocent"}).where(AuditEvent.id == row.id).execute()
    code, report = verify_json(app, "--tenant", "acme")
    assert code == 1 and report["ok"] is False
    assert problems(report, acme.id) == [("edited", 3)]
    code, output = run_cli(app, "verify")
    assert code == 1 and "edited at seq 3" in output


def test_a_row_deleted_in_the_middle_is_named(app, acme):
    with app.app_context():
        AuditEvent.delete().where(AuditEvent.chain == acme.id, AuditEvent.seq == 4).execute()
    code, report = verify_json(app)
    assert code == 1
    assert problems(report, acme.id) == [("missing", 5)]


def test_reordered_rows_are_caught(app, acme):
    """Swapping two rows' positions (their seq) breaks their hashes and links."""
    with app.app_context():
        two, three = seq_row(app, acme.id, 2), seq_row(app, acme.id, 3)
        AuditEvent.update(seq=-1).where(AuditEvent.id == two.id).execute()
        AuditEvent.update(seq=2).where(AuditEvent.id == three.id).execute()
        AuditEvent.update(seq=3).where(AuditEvent.id == two.id).execute()
    code, report = verify_json(app)
    assert code == 1
    kinds = problems(report, acme.id)
    assert ("reordered", 3) in kinds and ("edited", 2) in kinds


def test_a_truncated_head_is_caught_while_the_head_row_remembers(app, acme):
    with app.app_context():
        AuditEvent.delete().where(AuditEvent.chain == acme.id, AuditEvent.seq >= 5).execute()
    code, report = verify_json(app)
    assert code == 1 and problems(report, acme.id) == [("truncated", None)]


def test_other_chains_are_untouched_by_one_chains_damage(app, acme):
    globex = make_tenant(app, "globex")
    emit_many(app, globex.id, 2)
    row = seq_row(app, acme.id, 2)
    with app.app_context():
        AuditEvent.update(type="other").where(AuditEvent.id == row.id).execute()
    code, report = verify_json(app, "--tenant", "globex")
    assert code == 0 and problems(report, globex.id) == []


def test_concurrent_appends_keep_the_chain_valid(app, acme):
    threads, per_thread = 8, 10
    failures = []

    def writer(number):
        try:
            with app.app_context():
                for item in range(per_thread):
                    emit_audit("link.created", tenant_id=acme.id, link_id=f"t{number}-{item}")
                app.extensions["ctxcloud"].database.close()
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not failures and not any(worker.is_alive() for worker in workers)
    with app.app_context():
        seqs = [
            row.seq
            for row in AuditEvent.select(AuditEvent.seq)
            .where(AuditEvent.chain == acme.id)
            .order_by(AuditEvent.seq)
        ]
    assert seqs == list(range(1, 6 + threads * per_thread + 1))
    code, report = verify_json(app)
    assert code == 0, report


def test_retention_sweep_keeps_the_chain_verifiable(app, acme, monkeypatch):
    """Old rows go, the checkpoint moves to the last swept row, and verify starts there."""
    client = app.test_client()
    _, owner = make_api_key(app, acme)
    patched = client.patch(
        "/api/v1/tenant/settings", json={"audit_retention_days": 30}, headers=bearer(owner)
    )
    assert patched.status_code == 200
    before = seq_row(app, acme.id, 1)
    later = utcnow() + datetime.timedelta(days=40)
    monkeypatch.setattr(audit_chain, "utcnow", lambda: later)
    emit_many(app, acme.id, 2, "link.revoked")
    monkeypatch.undo()
    with app.app_context():
        head = AuditChain.get_by_id(acme.id)
    kept_from = head.head_seq - 1

    with app.app_context():
        reports = retention.sweep(now=later + datetime.timedelta(hours=1))
    swept = next(r for r in reports if r.chain == acme.id)
    assert swept.retention_days == 30 and not swept.problems
    assert swept.deleted == kept_from - 1 and swept.checkpoint_seq == kept_from - 1
    with app.app_context():
        remaining = [r.seq for r in AuditEvent.select().where(AuditEvent.chain == acme.id)]
        checkpoint = AuditChain.get_by_id(acme.id)
    assert sorted(remaining) == [kept_from, kept_from + 1]
    assert before.seq not in remaining
    assert checkpoint.checkpoint_hash == seq_row(app, acme.id, kept_from).prev_hash
    code, report = verify_json(app)
    assert code == 0, report
    # Sweeping again deletes nothing; an edit past the checkpoint is still caught.
    code, output = run_cli(app, "sweep", "--tenant", "acme")
    assert code == 0 and f"{acme.id}: deleted 0 (kept 30 d)" in output
    with app.app_context():
        AuditEvent.update(type="edited").where(
            AuditEvent.chain == acme.id, AuditEvent.seq == kept_from
        ).execute()
    code, report = verify_json(app)
    assert code == 1 and problems(report, acme.id) == [("edited", kept_from)]


def test_a_sweep_never_deletes_rows_that_do_not_verify(app, acme):
    row = seq_row(app, acme.id, 2)
    with app.app_context():
        AuditEvent.update(type="forged").where(AuditEvent.id == row.id).execute()
        AuditChain.update(checkpoint_seq=0).execute()
    far = utcnow() + datetime.timedelta(days=10_000)
    with app.app_context():
        report = next(r for r in retention.sweep(acme.id, now=far) if r.chain == acme.id)
        assert report.deleted == 0 and [p.kind for p in report.problems] == ["edited"]
        assert AuditEvent.select().where(AuditEvent.chain == acme.id).count() == 6


def test_the_canonical_form_covers_every_column_but_id_and_hash():
    row = {
        "chain": "tnt_a",
        "seq": 3,
        "tenant_id": "tnt_a",
        "occurred_at": datetime.datetime(2026, 12, 7, 9, 14, 3, 201000),
        "type": "api_key_created",
        "actor_kind": "user",
        "actor_id": "usr_x",
        "target": {"key_id": "key_y"},
        "request_id": "req-1",
        "client_address": "203.0.113.7",
        "details": {"name": "ci", "scopes": ["context:read"]},
        "prev_hash": "0" * 64,
    }
    assert audit_chain.canonical(row).startswith(b'{"actor_id":"usr_x","actor_kind":"user"')
    assert b'"occurred_at":"2026-12-07T09:14:03.201000Z"' in audit_chain.canonical(row)
    digest = audit_chain.row_hash(row)
    assert audit_chain.row_hash({**row, "id": 99, "hash": "x"}) == digest
    for name, value in [
        ("seq", 4),
        ("type", "api_key_revoked"),
        ("details", {"name": "cd", "scopes": ["context:read"]}),
        ("prev_hash", "1" * 64),
        ("occurred_at", datetime.datetime(2026, 12, 7, 9, 14, 3, 201001)),
        ("client_address", None),
    ]:
        assert audit_chain.row_hash({**row, name: value}) != digest, name


def test_a_refusal_outlives_the_transaction_it_was_emitted_in(app, acme):
    """A change's event rolls back with it; a refusal is written when the request ends."""
    with app.test_request_context():
        with pytest.raises(RuntimeError), database.atomic():
            emit_audit("project_deleted", tenant_id=acme.id, project_id="prj_rolled_back")
            emit_audit("permission_denied", tenant_id=acme.id, action="projects:write")
            raise RuntimeError("the request failed")
    with app.app_context():
        stored = {row.type: row for row in AuditEvent.select().where(AuditEvent.chain == acme.id)}
    assert "project_deleted" not in stored
    assert stored["permission_denied"].details == {"action": "projects:write"}
    code, report = verify_json(app)
    assert code == 0, report


def test_a_failed_write_never_breaks_the_request_and_is_logged(app, acme, monkeypatch, caplog):
    from ctxcloud.plugins.audit_log import store

    def broken(chain, fields):
        raise OSError("database gone")

    monkeypatch.setattr(store, "append", broken)
    client = app.test_client()
    _, reader = make_api_key(app, acme, scopes=["context:read"])
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        response = client.get("/api/v1/users", headers=bearer(reader))
    assert response.status_code == 403
    errors = [r for r in caplog.records if r.getMessage() == "audit_event_not_stored"]
    assert errors and errors[-1].levelno == logging.ERROR
    assert errors[-1].audit["type"] == "permission_denied" and errors[-1].error == "OSError"


def test_a_chain_whose_head_row_is_gone_is_named(app, acme):
    with app.app_context():
        AuditChain.delete().where(AuditChain.chain == acme.id).execute()
    code, report = verify_json(app)
    assert code == 1 and problems(report, acme.id) == [("head_mismatch", None)]


def test_retention_is_bounded_by_the_platform_maximum(app, acme, platform_key):
    client = app.test_client()
    _, owner = make_api_key(app, acme)
    chosen = client.patch(
        "/api/v1/tenant/settings", json={"audit_retention_days": 30}, headers=bearer(owner)
    )
    assert chosen.status_code == 200, chosen.get_data(as_text=True)
    capped = client.patch(
        f"/api/v1/tenants/{acme.id}/config",
        json={"quotas": {"audit_retention_max_days": 10}},
        headers=bearer(platform_key),
    )
    assert capped.status_code == 200, capped.get_data(as_text=True)
    assert capped.get_json()["settings"]["audit_retention_days"] == 10  # the cap wins
    for bad in (0, -1, True, "30", 11):
        refused = client.patch(
            "/api/v1/tenant/settings", json={"audit_retention_days": bad}, headers=bearer(owner)
        )
        assert refused.status_code == 422, bad
    far = utcnow() + datetime.timedelta(days=11)
    with app.app_context():
        swept = next(r for r in retention.sweep(acme.id, now=far))
    assert swept.retention_days == 10 and swept.deleted > 0
    code, report = verify_json(app)
    assert code == 0, report
