"""The benchmark harness still runs end to end (`python -m bench.run --smoke`, seconds).

Nothing here judges a timing: the figures depend on the machine. What is checked is that
every scenario ran against a server that answered, and that both result files were written.
"""

from __future__ import annotations

import json
import shutil

import pytest

from bench import run

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is missing: apt-get install -y wrk (Debian)"
)


def test_smoke_run_writes_every_scenario(tmp_path):
    assert run.main(["--smoke", "--no-production", "--out", str(tmp_path)]) == 0

    results = json.loads((tmp_path / "latest.json").read_text())
    figures = results["figures"]
    expected = {
        "ceiling_c16",
        "manifest_apikey_c16",
        "manifest_jwt_c16",
        "small_get_c16",
        "small_put_c16",
        "manifest_apikey_c16_1worker",
    }
    assert expected <= set(figures)
    for name, figure in figures.items():
        assert figure["rps"]["median"] > 0, name
        assert figure["non_2xx"] == 0 and figure["socket_errors"] == 0, name
    assert {"manifest_apikey_c16", "scaling_2_vs_1_worker"} <= set(results["ratios"])
    stream = results["streaming"]
    assert stream["upload_ratio_to_bare"] > 0 and stream["download_ratio_to_bare"] > 0
    assert {row["target"] for row in results["targets"]} >= {
        "manifest_apikey_c16 / ceiling (embedded)",
        "upload / bare endpoint",
    }
    cloud = results["cloud_storage"]
    for backend in ("gcs", "azure"):
        assert cloud[backend]["upload_ratio_to_sdk"] > 0, backend
        assert cloud[backend]["download_ratio_to_sdk"] > 0, backend
    for moved in ("migrate_local_to_gcs", "migrate_s3_to_azure"):
        assert cloud[moved]["objects"] == 1 and cloud[moved]["mb_s"] > 0, moved
    table = (tmp_path / "latest.md").read_text()
    assert "| manifest_jwt_c16 |" in table and "## Targets" in table
    assert "| azure |" in table and "| s3 -> azure |" in table


def test_the_credential_cost_bench_runs_every_kind_without_refetching_keys():
    """bench.credential_cost, tiny: every credential kind answers (the bench asserts 200s),
    and once warm, a federated token costs no fetch of the provider's key set."""
    from bench.credential_cost import measure

    results = measure(count=5, runs=1, redis_url=None)
    assert set(results["microseconds"]) == {
        "API key",
        "login JWT",
        "client-credentials token",
        "federated token",
    }
    assert results["key-set fetches"]["during warm-up"] == 1
    assert results["key-set fetches"]["while measured"] == 0


def test_the_watchers_bench_runs_with_and_without_watchers(tmp_path):
    """bench.watchers --smoke: normal traffic measured alone and beside long-polling watchers
    that the server answered (waits, or 503 with Retry-After past the cap), and a wake
    across two servers on one data directory."""
    from bench import watchers

    assert watchers.main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "watchers.json").read_text())
    [row] = results["normal_traffic"]
    for run_ in ("without_watchers", "with_watchers"):
        assert row[run_]["rps"]["median"] > 0 and row[run_]["non_2xx"] == 0, run_
    answers = row["watcher_answers"]
    # 10 watchers and a cap of 2 per worker: some waited and got the writer's changes, the
    # others were told to come back (Retry-After).
    assert answers["changes"] >= 1 and answers["refused"] >= 1
    assert row["p99_ratio"] > 0
    [wake] = results["wake_latency"].values()
    assert wake["samples"] == 3 and wake["max_ms"] >= 0
