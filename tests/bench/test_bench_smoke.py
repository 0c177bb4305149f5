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
        "manifest_304_c16",
        "big_manifest_apikey_c16",
        "big_small_get_c16",
    }
    assert expected <= set(figures)
    for name, figure in figures.items():
        assert figure["rps"]["median"] > 0, name
        assert figure["non_2xx"] == 0 and figure["socket_errors"] == 0, name
    assert {"manifest_apikey_c16", "scaling_2_vs_1_worker"} <= set(results["ratios"])
    # The manifest at scale (a tiny "big" project in smoke mode): sizes, cost growth, and a
    # timed cache-miss build.
    scale = results["manifest_at_scale"]["embedded"]
    assert scale["entries"] == 50
    assert scale["big_manifest_bytes"] > scale["small_manifest_bytes"] > 0
    assert scale["cost_over_size_growth"] > 0
    assert scale["cache_miss_build_ms"]["median"] > 0
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
    assert "| manifest_304_c16 |" in table and "## The manifest at scale" in table
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


def test_the_stage_profile_splits_a_request_by_stage(tmp_path):
    """bench.profile --stages, tiny: every request answered, the stage shares add up to the
    whole, and the manifest spends something in dispatch and the PUT in the database."""
    from bench.profile import STAGES, InProcess, measure_stages, stages_markdown

    service = InProcess({"DATA_DIR": str(tmp_path)})
    try:
        columns = {
            f"{target} (embedded)": measure_stages(service, target, requests=30, rounds=1)
            for target in ("manifest", "small_put")
        }
    finally:
        service.close()
    for name, found in columns.items():
        assert found["thread_cpu_ms"]["median"] > 0, name
        assert abs(sum(found["cprofile_share"].values()) - 1) < 1e-6, name
        assert sum(found["stage_ms"].values()) <= found["thread_cpu_ms"]["median"] * 1.001
    assert columns["small_put (embedded)"]["cprofile_share"]["DB"] > 0
    assert columns["manifest (embedded)"]["cprofile_share"]["dispatch (Flask, flask-smorest)"] > 0
    text = stages_markdown(
        {
            "started": "now",
            "machine": {"cpus": 2, "python": "3", "loadavg_at_start": [0], "loadavg_at_end": [0]},
            "columns": columns,
        }
    )
    assert set(STAGES) <= {line.split(" | ")[0].lstrip("| ") for line in text.splitlines()}
