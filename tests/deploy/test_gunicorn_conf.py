"""config/gunicorn.conf.py: settings from the environment, workers sized to the container's
CPUs (cgroup quota included), JSON logs, and Prometheus multiprocess mode under real gunicorn."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import requests

from ctxcloud.gunicorn_worker import ThreadWorker
from ctxcloud.slow_clients import SlowClientLimits
from tests.deploy.conftest import ROOT
from tests.support.server import free_port, stop

pytestmark = pytest.mark.deploy

CONF = ROOT / "config" / "gunicorn.conf.py"
GUNICORN_VARS = (
    "GUNICORN_BIND",
    "GUNICORN_WORKERS",
    "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_WORKER_CONNECTIONS",
    "GUNICORN_HEADER_TIMEOUT",
    "GUNICORN_BODY_MIN_RATE",
    "GUNICORN_BODY_GRACE",
    "GUNICORN_SEND_TIMEOUT",
    "GUNICORN_LIMIT_REQUEST_LINE",
    "GUNICORN_LIMIT_REQUEST_FIELDS",
    "GUNICORN_LIMIT_REQUEST_FIELD_SIZE",
    "GUNICORN_FORWARDED_ALLOW_IPS",
    "GUNICORN_ACCESSLOG",
    "GUNICORN_LOG_FORMAT",
    "GUNICORN_CONTROL_SOCKET",
    "GUNICORN_CGROUP_CPU_MAX",
    "PROMETHEUS_MULTIPROC_DIR",
    "METRICS_PORT",
    "METRICS_HOST",
)


@pytest.fixture
def load_conf(monkeypatch, tmp_path):
    """Import the config as gunicorn does (a fresh module) with the given environment and a
    machine of `cpus` CPUs whose cgroup cpu.max reads `cpu_max` (None: no such file)."""

    def load(env: dict[str, str] | None = None, cpus: int = 16, cpu_max: str | None = None):
        for name in GUNICORN_VARS:
            monkeypatch.delenv(name, raising=False)
        cgroup = tmp_path / f"cpu.max-{time.monotonic_ns()}"
        if cpu_max is not None:
            cgroup.write_text(cpu_max + "\n")
        monkeypatch.setenv("GUNICORN_CGROUP_CPU_MAX", str(cgroup))
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
        spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", CONF)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_defaults(load_conf):
    conf: ModuleType = load_conf(cpus=4)
    assert conf.bind == "127.0.0.1:8000"
    # ctxcloud's gthread worker, with the slow-client limits it documents.
    assert issubclass(conf.worker_class, ThreadWorker)
    assert conf.worker_class.limits == SlowClientLimits(
        header_timeout=10.0, body_min_rate=4096.0, body_grace=10.0, send_timeout=30.0
    )
    assert (conf.worker_connections, conf.sendfile) == (1000, False)
    assert (conf.limit_request_line, conf.limit_request_fields) == (4094, 100)
    assert conf.limit_request_field_size == 8190
    assert conf.workers == 4
    assert conf.threads == 8
    assert conf.timeout == 300
    assert conf.graceful_timeout == 30
    assert conf.forwarded_allow_ips == "127.0.0.1"
    assert conf.accesslog is None
    assert conf.preload_app is False
    assert conf.control_socket_disable is True
    assert conf.logger_class is conf.JsonLogger


def test_every_setting_comes_from_the_environment(load_conf):
    conf = load_conf(
        {
            "GUNICORN_BIND": "0.0.0.0:9000",
            "GUNICORN_WORKERS": "5",
            "GUNICORN_THREADS": "16",
            "GUNICORN_TIMEOUT": "600",
            "GUNICORN_GRACEFUL_TIMEOUT": "45",
            "GUNICORN_KEEPALIVE": "10",
            "GUNICORN_WORKER_CONNECTIONS": "4000",
            "GUNICORN_HEADER_TIMEOUT": "5",
            "GUNICORN_BODY_MIN_RATE": "10000",
            "GUNICORN_BODY_GRACE": "2.5",
            "GUNICORN_SEND_TIMEOUT": "60",
            "GUNICORN_LIMIT_REQUEST_LINE": "8190",
            "GUNICORN_FORWARDED_ALLOW_IPS": "10.0.0.0/8",
            "GUNICORN_ACCESSLOG": "-",
            "GUNICORN_LOG_FORMAT": "text",
            "GUNICORN_CONTROL_SOCKET": "/tmp/g.ctl",
            "METRICS_PORT": "9200",
        }
    )
    assert conf.bind == "0.0.0.0:9000"
    assert (conf.workers, conf.threads) == (5, 16)
    assert (conf.timeout, conf.graceful_timeout, conf.keepalive) == (600, 45, 10)
    assert (conf.worker_connections, conf.limit_request_line) == (4000, 8190)
    assert conf.worker_class.limits == SlowClientLimits(
        header_timeout=5.0, body_min_rate=10000.0, body_grace=2.5, send_timeout=60.0
    )
    assert conf.forwarded_allow_ips == "10.0.0.0/8"
    assert conf.accesslog == "-"
    assert not hasattr(conf, "logger_class")  # text: gunicorn's own format
    assert conf.control_socket_disable is False and conf.control_socket == "/tmp/g.ctl"
    assert conf.METRICS_PORT == 9200
    assert conf.METRICS_HOST == "0.0.0.0"


def test_empty_variables_mean_the_default(load_conf):
    conf = load_conf({"GUNICORN_WORKERS": "", "GUNICORN_THREADS": " "}, cpus=3)
    assert (conf.workers, conf.threads) == (3, 8)


@pytest.mark.parametrize(
    "name", ["GUNICORN_WORKERS", "GUNICORN_TIMEOUT", "GUNICORN_HEADER_TIMEOUT"]
)
def test_a_malformed_number_stops_the_start_naming_the_variable(load_conf, name):
    with pytest.raises(SystemExit, match=name):
        load_conf({name: "many"})


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_a_limit_that_is_no_bound_stops_the_start(load_conf, value):
    with pytest.raises(SystemExit, match="GUNICORN_BODY_MIN_RATE"):
        load_conf({"GUNICORN_BODY_MIN_RATE": value})


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "workers"),
    [
        (16, None, 8),  # no cgroup file: the CPUs, at most 8
        (16, "max 100000", 8),  # unlimited quota
        (16, "350000 100000", 4),  # 3.5 CPUs round up to 4
        (16, "200000 100000", 2),
        (16, "50000 100000", 2),  # half a CPU: still two workers
        (1, None, 2),  # a single CPU: two workers, threads do the rest
        (3, "800000 100000", 3),  # the affinity mask is smaller than the quota
        (16, "garbage", 8),  # unreadable quota: ignored
        (64, None, 8),
    ],
)
def test_workers_follow_cpus_and_the_cgroup_quota(load_conf, cpus, cpu_max, workers):
    conf = load_conf(cpus=cpus, cpu_max=cpu_max)
    assert conf.workers == workers


def test_explicit_workers_win_over_the_quota(load_conf):
    assert load_conf({"GUNICORN_WORKERS": "12"}, cpu_max="100000 100000").workers == 12


def test_cgroup_cpu_limit_parsing(load_conf, tmp_path):
    conf = load_conf()
    path = tmp_path / "cpu.max"
    for text, expected in [("max 100000", None), ("150000 100000", 1.5), ("0 100000", None)]:
        path.write_text(text)
        assert conf.cgroup_cpu_limit(str(path)) == expected


@pytest.mark.parametrize(
    ("bind", "host"),
    [
        ("0.0.0.0:8000", "0.0.0.0"),
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::]:8000", "::"),
        ("unix:/run/g.sock", "127.0.0.1"),
        (":8000", "0.0.0.0"),
    ],
)
def test_metrics_listen_where_the_api_does(load_conf, bind, host):
    assert host == load_conf({"GUNICORN_BIND": bind}).METRICS_HOST


def test_on_starting_empties_the_multiprocess_dir(load_conf, tmp_path):
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "stale").mkdir()
    conf = load_conf({"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    conf.on_starting(None)
    assert directory.is_dir() and list(directory.iterdir()) == []
    fresh = tmp_path / "not-yet"
    load_conf({"PROMETHEUS_MULTIPROC_DIR": str(fresh)}).on_starting(None)
    assert fresh.is_dir()


def test_child_exit_marks_the_worker_dead(load_conf, tmp_path):
    directory = tmp_path / "prom"
    directory.mkdir()
    live = directory / "gauge_livesum_4242.db"
    live.write_bytes(b"")
    kept = directory / "counter_4242.db"
    kept.write_bytes(b"")
    conf = load_conf({"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    conf.child_exit(None, type("Worker", (), {"pid": 4242})())
    assert not live.exists()
    assert kept.exists()  # a dead worker's counts still add up


def test_hooks_do_nothing_without_multiprocess_mode(load_conf):
    conf = load_conf()
    conf.on_starting(None)
    conf.child_exit(None, type("Worker", (), {"pid": 1})())
    conf.when_ready(None)


# ---- under real gunicorn -----------------------------------------------------------------


@contextmanager
def serve(env: dict[str, str], log_path: Path, workers: int = 2) -> Iterator[str]:
    """gunicorn with the project config on a free loopback port, as the image starts it.

    Workers may take seconds to boot on a loaded machine: waiting tolerates slow answers.
    """
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        str(CONF),
        "--workers",
        str(workers),
        "wsgi:app",
    ]
    environ = {**os.environ, **env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_THREADS": "2"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                if requests.get(url + "/api/v1/health/live", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        stop(process)


def _scrape(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    text = requests.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def _writer_pids(directory: Path) -> set[str]:
    return {name.rsplit("_", 1)[-1].removesuffix(".db") for name in os.listdir(directory)}


@pytest.mark.server
def test_gunicorn_sums_workers_metrics_and_logs_json(tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale from a previous run")
    metrics_port = free_port()
    log_path = tmp_path / "gunicorn.log"
    env = {
        "CTXCLOUD_ENV": "development",
        "CTXCLOUD_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_PORT": str(metrics_port),
        "GUNICORN_ACCESSLOG": "-",
        "GUNICORN_LOG_FORMAT": "json",
    }
    with serve(env, log_path) as url:
        assert not (metrics_dir / "counter_1.db").exists()
        for _ in range(20):
            # A new connection each: the requests spread over both workers.
            requests.get(url + "/api/v1/health/live", timeout=10)
        requests.get(url + "/api/v1/no-such/p-123", timeout=10)
        samples = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        live = "ctxcloud_http_requests_total{method=GET,route=/api/v1/health/live,status=200}"
        # The readiness wait adds its own probes: at least our 20, summed over workers.
        assert samples[live] >= 20
        assert samples["ctxcloud_http_requests_total{method=GET,route=<unmatched>,status=404}"] == 1
        assert samples["ctxcloud_http_requests_in_progress{}"] == 0
        assert not any("p-123" in key for key in samples)
        # Each worker writes its own files (both have booted once both built their app).
        deadline = time.monotonic() + 60
        while len(_writer_pids(metrics_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_writer_pids(metrics_dir)) == 2, os.listdir(metrics_dir)
    log = log_path.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("logger") == "gunicorn.access"]
    assert access, log
    assert all(e["request_id"] and isinstance(e["status"], int) for e in access)
    assert any(e.get("logger") == "gunicorn.error" for e in entries)
    assert any("serving metrics on" in e.get("message", "") for e in entries)
