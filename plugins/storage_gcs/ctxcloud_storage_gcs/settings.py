"""The gcs backend's settings: parsed and checked once, so a bad value stops the start-up.

Every setting is read from the app config (``CTXCLOUD_GCS_*`` in the environment), with the
defaults below applied through the ``config_defaults`` hook. Errors name the environment
variable, because that is what an operator sets. Credentials are never settings: the SDK's
standard chain provides them (see docs/storage.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctxcloud import ConfigError, SettingsReader, folder_prefix
from ctxcloud import env_variable as _var  # CTXCLOUD_<name>, as messages name a setting

__all__ = [
    "CHUNK_MULTIPLE",
    "DEFAULTS",
    "EMULATOR_VARIABLE",
    "MAX_CHUNK_SIZE",
    "GCSSettings",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

CHUNK_MULTIPLE = 256 * KiB  # GCS: every resumable chunk but the last is a multiple of this
MAX_CHUNK_SIZE = 1 * GiB  # held in memory once per upload: beyond this, a setting mistake
MAX_PREFIX_LENGTH = 512  # with a 512-character key, within GCS's 1024-byte object names
DEFAULT_RETRY_BUDGET = 20.0
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"  # the SDK's own: an emulator's URL

DEFAULTS: dict[str, Any] = {
    "GCS_BUCKET": None,
    "GCS_PREFIX": "",
    "GCS_ENDPOINT_URL": None,
    "GCS_CHUNK_SIZE": 8 * MiB,
    "GCS_CONNECT_TIMEOUT": 3.0,
    "GCS_READ_TIMEOUT": 10.0,
    "GCS_RETRY_BUDGET": None,
}

# Bucket names: 3-63 characters (up to 222 with dots, each dot-separated part at most 63),
# lower-case letters, digits, "-", "_" and ".", starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
# The characters a ctxcloud key may hold, plus upper case: a "folder" of the bucket.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-/]+")
_URL_RE = re.compile(r"https?://[^/\s?#]+/?")


def _emulator_host(environ: Mapping[str, str]) -> str | None:
    """STORAGE_EMULATOR_HOST as a URL (tools set it with or without the scheme)."""
    host = (environ.get(EMULATOR_VARIABLE) or "").strip()
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


@dataclass(frozen=True, slots=True)
class GCSSettings:
    """Validated gcs backend settings; construct directly in code or with ``from_config``."""

    bucket: str
    prefix: str = ""
    # An emulator or a private endpoint; requests then go unauthenticated (anonymous
    # credentials). None: Google's endpoint, with Application Default Credentials.
    endpoint_url: str | None = None
    chunk_size: int = 8 * MiB
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    # Seconds one call may take, retries included: a retry that could not finish within it
    # (its backoff plus a whole attempt's connect and read timeouts) is not made. None: 20 s,
    # or one whole attempt if that is longer.
    retry_budget: float | None = None
    # Which variable endpoint_url came from, for messages.
    endpoint_source: str = "GCS_ENDPOINT_URL"

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> GCSSettings:
        """Read the GCS_* settings; raises ConfigError naming the CTXCLOUD_GCS_* variable at fault.

        Without CTXCLOUD_GCS_ENDPOINT_URL, the SDK's own STORAGE_EMULATOR_HOST (from
        ``environ``, the process environment by default) names an emulator.
        """
        read = SettingsReader(config, DEFAULTS)
        bucket = read.string("GCS_BUCKET")
        if bucket is None:
            raise ConfigError(
                f"{_var('GCS_BUCKET')} is required when {_var('STORAGE_BACKEND')}=gcs "
                "(the bucket that holds the encrypted objects)"
            )
        endpoint = read.string("GCS_ENDPOINT_URL")
        source = "GCS_ENDPOINT_URL"
        if endpoint is None:
            endpoint = _emulator_host(os.environ if environ is None else environ)
            source = EMULATOR_VARIABLE
        return cls(
            bucket=bucket,
            prefix=read.string("GCS_PREFIX") or "",
            endpoint_url=endpoint,
            chunk_size=read.whole_number("GCS_CHUNK_SIZE"),
            connect_timeout=read.seconds("GCS_CONNECT_TIMEOUT"),
            read_timeout=read.seconds("GCS_READ_TIMEOUT"),
            retry_budget=read.optional_seconds("GCS_RETRY_BUDGET"),
            endpoint_source=source,
        )

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _valid_bucket(self.bucket):
            raise ConfigError(
                f"{_var('GCS_BUCKET')}={self.bucket!r} is not a bucket name (3-63 lower-case "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            )
        if self.endpoint_url is not None:
            name = (
                self.endpoint_source
                if self.endpoint_source == EMULATOR_VARIABLE
                else _var(self.endpoint_source)
            )
            if not _URL_RE.fullmatch(self.endpoint_url):
                raise ConfigError(
                    f"{name} must be an http:// or https:// URL with no path, "
                    f"e.g. http://127.0.0.1:9023, not {self.endpoint_url!r}"
                )
            object.__setattr__(self, "endpoint_url", self.endpoint_url.rstrip("/"))
        object.__setattr__(self, "prefix", _normalise_prefix(self.prefix))
        if (
            not CHUNK_MULTIPLE <= self.chunk_size <= MAX_CHUNK_SIZE
            or self.chunk_size % CHUNK_MULTIPLE
        ):
            raise ConfigError(
                f"{_var('GCS_CHUNK_SIZE')} must be a multiple of {CHUNK_MULTIPLE} (256 KiB, "
                f"GCS's unit for resumable uploads) up to {MAX_CHUNK_SIZE} bytes, "
                f"not {self.chunk_size}"
            )
        if self.retry_budget is None:
            object.__setattr__(self, "retry_budget", max(DEFAULT_RETRY_BUDGET, self.attempt_bound))
        for name, value in (
            ("GCS_CONNECT_TIMEOUT", self.connect_timeout),
            ("GCS_READ_TIMEOUT", self.read_timeout),
            ("GCS_RETRY_BUDGET", self.retry_budget),
        ):
            if not 0 < value < float("inf"):
                raise ConfigError(f"{_var(name)} must be a positive number of seconds")
        if self.retry_budget < self.attempt_bound:
            raise ConfigError(
                f"{_var('GCS_RETRY_BUDGET')} ({self.retry_budget:g} s) must leave time for one "
                f"attempt: at least {_var('GCS_CONNECT_TIMEOUT')} + {_var('GCS_READ_TIMEOUT')} "
                f"({self.attempt_bound:g} s)"
            )

    @property
    def attempt_bound(self) -> float:
        """The longest one attempt waits before failing: connecting, then one read."""
        return self.connect_timeout + self.read_timeout

    @property
    def retry_deadline(self) -> float:
        """How long after a call's start another attempt may still begin: the budget less one
        whole attempt, so the last attempt ends within the budget (0: no retries)."""
        return self.retry_budget - self.attempt_bound

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``timeout=`` of every request: (connect, read), as requests takes it."""
        return (self.connect_timeout, self.read_timeout)


def _valid_bucket(name: str) -> bool:
    if not _BUCKET_RE.fullmatch(name) or ".." in name:
        return False
    parts = name.split(".")
    return all(0 < len(part) <= 63 for part in parts) and ("." in name or len(name) <= 63)


def _normalise_prefix(prefix: str) -> str:
    """Empty, or a safe "folder/" of the bucket; a missing trailing slash is added."""
    return folder_prefix(
        prefix,
        "GCS_PREFIX",
        characters=_PREFIX_RE,
        described="letters, digits and _.-/",
        max_length=MAX_PREFIX_LENGTH,
    )
