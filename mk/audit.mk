# Dependency audit (deploy/dependency_audit.py): pip-audit, pinned, in a virtualenv of its own so
# the project's does not change. Fails on a known vulnerability with a fix available; packages the
# vulnerability service gives no answer for are reported as not audited (see docs/deploy.md).
.PHONY: audit
AUDIT_VENV ?= .venv-audit
PIP_AUDIT_VERSION ?= 2.10.1

$(AUDIT_VENV)/.installed-$(PIP_AUDIT_VERSION):
	test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet pip-audit==$(PIP_AUDIT_VERSION)
	touch $@

audit: venv $(AUDIT_VENV)/.installed-$(PIP_AUDIT_VERSION)
	$(PY) -m deploy.dependency_audit --pip-audit $(AUDIT_VENV)/bin/pip-audit
