"""Defaults for every environment. Secrets never live here: they come from CTXCLOUD_* variables.

Every setting is documented in docs/configuration.md with its environment variable.
"""

# Where the embedded default keeps its SQLite file, objects and generated keys.
DATA_DIR = "./var"
# sqlite:///path or postgresql://user@host/db. None: SQLite file in DATA_DIR.
DATABASE_URL = None
# Connections kept per process by the pool.
DATABASE_POOL_SIZE = 16
# Seconds a request waits for a pooled connection before failing with 503.
DATABASE_POOL_TIMEOUT = 10
# PostgreSQL: seconds to connect, to run one statement, and to wait for a row lock; past any
# of them the request fails with 503 (migrations run without the statement limit).
DATABASE_CONNECT_TIMEOUT = 3
DATABASE_STATEMENT_TIMEOUT = 30
DATABASE_LOCK_TIMEOUT = 10
# Shared store for rate limits and token revocation. None: in-process.
REDIS_URL = None
# Seconds a Redis connect, and each Redis reply, may take before the request fails with 503.
REDIS_CONNECT_TIMEOUT = 1.0
REDIS_SOCKET_TIMEOUT = 1.0
# Pooled Redis connections per process (None: the worker's threads minus a reserve, so a hung
# Redis cannot hold every thread), and seconds a request waits for a free one before a 503.
REDIS_MAX_CONNECTIONS = None
REDIS_POOL_TIMEOUT = 0.25
# Threads of a process that may wait on the storage backend at once (None: the worker's threads
# minus a reserve); past it, storage requests get 503 while the rest keep answering.
STORAGE_MAX_CONCURRENCY = None
# Ciphertext of small objects (at most OBJECT_CACHE_MAX_OBJECT bytes of plaintext) kept per
# process after a whole read, at most OBJECT_CACHE_BYTES in all (0: none); app/object_cache.py.
OBJECT_CACHE_BYTES = 32 * 1024**2
OBJECT_CACHE_MAX_OBJECT = 64 * 1024
# Storage backend name: "local" or a plugin's backend.
STORAGE_BACKEND = "local"
# Comma-separated entry-point names of plugins not to load.
DISABLED_PLUGINS = ""

# JSON {"key-id": "<base64 32 bytes>"}; generated into DATA_DIR in development.
MASTER_KEYS = None
ACTIVE_MASTER_KEY = None
# Tokens are signed with asymmetric keys (ES256 or EdDSA), published at /.well-known/jwks.json:
# JWT_SIGNING_KEYS is {"kid": "PEM private key", ...}, generated into DATA_DIR in development.
# HS256 is an explicit opt-in, signing with the shared JWT_SECRET_KEY (nothing published).
JWT_ALGORITHM = "ES256"
JWT_SIGNING_KEYS = None
JWT_SECRET_KEY = None
# Seconds a retired signing key stays published and accepted (None: the longest token
# lifetime, JWT_*_TOKEN_EXPIRES, plus a minute of clock leeway).
JWT_KEY_RETIREMENT = None
# The issuer (`iss`) and audience (`aud`) of every token the service signs, checked on every
# token it accepts (flask-jwt-extended's JWT_ENCODE_/JWT_DECODE_ pairs follow them).
JWT_ISSUER = "ctxcloud"
JWT_AUDIENCE = "ctxcloud-api"

# Prefix of every key ctxcloud writes to Redis (rate limits, credential generations).
REDIS_KEY_PREFIX = "ctxcloud:"

# Rate limits ("N/second|minute|hour|day", several joined by ";"). The default applies per
# credential (or per client address without one); a tenant's config `rate_limit` overrides it.
RATE_LIMIT_ENABLED = True
RATE_LIMIT_DEFAULT = "600/minute"
# Attempts at POST /auth/token, counted per client address and, separately, per username.
RATE_LIMIT_LOGIN = "10/minute"

# Number of X-Forwarded-For hops set by trusted proxies (0: use the socket address).
TRUSTED_PROXY_HOPS = 0
# Largest JSON request body accepted (entry bodies are streamed and limited by quotas).
MAX_JSON_BYTES = 16 * 1024 * 1024
# Log level and format ("json" or "text").
LOG_LEVEL = "INFO"
LOG_FORMAT = "json"

# flask-smorest / OpenAPI. No OPENAPI_URL_PREFIX: the document (/api/v1/openapi.json, built
# once per app) and its page (/api/v1/docs) are served by ctxcloud.api, not flask-smorest.
API_TITLE = "ctxcloud"
API_VERSION = "v1"
OPENAPI_VERSION = "3.1.0"
