"""The S3 backend's settings: parsed and checked once, so a bad value stops the start-up.

Every setting is read from the app config (``CTXCLOUD_S3_*`` in the environment), with the
defaults below applied through the ``config_defaults`` hook. Errors name the environment
variable, because that is what an operator sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctxcloud import ConfigError, SettingsReader, folder_prefix
from ctxcloud import env_variable as _var  # CTXCLOUD_<name>, as messages name a setting

__all__ = [
    "ADDRESSING_STYLES",
    "DEFAULTS",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "SSE_MODES",
    "S3Settings",
]

MiB = 1024 * 1024
GiB = 1024 * MiB

MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * GiB  # S3's ceiling for a part and for a single PutObject
MAX_PARTS = 10_000  # S3's ceiling on part numbers
MAX_PREFIX_LENGTH = 512  # with a 512-character key, within S3's 1024-byte key limit

ADDRESSING_STYLES = ("auto", "path", "virtual")
SSE_MODES = ("AES256", "aws:kms")  # None: the store's default (no SSE header sent)

DEFAULT_RETRY_BUDGET = 20.0

DEFAULTS: dict[str, Any] = {
    "S3_BUCKET": None,
    "S3_ENDPOINT_URL": None,
    "S3_REGION": None,
    "S3_PREFIX": "",
    "S3_ADDRESSING_STYLE": "auto",
    "S3_MULTIPART_THRESHOLD": 8 * MiB,
    "S3_PART_SIZE": 8 * MiB,
    "S3_MAX_ATTEMPTS": 3,
    "S3_CONNECT_TIMEOUT": 3.0,
    "S3_READ_TIMEOUT": 10.0,
    "S3_RETRY_BUDGET": None,
    "S3_SERVER_SIDE_ENCRYPTION": "none",
    "S3_SSE_KMS_KEY_ID": None,
}

# Characters AWS calls safe in object key names; segments "." and ".." are refused separately.
_PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*'()/-]+")
_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Validated S3 backend settings; construct directly in code or with ``from_config``."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    prefix: str = ""
    addressing_style: str = "auto"
    multipart_threshold: int = 8 * MiB
    part_size: int = 8 * MiB
    max_attempts: int = 3
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    # Seconds one call may take, retries included: a retry that could not finish within it
    # (its backoff plus a whole attempt's connect and read timeouts) is not made. None: 20 s,
    # or one whole attempt if that is longer.
    retry_budget: float | None = None
    server_side_encryption: str | None = None
    sse_kms_key_id: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3Settings:
        """Read the S3_* settings; raises ConfigError naming the CTXCLOUD_S3_* variable at fault."""
        read = SettingsReader(config, DEFAULTS)
        bucket = read.string("S3_BUCKET")
        if bucket is None:
            raise ConfigError(
                f"{_var('S3_BUCKET')} is required when {_var('STORAGE_BACKEND')}=s3 "
                "(the bucket that holds the encrypted objects)"
            )
        sse = read.string("S3_SERVER_SIDE_ENCRYPTION")
        return cls(
            bucket=bucket,
            endpoint_url=read.string("S3_ENDPOINT_URL"),
            region=read.string("S3_REGION"),
            prefix=read.string("S3_PREFIX") or "",
            addressing_style=(read.string("S3_ADDRESSING_STYLE") or "auto").lower(),
            multipart_threshold=read.whole_number("S3_MULTIPART_THRESHOLD"),
            part_size=read.whole_number("S3_PART_SIZE"),
            max_attempts=read.whole_number("S3_MAX_ATTEMPTS"),
            connect_timeout=read.seconds("S3_CONNECT_TIMEOUT"),
            read_timeout=read.seconds("S3_READ_TIMEOUT"),
            retry_budget=read.optional_seconds("S3_RETRY_BUDGET"),
            server_side_encryption=None if sse is None or sse.lower() == "none" else sse,
            sse_kms_key_id=read.string("S3_SSE_KMS_KEY_ID"),
        )

    def __post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not _BUCKET_RE.fullmatch(self.bucket):
            raise ConfigError(f"{_var('S3_BUCKET')}={self.bucket!r} is not a bucket name")
        if self.endpoint_url is not None and not re.match(r"https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(
                f"{_var('S3_ENDPOINT_URL')} must be an http:// or https:// URL, "
                f"e.g. https://minio.internal:9000"
            )
        object.__setattr__(self, "prefix", _normalise_prefix(self.prefix))
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(
                f"{_var('S3_ADDRESSING_STYLE')} must be one of {', '.join(ADDRESSING_STYLES)}"
            )
        if not MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"{_var('S3_PART_SIZE')} must be between {MIN_PART_SIZE} (5 MiB, S3's minimum "
                f"part) and {MAX_PART_SIZE} bytes, not {self.part_size}"
            )
        if not 0 <= self.multipart_threshold <= MAX_PART_SIZE:
            raise ConfigError(
                f"{_var('S3_MULTIPART_THRESHOLD')} must be between 0 and {MAX_PART_SIZE} bytes "
                f"(the largest single PutObject), not {self.multipart_threshold}"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"{_var('S3_MAX_ATTEMPTS')} must be at least 1 (1: no retries)")
        if self.retry_budget is None:
            object.__setattr__(self, "retry_budget", max(DEFAULT_RETRY_BUDGET, self.attempt_bound))
        for name, value in (
            ("S3_CONNECT_TIMEOUT", self.connect_timeout),
            ("S3_READ_TIMEOUT", self.read_timeout),
            ("S3_RETRY_BUDGET", self.retry_budget),
        ):
            if not 0 < value < float("inf"):
                raise ConfigError(f"{_var(name)} must be a positive number of seconds")
        if self.retry_budget < self.attempt_bound:
            raise ConfigError(
                f"{_var('S3_RETRY_BUDGET')} ({self.retry_budget:g} s) must leave time for one "
                f"attempt: at least {_var('S3_CONNECT_TIMEOUT')} + {_var('S3_READ_TIMEOUT')} "
                f"({self.attempt_bound:g} s)"
            )
        if self.server_side_encryption is not None:
            canonical = {mode.lower(): mode for mode in SSE_MODES}
            mode = canonical.get(self.server_side_encryption.lower())
            if mode is None:
                raise ConfigError(
                    f"{_var('S3_SERVER_SIDE_ENCRYPTION')} must be none, AES256 or aws:kms, "
                    f"not {self.server_side_encryption!r}"
                )
            object.__setattr__(self, "server_side_encryption", mode)
        if self.sse_kms_key_id and self.server_side_encryption != "aws:kms":
            raise ConfigError(
                f"{_var('S3_SSE_KMS_KEY_ID')} is set but {_var('S3_SERVER_SIDE_ENCRYPTION')} "
                "is not aws:kms"
            )

    @property
    def attempt_bound(self) -> float:
        """The longest one attempt waits before failing: connecting, then one read."""
        return self.connect_timeout + self.read_timeout

    @property
    def buffer_size(self) -> int:
        """Bytes put() buffers: objects up to this go in one PUT, larger ones in parts.

        A single PUT needs the whole object in hand, so the threshold is also a buffer;
        a threshold below the part size gains nothing (a one-part multipart upload costs
        three requests for the same bytes), so the larger of the two decides.
        """
        return max(self.multipart_threshold, self.part_size)

    @property
    def max_object_size(self) -> int:
        """The largest object put() can store: 10,000 parts, the first one a whole buffer."""
        return self.buffer_size + (MAX_PARTS - 1) * self.part_size


def _normalise_prefix(prefix: str) -> str:
    """Empty, or a safe "folder/" of the bucket; a missing trailing slash is added."""
    return folder_prefix(
        prefix,
        "S3_PREFIX",
        characters=_PREFIX_RE,
        described="letters, digits and !_.*'()/-",
        max_length=MAX_PREFIX_LENGTH,
    )
