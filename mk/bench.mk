# Benchmarks (bench/): `make bench` (quick, about 20 minutes on 2 idle cores), `make bench-full`, `make bench-smoke`.
# Results go to bench/results/<name>.json and bench/RESULTS.md. DATABASE_URL selects the PostgreSQL
# server the HTTP benchmarks use (a throw-away database is created there and dropped afterwards).
BENCH_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/memcloud_bench)

.PHONY: bench bench-full bench-smoke bench-profile bench-limits bench-deps bench-interleaved bench-ingest bench-tenants
$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	touch $@

bench-deps: $(VENV)/.bench-installed

bench: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.run --quick

bench-full: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.run --full

# Seconds-long run into a temporary directory: checks the harness, leaves bench/ untouched.
bench-smoke: venv
	tmp=$$(mktemp -d) && DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.run --smoke \
	  --results-dir $$tmp --report $$tmp/RESULTS.md && echo "smoke results in $$tmp"

# py-spy profile of store, batch store and query on one worker (N episodes in the queried tenant).
bench-profile: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.profile --n $(or $(N),100000)

# What bounds a query's latency: its request path timed part by part over HTTP and in process
# (bench/results/request_path.md).
bench-limits: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.request_path --n $(or $(N),100000)

# Memcloud and Chroma up together, each filled and queried through its own client, every figure
# interleaved between the two (bench/results/interleaved.md); clustered and dense data.
bench-interleaved: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.interleaved --n $(or $(N),100000)

# Ingest alone: the SDK end to end and pre-encoded binary bodies, on a 2-worker server.
bench-ingest: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.ingest --n $(or $(N),100000)

# The many-tenants phases alone, at the issue's scale: cold first queries of 100 small tenants, then
# 10,000 tenants under Zipf access within the default index budget (bench/results/tenants.md).
bench-tenants: bench-deps
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) -m bench.tenants $(BENCH_TENANTS_ARGS)
