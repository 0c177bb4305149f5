"""Fixtures: apps from the factory with test config, on the embedded or the production stack.

`CTXCLOUD_TEST_STACK=production` runs the same tests against PostgreSQL, Redis and S3
(see tests/stack.py); the default is the embedded stack (SQLite, local files, in-process).
"""

from __future__ import annotations

# prometheus_client picks its value class once, at import, from PROMETHEUS_MULTIPROC_DIR:
# import it now, before any test sets that variable, so in-process apps keep plain metrics.
import logging

import prometheus_client  # noqa: F401
import pytest

from tests import stack

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture(autouse=True)
def _ctxcloud_logger_restored():
    """create_app sets the level of the process-wide `ctxcloud` logger (CTXCLOUD_LOG_LEVEL):
    put it back after each test, so one test's LOG_LEVEL=ERROR never hides the warnings the
    next test asserts."""
    logger = logging.getLogger("ctxcloud")
    level, propagate = logger.level, logger.propagate
    yield
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture(scope="session")
def stack_config(tmp_path_factory) -> dict:
    """Settings that point an app at the stack under test (shared by the whole session)."""
    with stack.configured(tmp_path_factory) as config:
        yield config


@pytest.fixture
def app_config(stack_config, tmp_path) -> dict:
    """Per-test settings; tests add to this dict before asking for `app`."""
    return {
        **stack_config,
        **stack.per_test_config(),
        "ENV": "testing",
        "DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def app(app_config):
    """A migrated app on a fresh schema."""
    with stack.migrated_app(app_config) as application:
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


SUMMARY_PROPERTY = "ctxcloud_summary"


@pytest.fixture
def report_figure(record_property):
    """Print a line in the run's terminal summary, as `report_figure("fuzz: 0 failing")`.

    Figures a run should show (the isolation matrix's size, the fuzzer's counts) travel as a
    test's user properties, which pytest-xdist sends from its worker processes: a print from a
    worker, even with capture disabled, would never reach the terminal."""
    return lambda text: record_property(SUMMARY_PROPERTY, text)


def pytest_terminal_summary(terminalreporter):
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == SUMMARY_PROPERTY
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
