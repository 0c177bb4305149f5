"""The Azure backend's settings: parsed and checked once, so a bad value stops the start-up.

Every setting is read from the app config (``CTXCLOUD_AZURE_*`` in the environment), with the
defaults below applied through the ``config_defaults`` hook. Errors name the environment
variable, because that is what an operator sets, and never repeat a secret (the connection
string and the account key carry the account's key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ctxcloud import ConfigError, SettingsReader, folder_prefix
from ctxcloud import env_variable as _var  # CTXCLOUD_<name>, as messages name a setting

__all__ = [
    "DEFAULTS",
    "MAX_BLOCKS",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "AzureSettings",
]

KiB = 1024
MiB = 1024 * KiB

MIN_BLOCK_SIZE = 64 * KiB  # ours, not Azure's: smaller blocks only multiply requests
MAX_BLOCK_SIZE = 4000 * MiB  # Azure's ceiling for one Put Block (service version 2019-12-12+)
MAX_BLOCKS = 50_000  # Azure's ceiling on the committed blocks of one blob
# A blob name is at most 1,024 characters: a 512-character key, escaped (below, in backend.py)
# up to 768, leaves 256 for the prefix.
MAX_PREFIX_LENGTH = 255

DEFAULT_RETRY_BUDGET = 20.0

DEFAULTS: dict[str, Any] = {
    "AZURE_CONTAINER": None,
    "AZURE_CONNECTION_STRING": None,
    "AZURE_ACCOUNT_URL": None,
    "AZURE_ACCOUNT_KEY": None,
    "AZURE_PREFIX": "",
    "AZURE_BLOCK_SIZE": 8 * MiB,
    "AZURE_MAX_ATTEMPTS": 3,
    "AZURE_CONNECT_TIMEOUT": 3.0,
    "AZURE_READ_TIMEOUT": 10.0,
    "AZURE_RETRY_BUDGET": None,
}

# Azure's container names: 3-63 lower-case letters, digits and single hyphens between them.
_CONTAINER_RE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
# Characters safe in a blob name and a URL path without escaping; "." and ".." segments and
# segments ending in "." are refused separately (Azure drops a trailing dot from a segment).
_PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*'()/-]+")
_URL_RE = re.compile(r"https?://[^/\s?#]+(/[^\s?#]*)?")


def _connection_string_fields(text: str) -> dict[str, str]:
    """``Key=value;...`` pairs, keys lower-cased; values may contain "=" (base64 keys do)."""
    fields = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            return {}
        fields[name.strip().lower()] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class AzureSettings:
    """Validated Azure backend settings; construct directly in code or with ``from_config``.

    Exactly one of ``connection_string`` and ``account_url`` says where the account is; with
    an account URL, ``account_key`` (if given) signs requests, else DefaultAzureCredential
    (environment, workload identity, managed identity, Azure CLI...) provides a token.
    """

    container: str
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    account_key: str | None = field(default=None, repr=False)
    prefix: str = ""
    block_size: int = 8 * MiB
    max_attempts: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    # Seconds one request may take, retries included: a retry that could not finish within it
    # (its backoff plus a whole attempt's connect and read timeouts) is not made. None: 20 s,
    # or one whole attempt if that is longer.
    retry_budget: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AzureSettings:
        """Read the AZURE_* settings; ConfigError names the CTXCLOUD_AZURE_* variable at fault."""
        read = SettingsReader(config, DEFAULTS)
        container = read.string("AZURE_CONTAINER")
        if container is None:
            raise ConfigError(
                f"{_var('AZURE_CONTAINER')} is required when {_var('STORAGE_BACKEND')}=azure "
                "(the blob container that holds the encrypted objects)"
            )
        return cls(
            container=container,
            connection_string=read.string("AZURE_CONNECTION_STRING"),
            account_url=read.string("AZURE_ACCOUNT_URL"),
            account_key=read.string("AZURE_ACCOUNT_KEY"),
            prefix=read.string("AZURE_PREFIX") or "",
            block_size=read.whole_number("AZURE_BLOCK_SIZE"),
            max_attempts=read.whole_number("AZURE_MAX_ATTEMPTS"),
            connect_timeout=read.seconds("AZURE_CONNECT_TIMEOUT"),
            read_timeout=read.seconds("AZURE_READ_TIMEOUT"),
            retry_budget=read.optional_seconds("AZURE_RETRY_BUDGET"),
        )

    def __post_init__(self) -> None:
        if not isinstance(self.container, str) or not _CONTAINER_RE.fullmatch(self.container):
            raise ConfigError(
                f"{_var('AZURE_CONTAINER')}={self.container!r} is not a container name: 3 to 63 "
                "lower-case letters, digits and hyphens, starting with a letter or digit, "
                "no two hyphens in a row"
            )
        self._check_credentials()
        object.__setattr__(self, "prefix", _normalise_prefix(self.prefix))
        if not MIN_BLOCK_SIZE <= self.block_size <= MAX_BLOCK_SIZE:
            raise ConfigError(
                f"{_var('AZURE_BLOCK_SIZE')} must be between {MIN_BLOCK_SIZE} (64 KiB) and "
                f"{MAX_BLOCK_SIZE} bytes (4000 MiB, Azure's largest block), not {self.block_size}"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"{_var('AZURE_MAX_ATTEMPTS')} must be at least 1 (1: no retries)")
        for name, value in (
            ("AZURE_CONNECT_TIMEOUT", self.connect_timeout),
            ("AZURE_READ_TIMEOUT", self.read_timeout),
        ):
            if not 0 < value < float("inf"):
                raise ConfigError(f"{_var(name)} must be a positive number of seconds")
        if self.retry_budget is None:
            object.__setattr__(self, "retry_budget", max(DEFAULT_RETRY_BUDGET, self.attempt_bound))
        if not 0 < self.retry_budget < float("inf"):
            raise ConfigError(f"{_var('AZURE_RETRY_BUDGET')} must be a positive number of seconds")
        if self.retry_budget < self.attempt_bound:
            raise ConfigError(
                f"{_var('AZURE_RETRY_BUDGET')} ({self.retry_budget:g} s) must leave time for one "
                f"attempt: at least {_var('AZURE_CONNECT_TIMEOUT')} + "
                f"{_var('AZURE_READ_TIMEOUT')} ({self.attempt_bound:g} s)"
            )

    def _check_credentials(self) -> None:
        """Exactly one way to reach the account; never echo a value (they hold secrets)."""
        connection, url = _var("AZURE_CONNECTION_STRING"), _var("AZURE_ACCOUNT_URL")
        if self.connection_string and self.account_url:
            raise ConfigError(
                f"set one of {connection} and {url}, not both: the connection string already "
                "names the account"
            )
        if not self.connection_string and not self.account_url:
            raise ConfigError(
                f"{_var('STORAGE_BACKEND')}=azure needs {connection} or {url} (with "
                f"{_var('AZURE_ACCOUNT_KEY')}, or DefaultAzureCredential's workload or managed "
                "identity)"
            )
        if self.connection_string:
            fields = _connection_string_fields(self.connection_string)
            if not fields or not (
                {"accountname", "blobendpoint", "usedevelopmentstorage"} & fields.keys()
            ):
                raise ConfigError(
                    f"{connection} is not an Azure Storage connection string (expected "
                    "AccountName=...;AccountKey=...;..., "
                    "BlobEndpoint=...;SharedAccessSignature=... or UseDevelopmentStorage=true)"
                )
            if self.account_key:
                raise ConfigError(
                    f"{_var('AZURE_ACCOUNT_KEY')} goes with {url} only: a connection string "
                    "carries its own key"
                )
            return
        if not isinstance(self.account_url, str) or not _URL_RE.fullmatch(self.account_url):
            raise ConfigError(
                f"{url} must be the account's blob endpoint, an http:// or https:// URL such as "
                "https://acme.blob.core.windows.net"
            )

    @property
    def attempt_bound(self) -> float:
        """The longest one attempt waits before failing: connecting, then one read."""
        return self.connect_timeout + self.read_timeout

    @property
    def retries(self) -> int:
        """The SDK's ``retry_total``: attempts after the first one."""
        return self.max_attempts - 1

    @property
    def max_object_size(self) -> int:
        """The largest object put() can store: 50,000 blocks."""
        return MAX_BLOCKS * self.block_size


def _normalise_prefix(prefix: str) -> str:
    """Empty, or a safe "folder/" of the container; a missing trailing slash is added."""
    prefix = folder_prefix(
        prefix,
        "AZURE_PREFIX",
        characters=_PREFIX_RE,
        described="letters, digits and !_.*'()/-",
        max_length=MAX_PREFIX_LENGTH,
    )
    if any(segment.endswith(".") for segment in prefix[:-1].split("/")):
        raise ConfigError(
            f"{_var('AZURE_PREFIX')}={prefix!r}: no part may end with '.' (Azure drops it)"
        )
    return prefix
