"""gunicorn settings for ctxcloud: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

Every value can be set from the environment; docs/deployment.md explains each.
"""

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Threads serve slow clients and streaming bodies without a process each; workers use the CPUs.
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", max(2, min(multiprocessing.cpu_count(), 8)))
threads = _int("GUNICORN_THREADS", 8)
# Large entries stream for minutes: the worker timeout is the heartbeat, not a request limit.
timeout = _int("GUNICORN_TIMEOUT", 300)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)
# Only these proxies may set X-Forwarded-* for gunicorn itself; the app trusts
# CTXCLOUD_TRUSTED_PROXY_HOPS hops of X-Forwarded-For (werkzeug ProxyFix).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app logs one JSON line per request (ctxcloud.access); gunicorn's own access log is off
# unless asked for, and then it is JSON too.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
access_log_format = (
    '{"time":"%(t)s","remote":"%(h)s","method":"%(m)s","path":"%(U)s","status":%(s)s,'
    '"bytes":%(B)s,"duration_us":%(D)s,"request_id":"%({x-request-id}o)s"}'
)
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Build the app in each worker (not in the master) so pools and clients are per process.
preload_app = False
