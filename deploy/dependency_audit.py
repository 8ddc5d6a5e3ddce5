"""Dependency audit (`make audit`, run by CI): pip-audit over the pinned requirements and over the
packages installed in the project's virtualenv (which holds the transitive ones and the Python
client's), against PyPI's vulnerability data.

Exit status: 1 when a known vulnerability has a fixed version to move to; 0 otherwise. A package
the service could not answer for (offline, or no data for that version) is listed under
"NOT AUDITED" and does not fail the run: a network outage must not fail CI, but it must not look
like a clean audit either. pip-audit runs from its own virtualenv (the Makefile creates it), so the
project's virtualenv does not change. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Pinned requirement files, audited as written (no resolution: every line is `name==version`).
REQUIREMENT_FILES = ("requirements.txt", "examples/requirements.txt", "bench/requirements.txt")
SERVICE = "pypi"


@dataclass
class Findings:
    """One pip-audit run's answer, sorted into what fails CI and what is only reported."""

    source: str
    fixable: list[str] = field(default_factory=list)
    unfixed: list[str] = field(default_factory=list)
    not_audited: list[str] = field(default_factory=list)
    audited: int = 0
    error: str = ""


def classify(source: str, report: dict) -> Findings:
    """pip-audit's JSON (`--format json`): dependencies with `vulns` (each with `fix_versions`),
    or with `skip_reason` when the service gave no answer for them."""
    found = Findings(source=source)
    for dep in report.get("dependencies", []):
        name = f"{dep.get('name')} {dep.get('version', '')}".strip()
        if "skip_reason" in dep:
            found.not_audited.append(f"{name}: {dep['skip_reason']}")
            continue
        found.audited += 1
        for vuln in dep.get("vulns", []):
            ids = ", ".join([vuln.get("id", "?"), *vuln.get("aliases", [])])
            if vuln.get("fix_versions"):
                found.fixable.append(f"{name}: {ids} (fixed in {', '.join(vuln['fix_versions'])})")
            else:
                found.unfixed.append(f"{name}: {ids} (no fixed version yet)")
    return found


def run_pip_audit(pip_audit: str, source: str, args: list[str], timeout: float) -> Findings:
    cmd = [pip_audit, "--vulnerability-service", SERVICE, "--format", "json", "--progress-spinner", "off", *args]
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Findings(source=source, error=f"pip-audit gave no answer in {timeout:.0f} s (service unreachable?)")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        # No report at all: pip-audit failed before auditing (typically the service is unreachable).
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return Findings(source=source, error=f"pip-audit failed (exit {done.returncode}): {last}")
    return classify(source, report)


def audits(venv_site_packages: str) -> list[tuple[str, list[str]]]:
    runs = [(name, ["--no-deps", "--disable-pip", "--requirement", name])
            for name in REQUIREMENT_FILES if (REPO / name).exists()]
    runs.append((f"installed packages ({venv_site_packages})", ["--path", venv_site_packages]))
    return runs


def report(results: list[Findings]) -> int:
    fixable = [f"{r.source}: {item}" for r in results for item in r.fixable]
    unfixed = [f"{r.source}: {item}" for r in results for item in r.unfixed]
    for r in results:
        status = r.error or f"{r.audited} audited, {len(r.not_audited)} not audited"
        print(f"[audit] {r.source}: {status}")
    for item in unfixed:
        print(f"[audit] vulnerable, no fix yet (not failing): {item}")
    for item in fixable:
        print(f"[audit] VULNERABLE, fix available: {item}")
    not_audited = sum(len(r.not_audited) for r in results)
    errors = [r for r in results if r.error]
    if not_audited or errors:
        print(f"[audit] NOT AUDITED: {not_audited} packages got no answer from the {SERVICE} vulnerability "
              f"service and {len(errors)} runs failed; these are unknown, not clean. First few:")
        for item in [i for r in results for i in r.not_audited][:5]:
            print(f"[audit]   {item}")
    if fixable:
        print(f"[audit] FAILED: {len(fixable)} known vulnerabilities with a fix available")
        return 1
    print("[audit] no known vulnerability with a fix available"
          + (" among the packages that could be audited" if not_audited or errors else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable (its own venv)")
    parser.add_argument("--site-packages", default=sysconfig.get_paths()["purelib"],
                        help="installed packages to audit (default: this interpreter's virtualenv)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    results = [run_pip_audit(args.pip_audit, source, extra, args.timeout)
               for source, extra in audits(args.site_packages)]
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
