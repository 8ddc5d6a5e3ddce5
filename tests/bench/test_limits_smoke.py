"""The request-path benchmark runs end to end on tiny data and writes its tables (never speed checks:
only that every figure is there and is a positive duration)."""

from __future__ import annotations

import re

import pytest

from bench import request_path
from tests.support.modules import run_module

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def figures(line: str) -> list[float]:
    return [float(cell) for cell in re.findall(r"\| (-?\d+\.\d+)", line)]


def test_request_path_writes_every_part_of_every_case(tmp_path):
    out = tmp_path / "request_path.md"
    run_module("bench.request_path", "--n", "1000", "--count", "30", "--out", str(out))
    text = out.read_text()
    assert "Command: `python -m bench.request_path --n 1000 --count 30 --out" in text
    floor = next(ln for ln in text.splitlines() if ln.startswith("| bare WSGI app"))
    assert figures(floor)[0] > 0
    for label in ["over HTTP", "in process", *(label for label, _ in request_path.ROWS)]:
        line = next(ln for ln in text.splitlines() if label in ln and ln.startswith("|"))
        assert len(figures(line)) == len(request_path.CASES), line
    for label in ("over HTTP", "in process", "index search", "winners' fields"):
        line = next(ln for ln in text.splitlines() if label in ln and ln.startswith("|"))
        assert all(v > 0 for v in figures(line)), line
    # The interleaved half of the in-process requests looks its key up first, on every database
    # (elsewhere, on PostgreSQL, the key is checked in the winners' statement: a lookup of 0).
    looked_up = figures(next(ln for ln in text.splitlines() if "the key looked up first" in ln))
    assert len(looked_up) == len(request_path.CASES) and all(v > 0 for v in looked_up), looked_up

