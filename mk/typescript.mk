# TypeScript client (clients/typescript): its dependencies, its generated types, its tests.
.PHONY: ts-deps ts-gen ts-test
TS_DIR := clients/typescript

ts-deps:
	cd $(TS_DIR) && npm ci --no-audit --no-fund

# The types from the schema the server would serve, without starting one.
ts-gen: venv
	$(PY) manage.py spectacular --format openapi-json --file $(TS_DIR)/.openapi.json
	cd $(TS_DIR) && node scripts/gen.mjs .openapi.json && rm -f .openapi.json

ts-test: venv
	$(PY) -m pytest tests/client/test_typescript.py $(PYTEST_ARGS)
