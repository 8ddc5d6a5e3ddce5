# Deployment checks (no Docker engine or cluster needed): see docs/deploy.md.
.PHONY: docker-check chart-check terraform-check deploy-check
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION ?= 3.3.30

# hadolint, then build and start the image's commands in a clean virtualenv (tests/deploy/test_docker.py).
docker-check: venv
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m pytest tests/deploy/test_docker.py -v $(PYTEST_ARGS)

# helm lint + helm template (defaults, ci/full-values.yaml) + Kubernetes 1.35 schema validation.
chart-check: venv
	$(PY) -m deploy.chart_check

# HCL parse/wiring test, then checkov in its own virtualenv (it brings ~100 packages).
terraform-check: venv
	$(PY) -m pytest tests/deploy/test_terraform.py -v $(PYTEST_ARGS)
	test -x $(CHECKOV_VENV)/bin/checkov || ( $(PYTHON) -m venv $(CHECKOV_VENV) \
	  && $(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION) )
	$(CHECKOV_VENV)/bin/checkov --compact --skip-download -d deploy/terraform

deploy-check: docker-check chart-check terraform-check
