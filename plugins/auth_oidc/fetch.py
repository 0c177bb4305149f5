"""Fetching a provider's JSON documents: a timeout on every call, no redirects, a size cap.

urllib (the standard library) rather than PyJWKClient's own fetch: that one follows
redirects (an https key set could be sent to plain http) and has no size cap. A redirect is
refused rather than followed: register the final URL. Nothing a provider answered is ever
echoed back to the caller beyond a status code, so a registration cannot be used to read
another server's pages.

Unless ``OIDC_ALLOW_PRIVATE_ADDRESSES`` allows them, only public addresses are connected to
(addresses.py), checked at connection time; environment proxies are then ignored, since a
proxy would resolve and connect where we cannot check.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ctxcloud.plugins.auth_oidc.addresses import (
    NotPublicAddress,
    PublicHTTPHandler,
    PublicHTTPSHandler,
)

MAX_DOCUMENT_BYTES = 512 * 1024


class FetchFailed(Exception):
    """A document could not be used; `unreachable` tells a network or HTTP failure (the
    provider's fault, worth retrying) from an answer that is not a JSON object."""

    def __init__(self, reason: str, *, unreachable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable


class AddressRefused(FetchFailed):
    """The URL's host is (or resolves to) an address that is not public, and those are
    refused here: nothing was sent."""

    def __init__(self) -> None:
        super().__init__(
            "its address is not public (private, loopback, link-local or reserved), which "
            "CTXCLOUD_OIDC_ALLOW_PRIVATE_ADDRESSES refuses here",
            unreachable=True,
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, "redirect refused", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirects())
_PUBLIC_OPENER = urllib.request.build_opener(
    _NoRedirects(), urllib.request.ProxyHandler({}), PublicHTTPHandler(), PublicHTTPSHandler()
)


def url_problem(url: str, allow_http: bool) -> str | None:
    """Why `url` may not be fetched (None: it may): https only, unless http is allowed."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an absolute https URL"
    if parts.scheme == "http" and not allow_http:
        return "must use https (plain http is refused here: CTXCLOUD_OIDC_ALLOW_HTTP)"
    if parts.username or parts.password:
        return "must not hold credentials"
    if parts.fragment:
        return "must not have a fragment"
    return None


def fetch_json(
    url: str, timeout: float, *, allow_private_addresses: bool = False
) -> dict[str, Any]:
    """The JSON object at `url`, or FetchFailed naming why (AddressRefused for an address
    that is not public, unless `allow_private_addresses`)."""
    opener = _OPENER if allow_private_addresses else _PUBLIC_OPENER
    request = urllib.request.Request(  # noqa: S310 (callers checked the scheme: url_problem)
        url, headers={"Accept": "application/json", "User-Agent": "ctxcloud-oidc"}
    )
    try:
        with opener.open(request, timeout=timeout) as response:  # nosec B310: scheme checked
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        reason = "a redirect (register the final URL)" if 300 <= exc.code < 400 else None
        raise FetchFailed(reason or f"HTTP status {exc.code}", unreachable=True) from None
    except TimeoutError:
        raise FetchFailed(f"timed out after {timeout:g} s", unreachable=True) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, NotPublicAddress):
            raise AddressRefused() from None
        if isinstance(exc.reason, TimeoutError):
            raise FetchFailed(f"timed out after {timeout:g} s", unreachable=True) from None
        raise FetchFailed(f"connection failed ({_short(exc.reason)})", unreachable=True) from None
    except (OSError, ValueError) as exc:
        raise FetchFailed(f"connection failed ({_short(exc)})", unreachable=True) from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchFailed(f"larger than {MAX_DOCUMENT_BYTES} bytes", unreachable=False)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchFailed("not JSON", unreachable=False) from None
    if not isinstance(document, dict):
        raise FetchFailed("not a JSON object", unreachable=False)
    return document


def _short(reason: object) -> str:
    """An OS error's own words without addresses or paths beyond its class (e.g. refused)."""
    if isinstance(reason, ConnectionRefusedError):
        return "refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    return type(reason).__name__
