"""Problem+json answers become exceptions named after their `code`, with the request id."""

from __future__ import annotations

import httpx
import pytest

import ctxcloud_client as cc
from ctxcloud_client.errors import BY_CODE, error_class

PROBLEM = "application/problem+json"


def problem(status: int, code: str, **extra) -> httpx.Response:
    body = {
        "type": f"urn:ctxcloud:problem:{code}",
        "title": "t",
        "status": status,
        "detail": f"detail of {code}",
        "code": code,
        "request_id": "req-123",
        **extra,
    }
    return httpx.Response(status, json=body, headers={"Content-Type": PROBLEM})


# Every code the service declares (app/errors.py, app/tenancy, plugins/*/problems.py).
@pytest.mark.parametrize(
    ("status", "code", "cls", "family"),
    [
        (400, "bad_request", cc.BadRequest, cc.BadRequest),
        (400, "invalid_json", cc.InvalidJson, cc.BadRequest),
        (400, "invalid_path", cc.InvalidPath, cc.BadRequest),
        (400, "checksum_mismatch", cc.ChecksumMismatch, cc.BadRequest),
        (401, "unauthorized", cc.Unauthorized, cc.Unauthorized),
        (401, "token_expired", cc.TokenExpired, cc.Unauthorized),
        (403, "forbidden", cc.Forbidden, cc.Forbidden),
        (403, "quota_exceeded", cc.QuotaExceeded, cc.Forbidden),
        (403, "tenant_suspended", cc.TenantSuspended, cc.Forbidden),
        (404, "not_found", cc.NotFound, cc.NotFound),
        (405, "method_not_allowed", cc.MethodNotAllowed, cc.CtxcloudError),
        (408, "request_timeout", cc.RequestTimeout, cc.CtxcloudError),
        (409, "conflict", cc.Conflict, cc.Conflict),
        (412, "precondition_failed", cc.PreconditionFailed, cc.PreconditionFailed),
        (413, "payload_too_large", cc.PayloadTooLarge, cc.PayloadTooLarge),
        (413, "entry_too_large", cc.EntryTooLarge, cc.PayloadTooLarge),
        (415, "unsupported_media_type", cc.UnsupportedMediaType, cc.CtxcloudError),
        (416, "range_not_satisfiable", cc.RangeNotSatisfiable, cc.CtxcloudError),
        (422, "validation_error", cc.ValidationError, cc.ValidationError),
        (429, "rate_limited", cc.RateLimited, cc.RateLimited),
        (500, "internal_error", cc.ServerError, cc.ServerError),
        (500, "integrity_error", cc.IntegrityError, cc.ServerError),
        (503, "unavailable", cc.Unavailable, cc.ServerError),
        # Codes of the identity-provider routes: known by their status family.
        (422, "provider_unreachable", cc.ValidationError, cc.ValidationError),
        (409, "audience_taken", cc.Conflict, cc.Conflict),
    ],
)
def test_each_code_raises_its_class(api, make_client, status, code, cls, family):
    client = make_client(max_retries=0)
    api.get("/projects/p").mock(return_value=problem(status, code))
    with pytest.raises(family) as caught:
        client.get_project("p")
    error = caught.value
    assert type(error) is cls
    assert isinstance(error, cc.CtxcloudError)
    assert (error.status, error.code, error.detail) == (status, code, f"detail of {code}")
    assert error.request_id == "req-123"
    assert error.body["code"] == code
    assert "req-123" in str(error) and code in str(error)


def test_validation_errors_carry_their_fields(api, client):
    api.post("/projects").mock(
        return_value=problem(422, "validation_error", errors={"name": ["Missing data."]})
    )
    with pytest.raises(cc.ValidationError) as caught:
        client.create_project("")
    assert caught.value.errors == {"name": ["Missing data."]}


def test_an_unknown_code_falls_back_to_its_status(api, client):
    api.get("/projects/p").mock(return_value=problem(403, "a_new_code"))
    with pytest.raises(cc.Forbidden) as caught:
        client.get_project("p")
    assert type(caught.value) is cc.Forbidden and caught.value.code == "a_new_code"
    assert error_class(418, None) is cc.CtxcloudError
    assert error_class(502, None) is cc.ServerError


def test_a_non_json_error_keeps_the_request_id_header(api, make_client):
    client = make_client(max_retries=0)
    api.get("/projects/p").respond(
        502, text="<html>Bad Gateway</html>", headers={"X-Request-ID": "edge-9"}
    )
    with pytest.raises(cc.ServerError) as caught:
        client.get_project("p")
    error = caught.value
    assert error.status == 502 and error.request_id == "edge-9"
    assert error.body == "<html>Bad Gateway</html>" and error.detail == "Bad Gateway"


def test_every_class_with_a_code_is_found_by_it():
    assert BY_CODE["entry_too_large"] is cc.EntryTooLarge
    assert BY_CODE["quota_exceeded"] is cc.QuotaExceeded
    assert "connection_failed" not in BY_CODE  # the client's own, never the service's


def test_an_unreachable_service_is_a_connection_failure(api, make_client, fake_time):
    client = make_client(max_retries=1)
    api.get("/projects/p").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(cc.ConnectionFailed) as caught:
        client.get_project("p")
    assert caught.value.status is None and "refused" in str(caught.value)
    assert fake_time.sleeps == [0.5]
