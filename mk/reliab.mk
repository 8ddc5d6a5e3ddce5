# Reliability: `make soak` runs mixed load at a fixed rate against a fresh server (SOAK_MINUTES, SOAK_RATE).
SOAK_MINUTES ?= 10
SOAK_RATE ?= 40

.PHONY: soak test-reliability
soak: venv
	$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

test-reliability: venv
	$(PY) -m pytest tests/reliability $(PYTEST_ARGS)
