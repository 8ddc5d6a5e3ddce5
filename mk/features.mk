# SPEC section 8: listing, PATCH, batch delete, TTL, scopes, key rotation.
.PHONY: test-features expire
test-features: venv
	$(PY) -m pytest tests/episodes/test_features.py tests/e2e/test_features.py $(PYTEST_ARGS)

expire: venv
	$(PY) manage.py expire
