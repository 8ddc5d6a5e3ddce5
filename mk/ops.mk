# Operations: rate limits, metrics, audit, dashboard, OpenAPI.
.PHONY: test-ops openapi
OPS_TESTS := tests/ops tests/tenants/test_throttling.py tests/core/test_counters.py tests/memcloud/test_schema.py \
	tests/e2e/test_rate_limits.py tests/e2e/test_metrics.py tests/e2e/test_audit.py \
	tests/e2e/test_quotas.py tests/e2e/test_dashboard_browser.py

test-ops: venv  ## the operations tests (REDIS_URL_FOR_TESTS enables the Redis ones)
	$(PY) -m pytest $(OPS_TESTS) $(PYTEST_ARGS)

openapi: venv  ## write openapi.json and validate it as OpenAPI 3
	$(PY) manage.py spectacular --format openapi-json --file openapi.json --validate --fail-on-warn
	$(PY) -c "import json; from openapi_spec_validator import validate; validate(json.load(open('openapi.json'))); print('openapi.json: valid OpenAPI 3')"
