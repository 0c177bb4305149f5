"""Shared fixtures beyond app/client (tenants, credentials, servers); see tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.support.factories import make_api_key, make_platform_key, make_tenant
from tests.support.s3server import s3_server  # noqa: F401 (a shared moto S3 server)


@pytest.fixture
def tenant(app):
    """An active tenant."""
    return make_tenant(app, slug="acme", name="ACME")


@pytest.fixture
def other_tenant(app):
    """A second tenant, whose data the first must never see."""
    return make_tenant(app, slug="globex", name="Globex")


@pytest.fixture
def owner_key(app, tenant) -> str:
    """The secret of a key of `tenant` holding every permission an owner holds."""
    return make_api_key(app, tenant, name="owner-key")[1]


@pytest.fixture
def platform_key(app) -> str:
    """The secret of a platform:admin key."""
    return make_platform_key(app)[1]
