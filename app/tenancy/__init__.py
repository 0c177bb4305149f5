"""Tenancy, the core's concern: every row belongs to a tenant, and the tenant always comes from
the credential.

The core owns the tenant model, its lifecycle (creation, suspension, deletion of everything
it owns), the quotas and settings every plugin declares (`options`), their exact enforcement
(`quotas`), and the per-process cache of verified credentials with the revocation
generations that make a change reach every process at once (`credentials`). The tenants
plugin only adds the platform's admin routes and CLI on top.
"""
