# Persistence: snapshot and checkpoint benchmark (bench/checkpoint_bench.py, results in
# bench/results/checkpoint.json, summary in bench/CHECKPOINT.md). DATABASE_URL names the PostgreSQL
# server; a throw-away database is created there and dropped afterwards.
CHECKPOINT_BENCH_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/postgres)
CHECKPOINT_BENCH_ARGS ?=

.PHONY: bench-checkpoint test-persistence
bench-checkpoint: venv
	DATABASE_URL=$(CHECKPOINT_BENCH_DATABASE_URL) $(PY) bench/checkpoint_bench.py $(CHECKPOINT_BENCH_ARGS)

test-persistence: venv
	$(PY) -m pytest -q tests/episodes/test_snapshots.py tests/episodes/test_checkpoint.py tests/e2e/test_persistence.py
