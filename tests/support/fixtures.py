"""Shared fixtures beyond app/client (tenants, credentials, servers); see tests/conftest.py."""
