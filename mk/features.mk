# docs/api.md §8: listing, PATCH, batch delete, TTL, scopes, key rotation.
.PHONY: test-features expire
test-features: venv
	$(PY) -m pytest tests/episodes/test_selectors.py tests/episodes/test_cursors.py tests/episodes/test_services.py \
		tests/episodes/test_sweep.py tests/episodes/test_views.py tests/tenants/test_permissions.py \
		tests/tenants/test_commands.py tests/tenants/test_admin.py tests/e2e/test_features.py $(PYTEST_ARGS)

expire: venv
	$(PY) manage.py expire
