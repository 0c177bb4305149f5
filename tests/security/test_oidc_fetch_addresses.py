"""Server-side request forgery through federation: with OIDC_ALLOW_PRIVATE_ADDRESSES false,
a tenant admin cannot make the server connect to an address that is not public (loopback,
private ranges, link-local and the cloud metadata address...), whether the URL names it,
a host name resolves to it, DNS answers differently between a check and the connection
(rebinding), or a discovery document points its jwks_uri there. Nothing is sent: the fake
provider on loopback counts no fetch.

No test touches the real network: host names are answered by a fake resolver, and the one
"public" address used is routed to the fake provider on loopback by the test itself.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections import Counter

import pytest

from ctxcloud import ConfigError, create_app
from ctxcloud.plugins.auth_oidc import addresses
from ctxcloud.plugins.auth_oidc.addresses import (
    NotPublicAddress,
    PublicHTTPSConnection,
    connect_public,
    is_public,
)
from ctxcloud.plugins.auth_oidc.fetch import AddressRefused, fetch_json
from ctxcloud.plugins.auth_oidc.settings import OidcSettings
from ctxcloud.plugins.auth_oidc.state import federation
from ctxcloud.signing_keys import new_signing_key
from tests.support.factories import bearer
from tests.support.fake_oidc import FakeClock, fake_identity_provider, provider_body

BASE = "/api/v1/tenant/identity-providers"
SETTING = "CTXCLOUD_OIDC_ALLOW_PRIVATE_ADDRESSES"
# A globally routable address; the `network` fixture routes it to loopback, so no packet
# ever leaves the machine.
PUBLIC = "93.184.216.34"


# The network, simulated ---------------------------------------------------------------------


class FakeResolver:
    """`socket.getaddrinfo` for the names a test declares: each lookup takes the next answer
    of the name's list (the last one repeats). Other names go to the real resolver, so the
    database and Redis clients keep working."""

    def __init__(self) -> None:
        self.real = socket.getaddrinfo
        self.answers: dict[str, list[tuple[str, ...]]] = {}
        self.lookups: Counter[str] = Counter()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.lookups[host] += 1
        queue = self.answers[host]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0))
            if ":" in ip
            else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
            for ip in answer
        ]


class RoutedSocket(socket.socket):
    """A socket whose connections to PUBLIC go to loopback instead (same port)."""

    def connect(self, address):
        if address[0] == PUBLIC:
            address = ("127.0.0.1", *address[1:])
        return super().connect(address)


@pytest.fixture
def dns(monkeypatch) -> FakeResolver:
    resolver = FakeResolver()
    monkeypatch.setattr(addresses.socket, "getaddrinfo", resolver)
    return resolver


@pytest.fixture
def network(monkeypatch, dns) -> FakeResolver:
    monkeypatch.setattr(addresses.socket, "socket", RoutedSocket)
    return dns


# Apps and providers ---------------------------------------------------------------------------


@pytest.fixture
def app_config(app_config) -> dict:
    """Every app of this module refuses addresses that are not public (as production does)."""
    return {**app_config, "OIDC_ALLOW_PRIVATE_ADDRESSES": False}


@pytest.fixture
def idp():
    with fake_identity_provider() as provider:
        yield provider


@pytest.fixture
def admin(owner_key) -> dict:
    return bearer(owner_key)


def on_host(idp, host: str) -> str:
    """The fake provider's issuer under another host name (same port)."""
    return idp.issuer.replace("127.0.0.1", host)


def public_provider(idp, network) -> tuple[str, str]:
    """The fake provider as idp.example.test, a public address (routed to it): its issuer
    and jwks_uri under that name, which its discovery document names too."""
    network.answers["idp.example.test"] = [(PUBLIC,)]
    issuer = on_host(idp, "idp.example.test")
    jwks_uri = idp.jwks_uri.replace("127.0.0.1", "idp.example.test")
    idp.discovery_overrides.update(issuer=issuer, jwks_uri=jwks_uri)
    return issuer, jwks_uri


def register(client, admin, body: dict):
    return client.put(f"{BASE}/keycloak", json=body, headers=admin)


def assert_not_public(response, field: str) -> str:
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "address_not_public"
    message = body["errors"][field][0]
    assert "not public" in message and SETTING in message
    assert message == body["detail"]
    return message


# The vetting function ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "0.0.0.0",
        "::",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "169.254.169.254",  # cloud metadata
        "fd00:ec2::254",  # cloud metadata over IPv6 (unique local)
        "fe80::1",
        "fe80::1%lo",
        "fc00::1",
        "fec0::1",  # deprecated site-local
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::7f00:1",  # IPv4-compatible (deprecated)
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of the metadata address
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "2001:db8::1",
    ],
)
def test_addresses_that_are_not_public_are_refused(address):
    assert is_public(address) is False


@pytest.mark.parametrize(
    "address",
    [PUBLIC, "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address):
    assert is_public(address) is True


def test_a_name_with_any_private_address_is_refused_before_any_socket(dns, monkeypatch):
    dns.answers["mixed.example.test"] = [(PUBLIC, "10.0.0.7")]
    monkeypatch.setattr(addresses.socket, "socket", lambda *a: pytest.fail("a socket"))
    with pytest.raises(NotPublicAddress):
        connect_public("mixed.example.test", 443, 5.0)


def test_the_socket_connects_to_the_address_vetted_in_the_same_lookup(dns, monkeypatch):
    """One lookup per connection, and the socket connects to its vetted address: a second
    answer (private, a rebinding) is never asked for."""
    dns.answers["rebind.example.test"] = [(PUBLIC,), ("127.0.0.1",)]
    connected = []

    class Recorder:
        def __init__(self, *args):
            pass

        def settimeout(self, timeout):
            pass

        def connect(self, address):
            connected.append(address)

    monkeypatch.setattr(addresses.socket, "socket", Recorder)
    connect_public("rebind.example.test", 443, 5.0)
    assert connected == [(PUBLIC, 443)] and dns.lookups["rebind.example.test"] == 1


def test_https_verifies_the_host_name_over_the_vetted_address(network, idp):
    """TCP to the vetted address, TLS (SNI and the certificate check) for the host name."""
    network.answers["idp.example.test"] = [(PUBLIC,)]
    context = ssl.create_default_context()
    wrapped = []
    context.wrap_socket = lambda sock, server_hostname: wrapped.append(server_hostname) or sock
    port = int(idp.url.rsplit(":", 1)[1])
    connection = PublicHTTPSConnection("idp.example.test", port, timeout=5, context=context)
    connection.connect()
    try:
        assert wrapped == ["idp.example.test"]
        assert connection.sock.getpeername()[:2] == ("127.0.0.1", port)
    finally:
        connection.close()


def test_https_to_a_private_address_is_refused(dns):
    dns.answers["internal.example.test"] = [("10.20.30.40",)]
    with pytest.raises(AddressRefused):
        fetch_json("https://internal.example.test/keys", 5.0)


# Registration ------------------------------------------------------------------------------


def test_a_provider_on_loopback_is_refused_and_never_asked(client, admin, idp):
    message = assert_not_public(register(client, admin, provider_body(idp)), "issuer")
    assert idp.discovery_path in message
    assert sum(idp.fetches.values()) == 0


def test_a_given_jwks_uri_on_loopback_is_refused_too(client, admin, idp, network):
    issuer, _ = public_provider(idp, network)
    body = provider_body(idp, issuer=issuer, jwks_uri=idp.jwks_uri)
    assert_not_public(register(client, admin, body), "jwks_uri")
    assert sum(idp.fetches.values()) == 0


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
    ],
)
def test_an_issuer_at_an_internal_address_is_refused(client, admin, idp, host):
    assert_not_public(
        register(client, admin, provider_body(idp, issuer=on_host(idp, host))), "issuer"
    )
    assert sum(idp.fetches.values()) == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "fd00::5"])
def test_a_host_name_resolving_to_an_internal_address_is_refused(client, admin, idp, dns, address):
    dns.answers["idp.corp.example.test"] = [(address,)]
    body = provider_body(idp, issuer=on_host(idp, "idp.corp.example.test"))
    assert_not_public(register(client, admin, body), "issuer")
    assert sum(idp.fetches.values()) == 0


def test_dns_rebinding_after_a_check_is_caught_at_the_connection(client, admin, idp, dns):
    """A name answers a public address to whoever checks first, then loopback: the address
    the connection would use is the one vetted."""
    dns.answers["rebind.example.test"] = [(PUBLIC,), ("127.0.0.1",)]
    checked = socket.getaddrinfo("rebind.example.test", 443)  # someone's check beforehand
    assert is_public(checked[0][4][0])
    body = provider_body(idp, issuer=on_host(idp, "rebind.example.test"))
    assert_not_public(register(client, admin, body), "issuer")
    assert sum(idp.fetches.values()) == 0
    assert dns.lookups["rebind.example.test"] == 2


def test_a_public_provider_registers(client, admin, idp, network):
    """The control: a name resolving to a public address is fetched as usual."""
    issuer, _ = public_provider(idp, network)
    response = register(client, admin, provider_body(idp, issuer=issuer))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert idp.fetches[idp.discovery_path] == 1 and idp.jwks_fetches == 1


@pytest.mark.parametrize("internal", ["loopback", "metadata"])
def test_a_discovery_document_pointing_jwks_uri_inside_is_refused(
    client, admin, idp, network, internal
):
    issuer, _ = public_provider(idp, network)
    jwks_uri = idp.jwks_uri if internal == "loopback" else "http://169.254.169.254/latest/keys"
    idp.discovery_overrides.update(issuer=issuer, jwks_uri=jwks_uri)
    message = assert_not_public(
        register(client, admin, provider_body(idp, issuer=issuer)), "jwks_uri"
    )
    assert jwks_uri in message
    assert idp.fetches[idp.discovery_path] == 1 and idp.jwks_fetches == 0


# Key-set refreshes ---------------------------------------------------------------------------


def test_a_key_set_that_moves_inside_is_a_failed_fetch(app, client, admin, idp, network):
    """Registered on a public address, the provider's name later resolves to loopback: the
    refresh past the TTL is refused like an unreachable provider (503), and nothing is sent."""
    clock = FakeClock()
    federation(app).key_sets.clock = clock
    issuer, jwks_uri = public_provider(idp, network)
    assert register(client, admin, provider_body(idp, issuer=issuer)).status_code == 201
    token = idp.token(iss=issuer)
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 200

    network.answers["idp.example.test"] = [("127.0.0.1",)]
    clock.advance(app.config["OIDC_JWKS_TTL"] + 1)
    response = client.get("/api/v1/auth/whoami", headers=bearer(idp.token(iss=issuer)))
    assert response.status_code == 503, response.get_data(as_text=True)
    assert idp.jwks_fetches == 1
    assert "not public" in federation(app).key_sets.sets[jwks_uri].failure


# The setting ---------------------------------------------------------------------------------


def test_the_setting_defaults_to_refusing_in_production_only():
    def resolved(**config) -> bool:
        return OidcSettings.from_config(config).allow_private_addresses

    assert resolved(ENV="production") is False
    assert resolved(ENV="production", OIDC_ALLOW_PRIVATE_ADDRESSES="") is False
    assert resolved(ENV="testing") is True and resolved(ENV="development") is True
    assert resolved(ENV="production", OIDC_ALLOW_PRIVATE_ADDRESSES=True) is True
    assert resolved(ENV="testing", OIDC_ALLOW_PRIVATE_ADDRESSES="false") is False
    with pytest.raises(ConfigError, match=SETTING):
        resolved(OIDC_ALLOW_PRIVATE_ADDRESSES="sometimes")


def test_a_production_app_refuses_private_addresses(tmp_path):
    kid, pem = new_signing_key()
    app = create_app(
        {
            "ENV": "production",
            "DATA_DIR": str(tmp_path),
            "MASTER_KEYS": {"prod-1": "A" * 43 + "="},
            "JWT_SIGNING_KEYS": json.dumps({kid: pem}),
            "API_KEY_PEPPER": "p" * 64,
            "DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3",
        }
    )
    assert app.config["OIDC_ALLOW_PRIVATE_ADDRESSES"] is None  # unset: the environment decides
    assert federation(app).settings.allow_private_addresses is False


def test_this_module_runs_with_the_guard_on(app):
    assert federation(app).settings.allow_private_addresses is False
