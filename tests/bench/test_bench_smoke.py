"""The benchmark harness runs end to end on tiny data and produces sane figures (never speed checks)."""

from __future__ import annotations

import json
import math

import pytest

from bench import chroma, pgvector
from bench.run import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    args = ["--smoke", "--results-dir", str(out), "--report", str(out / "RESULTS.md")]
    # Peers only where `make bench` installed them; their start-up costs seconds, so one each at most.
    if not chroma.available():
        args.append("--no-chroma")
    if not pgvector.available():
        args.append("--no-pgvector")
    assert main(args) == 0
    return json.loads((out / "smoke.json").read_text()), (out / "RESULTS.md").read_text()


def records(result: dict, **match) -> list[dict]:
    return [r for r in result["records"] if all(r.get(k) == v for k, v in match.items())]


def test_it_records_the_command_machine_and_blas_kernel(smoke):
    result, _ = smoke
    assert result["command"].startswith("python -m bench.run --smoke")
    assert result["machine"]["cores"] >= 1
    assert any(b.get("user_api") == "blas" for b in result["machine"]["blas"])
    assert result["date"]


def test_our_exact_search_finds_what_numpy_finds(smoke):
    result, _ = smoke
    recalls = records(result, system="index") + records(result, system="http", op="recall")
    with_recall = [r for r in recalls if "recall" in r]
    assert {(r["system"], r["filter"]) for r in with_recall} >= {
        (s, f) for s in ("index", "http") for f in ("none", "broad", "selective")}
    assert all(r["recall"] == 1.0 for r in with_recall), with_recall


def test_every_query_cell_has_figures(smoke):
    result, _ = smoke
    cells = records(result, system="http", op="query_load")
    assert len(cells) == 2 * 3 * len(result["plan"]["concurrencies"])
    for cell in cells:
        assert cell["count"] > 0 and cell["qps"] > 0
        assert 0 < cell["p50_ms"] <= cell["p99_ms"] and math.isfinite(cell["p99_ms"])
    for system in ("numpy", "index"):
        assert all(r["p50_ms"] > 0 for r in records(result, system=system, op="query"))


def test_writes_memory_catch_up_and_many_tenants_are_measured(smoke):
    result, _ = smoke
    stores = {r["batch"]: r for r in records(result, system="http", op="store")}
    assert set(stores) == {1, 100, 1000} and all(r["episodes_per_s"] > 0 for r in stores.values())
    (memory,) = records(result, op="memory")
    assert memory["worker_rss_after_mib"] > 0 and memory["raw_matrix_mib"] > 0
    assert [r["stored"] for r in records(result, op="catch_up")] == [0, *result["plan"]["catchup_sizes"]]  # 0: the control
    assert records(result, op="cold_start", checkpoint=False)[0]["first_ms"] > 0
    assert records(result, op="many_store")[0]["episodes_per_s"] > 0
    assert all(r["qps"] > 0 for r in records(result, op="many_query_load"))
    assert records(result, op="many_query_cold")[0]["p50_ms"] > 0


def test_zipf_access_over_many_tenants_is_measured_against_one_warm_tenant(smoke):
    result, report = smoke
    (warm,) = records(result, op="zipf_warm_one_tenant")
    (load,) = records(result, op="zipf_query_load")
    assert warm["qps"] > 0 and load["qps"] > 0 and load["p99_ms"] > 0
    assert load["ratio_to_warm"] == round(load["qps"] / warm["qps"], 3)
    assert "### Zipf access over many tenants" in report


def test_results_md_has_the_tables_and_target_verdicts(smoke):
    result, report = smoke
    assert "## `smoke` run" in report and "### Targets" in report
    assert "python -m bench.run --smoke" in report
    for system in ("numpy", "index", "http"):
        assert f"| {system} |" in report or system in report
    assert "n/a" in report  # N=100k targets cannot be judged from a 1k run


def test_ingest_is_measured_through_the_sdk_and_with_binary_bodies(smoke):
    result, report = smoke
    for system in ("sdk", "http-binary"):
        (cell,) = records(result, system=system, op="ingest")
        assert cell["episodes"] == cell["n"] and cell["episodes_per_s"] > 0
    assert "Targets of ingest on the user's path" in report
