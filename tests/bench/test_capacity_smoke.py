"""The capacity model's terms (`python -m bench.capacity`, docs/scaling.md §5) are measured end to
end on tiny data: every term is there and positive (never a speed check)."""

from __future__ import annotations

import json

import pytest

from tests.support.database import is_postgres
from tests.support.modules import run_module

pytestmark = [
    pytest.mark.e2e, pytest.mark.slow,
    pytest.mark.skipif(not is_postgres(), reason="PostgreSQL's CPU per statement: DATABASE_URL is not postgres://"),
]


def test_capacity_measures_every_term(tmp_path):
    out = tmp_path / "capacity.json"
    run_module("bench.capacity", "--sizes", "1000", "--count", "5", "--repeat", "20", "--out", str(out))
    result = json.loads(out.read_text())
    cell = result["index"]["1000"]
    assert cell["nbytes"] >= cell["raw_float32_bytes"] > 0
    assert all(v > 0 for k, v in cell.items() if k.startswith("search_ms_")) and len(cell) == 8
    statements = result["postgres"]
    assert {"key lookup (auth: key, tenant, state)", "usage upsert", "winners' fields, top 5",
            "index image read, 1,000 episodes"} <= statements.keys()
    assert all(s["round_trip_us"] > 0 and s["server_cpu_us"] >= 0 for s in statements.values())
