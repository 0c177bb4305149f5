"""The core's own tenancy hooks, registered as an essential plugin: it cannot be blocked.

pytest registers its essential plugins before any other and never lets `-p no:` remove them;
here the same holds for what no request can do without: the tenant tables' migrations, the
credential state and the quotas the core enforces itself (storage bytes, rate limits). (The
refusal of a suspended tenant's credentials is a step of the request pipeline,
``ctxcloud.pipeline``.)
"""

from __future__ import annotations

import marshmallow as ma

from ctxcloud.hookspecs import hookimpl
from ctxcloud.ratelimit import is_limit
from ctxcloud.tenancy.migrations import MIGRATIONS
from ctxcloud.tenancy.options import Count, Quota


def _limit(value: str) -> None:
    if not is_limit(value):
        raise ma.ValidationError("A rate limit such as '600/minute' or '10/second;600/minute'.")


@hookimpl
def config_defaults():
    return {
        # Seconds a process trusts a verified credential before re-reading it (revocations
        # reach every process through the generation counters regardless).
        "AUTH_CACHE_TTL": 30,
        # With Redis: the longest a change to credentials (a revocation, a suspension) may
        # take to reach every process (ctxcloud.tenancy.credentials, GenerationMirror).
        "REVOCATION_MAX_DELAY": 0.5,
        # Verified credentials kept per process and kind.
        "AUTH_CACHE_MAX_ENTRIES": 10000,
        # Seconds a process may keep a tenant's cached rows (projects, entry heads) at most;
        # changes reach every process at once through the data generations regardless
        # (ctxcloud.tenancy.data_cache). 0 turns those caches off.
        "DATA_CACHE_TTL": 60,
        # Cached rows kept per process and kind.
        "DATA_CACHE_MAX_ENTRIES": 10000,
        # Quotas every tenant gets unless its config overrides them (None: unlimited).
        "MAX_STORAGE_BYTES": None,
        # Requests per window of all a tenant's credentials together (None: no ceiling).
        "RATE_LIMIT_TENANT": None,
    }


@hookimpl
def tenant_options():
    return [
        Quota(
            "max_storage_bytes",
            Count(0),
            default="MAX_STORAGE_BYTES",
            description="Bytes of every kept entry version, together",
            example=10 * 1024**3,
        ),
        Quota(
            "rate_limit",
            ma.fields.String(allow_none=True, validate=_limit),
            default="RATE_LIMIT_DEFAULT",
            description="Requests per credential, e.g. `600/minute`",
            example="600/minute",
        ),
        Quota(
            "tenant_rate_limit",
            ma.fields.String(allow_none=True, validate=_limit),
            default="RATE_LIMIT_TENANT",
            description="Requests of all the tenant's credentials together",
            example="6000/minute",
        ),
    ]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def startup(app):
    from ctxcloud.tenancy.credentials import init_credentials
    from ctxcloud.tenancy.data_cache import init_data_caches

    app.extensions["ctxcloud"].tenant_options.check_service_defaults()
    init_credentials(app)
    init_data_caches(app)
