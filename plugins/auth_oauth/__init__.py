"""OAuth 2 clients of a tenant and the client-credentials grant (RFC 6749 §4.4)."""
