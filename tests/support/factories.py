"""Test data made through the services (not HTTP), inside or outside an app context."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterable

from ctxcloud.plugins.auth_apikey import service as api_keys
from ctxcloud.plugins.auth_apikey.models import ApiKey
from ctxcloud.plugins.users import service as users
from ctxcloud.plugins.users.models import User
from ctxcloud.plugins.users.passwords import generate_password
from ctxcloud.roles import TENANT_PERMISSIONS
from ctxcloud.tenancy import lifecycle as tenants
from ctxcloud.tenancy.credentials import credentials_changed
from ctxcloud.tenancy.models import Tenant

_serial = itertools.count(1)


def make_tenant(app, slug: str | None = None, name: str | None = None, **fields) -> Tenant:
    """A tenant (active unless `status=` says otherwise); extra fields are set as given."""
    with app.app_context():
        tenant = tenants.create_tenant(slug or f"tenant-{next(_serial)}", name)
        if fields:
            Tenant.update(**fields).where(Tenant.id == tenant.id).execute()
            credentials_changed(tenant.id)
            tenant = Tenant.get_by_id(tenant.id)
    return tenant


def make_user(
    app,
    tenant,
    role: str = "owner",
    username: str | None = None,
    password: str | None = None,
) -> tuple[User, str]:
    """A user of `tenant` and their password."""
    password = password or generate_password()
    with app.app_context():
        user = users.create_user(tenant.id, username or f"user{next(_serial)}", password, role)
    return user, password


def make_api_key(
    app,
    tenant,
    scopes: Iterable[str] | None = None,
    project_ids: Iterable[str] | None = None,
    name: str | None = None,
    expires_at: datetime.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A key of `tenant` and its secret; scopes default to everything an owner holds.

    `expires_at` (naive UTC or aware) may be in the past, to make an expired key.
    """
    with app.app_context():
        key, secret = api_keys.create_api_key(
            tenant.id,
            name or f"key-{next(_serial)}",
            sorted(TENANT_PERMISSIONS) if scopes is None else scopes,
            project_ids,
            created_by="test",
        )
        if expires_at is not None:
            if expires_at.tzinfo is not None:
                expires_at = expires_at.astimezone(datetime.UTC).replace(tzinfo=None)
            ApiKey.update(expires_at=expires_at).where(ApiKey.id == key.id).execute()
            credentials_changed(tenant.id)
            key = ApiKey.get_by_id(key.id)
    return key, secret


def make_platform_key(app) -> tuple[ApiKey, str]:
    """A platform:admin key (no tenant) and its secret."""
    with app.app_context():
        return api_keys.create_platform_key(f"platform-{next(_serial)}", created_by="test")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def login(client, tenant, username: str, password: str) -> dict:
    """Log in through the API; the token response's JSON."""
    response = client.post(
        "/api/v1/auth/token",
        json={"tenant": tenant.slug, "username": username, "password": password},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()
