"""Outbound connections to public addresses only: a tenant admin names the URLs the server
fetches, so without this guard a registration could probe the internal network (cloud
metadata at 169.254.169.254, services on localhost, private ranges) by the status codes
it gets back.

The address is checked where the connection is made, not beforehand: the host name is
resolved once, every address of the answer is vetted, and the socket connects to one of
those very addresses. A second resolution that answers differently (DNS rebinding) is never
made. The host name stays the request's: the `Host` header, TLS SNI and certificate checks
are the stdlib's, unchanged.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request

# The well-known NAT64 prefix (RFC 6052): its addresses stand for the IPv4 address they end in.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class NotPublicAddress(OSError):
    """A host resolved to an address that is not globally routable. An OSError, as a failed
    connection is, so urllib reports it as one (`URLError.reason`)."""


def is_public(address: str) -> bool:
    """Whether `address` (an IP literal) is globally routable: not loopback, private, shared
    (100.64/10), link-local (the metadata address), unspecified, multicast or reserved. An
    IPv6 form of an IPv4 address (mapped ::ffff:a.b.c.d, 6to4, NAT64) is judged as that
    IPv4 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def connect_public(host: str, port: int, timeout: object) -> socket.socket:
    """A socket connected to `host`, refused (NotPublicAddress) when any address it resolves
    to is not public: a name that also points inside is not a provider's."""
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not answers or not all(is_public(sockaddr[0]) for *_, sockaddr in answers):
        raise NotPublicAddress(f"{host} does not resolve to public addresses only")
    error = OSError(f"{host}: no address to connect to")
    for family, kind, proto, _, sockaddr in answers:
        sock = socket.socket(family, kind, proto)
        try:
            if isinstance(timeout, (int, float)):  # not http.client's "no timeout" marker
                sock.settimeout(timeout)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class PublicHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection that connects through `connect_public`."""

    def connect(self) -> None:
        self.sock = connect_public(self.host, self.port, self.timeout)


class PublicHTTPSConnection(http.client.HTTPSConnection, PublicHTTPConnection):
    """HTTPSConnection.connect calls ``super().connect()`` for the TCP socket, then wraps it
    in TLS for ``self.host``: with PublicHTTPConnection next in the method order, that TCP
    socket is a vetted one and the TLS part stays the stdlib's own."""


class PublicHTTPHandler(urllib.request.HTTPHandler):
    """urllib's http handler over PublicHTTPConnection."""

    def http_open(self, req):
        return self.do_open(PublicHTTPConnection, req)


class PublicHTTPSHandler(urllib.request.HTTPSHandler):
    """urllib's https handler over PublicHTTPSConnection (the default TLS context: the
    certificate is verified for the URL's host name)."""

    def https_open(self, req):
        return self.do_open(PublicHTTPSConnection, req)
