"""bench/report.py's verdicts and margins for the quantised-search targets, from hand-made records."""

from __future__ import annotations

from bench.report import exact_targets, margin


def query(system: str, n: int, p50: float, flt: str = "none", **extra) -> dict:
    op = "query_load" if system == "http" else "query"
    return {"system": system, "op": op, "n": n, "top_k": 5, "filter": flt, "concurrency": 1, "p50_ms": p50, **extra}


def test_margins_say_how_far_below_or_above_the_limit():
    assert margin(0.5, 1.0) == "50 % below"
    assert margin(1.0, 1.0) == "0 % below"
    assert margin(2.5, 1.0) == "2.50× the limit"
    assert margin(None, 1.0) == "–"


def test_each_target_gets_its_measure_margin_and_verdict():
    records = [
        query("http", 100_000, 3.0), query("chroma", 100_000, 1.5),
        query("http", 100_000, 0.8, flt="selective"), query("index", 100_000, 0.2, flt="selective", blas_threads=1),
        query("index", 1_000_000, 25.0, blas_threads=1),
        {"system": "http", "op": "recall", "n": 100_000, "recall": 1.0},
        {"system": "http", "op": "recall", "n": 100_000, "recall": 0.999},
        {"system": "http", "op": "memory", "n": 100_000, "ratio_to_raw": 0.28},
    ]
    rows = {target.split(" (")[0].split(",")[0]: rest for target, *rest in exact_targets({"records": records})}
    assert rows["HTTP query p50 ≤ Chroma's HTTP p50"] == ["3.00 ms vs 1.50 ms", "2.00× the limit", "**not met**"]
    assert rows["Recall 1.0 over HTTP at N=100k"] == ["lowest 0.999 over 2 cells", "–", "**not met**"]
    assert rows["Worker RSS ≤ 0.35× the raw float32 matrix"] == ["0.28×", "20 % below", "**met**"]
    assert rows["0.1 % filter p50 ≤ 1 ms over HTTP"] == ["0.80 ms", "20 % below", "**met**"]
    assert rows["0.1 % filter p50 ≤ 1 ms in process"] == ["0.20 ms", "80 % below", "**met**"]
    assert rows["In-process p50 ≤ 20 ms at N=1M"] == ["25.00 ms", "1.25× the limit", "**not met**"]


def test_the_dense_dataset_is_clusters_of_near_duplicates_with_queries_inside_them():
    import numpy as np

    from bench.data import make_dataset, make_dense_dataset, make_dense_queries, make_queries

    def nearest(ds, queries) -> float:
        return float(np.median((queries @ ds.embeddings.T).max(axis=1)))

    dense, spread = make_dense_dataset(2000, dim=64), make_dataset(2000, dim=64)
    assert dense.masks["selective"].sum() == 2 and len(set(dense.ids)) == 2000
    assert nearest(dense, make_dense_queries(50, 2000, dim=64)) > 0.95 > nearest(spread, make_queries(50, dim=64))
