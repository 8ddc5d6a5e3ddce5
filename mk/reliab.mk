# Reliability: `make soak` runs mixed load at a fixed rate against a fresh server (SOAK_MINUTES, SOAK_RATE).
SOAK_MINUTES ?= 10
SOAK_RATE ?= 40
SOAK_INTERVAL ?= 60

.PHONY: soak test-reliability
soak: venv
	$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) --interval $(SOAK_INTERVAL)

test-reliability: venv
	$(PY) -m pytest tests/reliability $(PYTEST_ARGS)

# Fault figures at scale (tests/reliability/crash.py, docs/reliability.md), not in `make test`: a crash
# loop of CRASH_KILLS SIGKILLs, a replica killed behind nginx, 64 clients against a rate limit.
CRASH_KILLS ?= 200
CRASH_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/memcloud_crash)
.PHONY: crash
crash: venv
	DATABASE_URL=$(CRASH_DATABASE_URL) $(PY) -m tests.reliability.crash --kills $(CRASH_KILLS)
