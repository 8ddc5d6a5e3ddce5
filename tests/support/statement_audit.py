"""The statement audit (docs/scaling.md, Every statement names its tenant): every SQL statement the
suite runs in this process passes through a Django execute wrapper (core/db.py's prepared
statements too), and one touching a tenant-owned table must name the tenant: a `tenant_id`
predicate (`= x`, `IN (...)`, `= ANY(...)`), a join on tenant_id, or a tenant_id column of the row it
inserts, at least once per mention of such a table. A distributed PostgreSQL (Citus) routes such a
statement to the one node holding the tenant; any other fans out to every node.

A test fails when code of the project ran a statement that does not; the exceptions, each on purpose
and each listed in docs/scaling.md, are EXEMPT below (matched on the innermost frame of the
project's own code), plus statements issued by the tests themselves (their own inspection of the
database). Off with MEMCLOUD_STATEMENT_AUDIT=0."""

from __future__ import annotations

import os
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path

import pytest

# Tables of one tenant's data: distributed by tenant_id on Citus (docs/scaling.md).
TENANT_TABLES = ("episodes_episode", "episodes_tombstone", "episodes_indeximage", "tenants_tenantstate",
                 "ops_rate_counter", "ops_usage_minute")

# (module path, function): project code allowed to run statements across tenants, and why.
EXEMPT = {
    ("episodes/services.py", "episodes_expire"): "the expiry sweep: every tenant's expired episodes",
    ("core/usage.py", "_maybe_clean"): "usage rows past the retention, every tenant's at once",
    ("core/counters.py", "_maybe_clean"): "finished rate-limit windows, every tenant's at once",
    ("ops/selectors.py", "usage_totals"): "the dashboard: totals over every tenant",
    ("ops/selectors.py", "usage_per_minute"): "the dashboard: per-minute totals over every tenant",
    ("ops/selectors.py", "tenant_table"): "the dashboard: one line per tenant",
    ("ops/metrics.py", "collect"): "agent_mem_tenants_active: tenants with episodes, over every tenant",
    ("core/tenant_keys.py", "_primary_key"): "migrations: catalog reads",
}
# Whole areas exempt: migrations and the admin's cross-tenant pages.
EXEMPT_PREFIXES = ("django/db/migrations/", "django/contrib/admin/", "core/migrations/", "episodes/migrations/",
                   "tenants/migrations/", "ops/migrations/", "core/admin.py", "tenants/admin.py")

ROOT = Path(__file__).resolve().parents[2]
_AUDIT_FILE = Path(__file__).resolve()
_MENTION = re.compile(r'\b(?:FROM|JOIN|INTO|UPDATE)\s+"?(' + "|".join(TENANT_TABLES) + r')"?', re.I)
_PREDICATE = re.compile(r'"?\btenant_id"?\s*(?:=|IN\s*\()|=\s*(?:"?\w+"?\.)?"?tenant_id\b', re.I)
_INSERT = re.compile(r'\bINTO\s+"?(' + "|".join(TENANT_TABLES) + r')"?\s*\(([^)]*)\)', re.I)


@lru_cache(maxsize=8192)
def names_its_tenant(sql: str) -> bool:
    """True when `sql` touches no tenant-owned table, or names the tenant once per mention of one."""
    mentions = len(_MENTION.findall(sql))
    if not mentions:
        return True
    named = len(_PREDICATE.findall(sql))
    named += sum(1 for _table, columns in _INSERT.findall(sql) if "tenant_id" in columns)
    return named >= mentions


def _culprit() -> tuple[str, str, int] | None:
    """The innermost frame of the project's own code running the statement: (path, function, line)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path != _AUDIT_FILE and ".venv" not in path.parts and "site-packages" not in path.parts:
            try:
                rel = path.resolve().relative_to(ROOT).as_posix()
            except ValueError:
                rel = None
            if rel is not None:
                return rel, frame.f_code.co_name, frame.f_lineno
        frame = frame.f_back
    return None


def _django_frames() -> set[str]:
    frames, frame = set(), sys._getframe(2)
    while frame is not None:
        parts = Path(frame.f_code.co_filename).parts
        if "django" in parts:
            frames.add("/".join(parts[parts.index("django"):]))
        frame = frame.f_back
    return frames


class StatementAudit:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.lock = threading.Lock()
        self.checked = 0

    def __call__(self, execute, sql, params, many, context):
        self.checked += 1
        if isinstance(sql, str) and not names_its_tenant(sql):
            self._judge(sql)
        return execute(sql, params, many, context)

    def _judge(self, sql: str) -> None:
        culprit = _culprit()
        if culprit is None or culprit[0].startswith("tests/"):
            return  # the test's own look at the database
        path, function, line = culprit
        if (path, function) in EXEMPT or path.startswith(EXEMPT_PREFIXES):
            return
        if any(f.startswith(EXEMPT_PREFIXES) for f in _django_frames()):
            return
        with self.lock:
            self.violations.append(f"{path}:{line} ({function}): {sql[:300]}")

    def take(self) -> list[str]:
        with self.lock:
            found, self.violations = self.violations, []
        return found


AUDIT = StatementAudit()
ENABLED = os.environ.get("MEMCLOUD_STATEMENT_AUDIT", "1") != "0"


def _install(connection, **_kwargs) -> None:
    if AUDIT not in connection.execute_wrappers:
        connection.execute_wrappers.append(AUDIT)


@pytest.fixture(scope="session", autouse=True)
def _statement_audit_installed():
    if not ENABLED:
        yield
        return
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_install)  # connections opened later, in any thread
    for connection in connections.all():
        _install(connection)
    yield
    connection_created.disconnect(_install)


@pytest.fixture(autouse=True)
def _statements_name_their_tenant(_statement_audit_installed):
    """Fails the test whose project code ran a statement on a tenant-owned table without naming the
    tenant (see the module's docstring)."""
    AUDIT.take()
    yield
    found = AUDIT.take()
    if found:
        pytest.fail("statements on tenant-owned tables without a tenant_id predicate:\n" + "\n".join(found),
                    pytrace=False)
