"""Print the last figures of every reliability check (build/reliability/*.json) as a Markdown table,
for docs/reliability.md:  python -m tests.reliability.report"""

from __future__ import annotations

import json

from .support import FIGURES_DIR

COLUMNS = (("requests", "requests tried"), ("server_errors", "5xx seen"), ("leaks", "leaks seen"),
           ("episodes_lost", "episodes lost"))
LOST_KEYS = ("episodes_lost", "acknowledged_batches_lost", "acknowledged_lost", "sample_lost")


def row(figures: dict) -> list[str]:
    requests = figures.get("requests")
    if requests is None:
        requests = sum(v for k, v in figures.get("statuses", {}).items()) or None
    lost = next((figures[k] for k in LOST_KEYS if k in figures), None)
    cells = [figures["check"], requests, figures.get("server_errors"), figures.get("leaks"), lost,
             figures.get("at", ""), f"`{figures.get('command', '')}`"]
    return ["–" if c is None else str(c) for c in cells]


def main() -> None:
    print("| check | requests tried | 5xx seen | leaks seen | episodes lost | at (UTC) | command |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted(FIGURES_DIR.glob("*.json")):
        print("| " + " | ".join(row(json.loads(path.read_text()))) + " |")


if __name__ == "__main__":
    main()
