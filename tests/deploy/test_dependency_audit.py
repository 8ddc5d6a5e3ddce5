"""deploy/dependency_audit.py sorts pip-audit's JSON: a fixable vulnerability fails, an unfixed one
and a package the service could not answer for are reported without failing."""

from __future__ import annotations

from deploy.dependency_audit import Findings, classify, report

# The shape `pip-audit --format json` writes (pip-audit 2.x).
REPORT = {
    "dependencies": [
        {"name": "django", "version": "3.2.0", "vulns": [
            {"id": "PYSEC-2021-98", "fix_versions": ["3.2.2"], "aliases": ["CVE-2021-31542"], "description": "..."},
        ]},
        {"name": "somelib", "version": "1.0", "vulns": [
            {"id": "GHSA-xxxx-yyyy-zzzz", "fix_versions": [], "aliases": [], "description": "..."},
        ]},
        {"name": "numpy", "version": "2.4.6", "vulns": []},
        {"name": "orjson", "skip_reason": "Dependency not found on PyPI and could not be audited: orjson (3.13.0)"},
    ],
    "fixes": [],
}


def test_findings_are_sorted_by_what_can_be_done():
    found = classify("requirements.txt", REPORT)
    assert found.audited == 3
    assert found.fixable == ["django 3.2.0: PYSEC-2021-98, CVE-2021-31542 (fixed in 3.2.2)"]
    assert found.unfixed == ["somelib 1.0: GHSA-xxxx-yyyy-zzzz (no fixed version yet)"]
    assert found.not_audited == ["orjson: Dependency not found on PyPI and could not be audited: orjson (3.13.0)"]


def test_a_fixable_vulnerability_fails_the_audit(capsys):
    assert report([classify("requirements.txt", REPORT)]) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE, fix available: requirements.txt: django 3.2.0" in out and "FAILED: 1" in out


def test_no_answer_from_the_service_is_reported_but_does_not_fail(capsys):
    offline = {"dependencies": [REPORT["dependencies"][3]]}
    failed = Findings(source="installed packages", error="pip-audit failed (exit 1): ConnectionError")
    assert report([classify("requirements.txt", offline), failed]) == 0
    out = capsys.readouterr().out
    assert "NOT AUDITED: 1 packages" in out and "1 runs failed" in out and "unknown, not clean" in out
    assert "ConnectionError" in out


def test_unfixed_vulnerabilities_alone_do_not_fail(capsys):
    only_unfixed = {"dependencies": [REPORT["dependencies"][1], REPORT["dependencies"][2]]}
    assert report([classify("requirements.txt", only_unfixed)]) == 0
    assert "no fix yet (not failing)" in capsys.readouterr().out
