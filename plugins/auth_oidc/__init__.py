"""OIDC federation: a tenant's own identity provider signs its people in."""
