"""The S3 storage backend: AWS S3 or any S3-compatible store (MinIO, Ceph RGW, R2...).

Selected with ``CTXCLOUD_STORAGE_BACKEND=s3``; settings are ``CTXCLOUD_S3_*`` (see
docs/storage.md). boto3 is imported only when the backend is selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxcloud import hookimpl

from .settings import DEFAULTS, S3Settings

__all__ = ["S3Settings", "config_defaults", "storage_backends"]


def _open(config: Mapping[str, Any]):
    from .backend import S3Storage

    return S3Storage.from_config(config)


@hookimpl
def config_defaults():
    """The S3_* settings and their defaults, so every one of them is always present."""
    return dict(DEFAULTS)


@hookimpl
def storage_backends():
    """Offer "s3"; its settings are checked only when it is the selected backend."""
    return {"s3": _open}
