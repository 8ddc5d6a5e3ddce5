"""Lint, render and schema-validate the Helm chart (`make chart-check`, tests/deploy/test_chart.py).

helm and kubectl come from PATH, else from deploy/get-helm.sh; nothing here needs a cluster. Every
rendered object is validated (strictly: unknown fields are errors) with kubernetes-validate
against KUBERNETES_VERSION. A ServiceMonitor is a custom resource (Prometheus Operator): no
Kubernetes schema describes it, so that one kind is checked for shape only.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "memcloud"
GET_HELM = REPO / "deploy" / "get-helm.sh"
KUBERNETES_VERSION = "1.35.0"
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
VALUE_SETS = {"defaults": None, "full": CHART / "ci" / "full-values.yaml"}


class HelmUnavailable(RuntimeError):
    pass


@dataclass
class Checked:
    values: str
    kinds: list[str]
    schema_version: str
    skipped: list[str]


def helm_bin() -> str:
    """The helm binary: on PATH, else fetched (and cached) by get-helm.sh."""
    found = shutil.which("helm")
    if found:
        return found
    if not GET_HELM.exists():
        raise HelmUnavailable(f"helm is not on PATH and {GET_HELM.name} is missing")
    result = subprocess.run(["bash", str(GET_HELM)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise HelmUnavailable(f"get-helm.sh failed: {result.stderr.strip()[-500:]}")
    helm = Path(result.stdout.strip().splitlines()[-1]) / "helm"
    if not helm.exists():
        raise HelmUnavailable(f"get-helm.sh printed no folder holding helm: {result.stdout!r}")
    return str(helm)


def _values_args(values: Path | None) -> list[str]:
    return ["-f", str(values)] if values else []


def lint(helm: str, values: Path | None) -> str:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *_values_args(values)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise AssertionError(f"helm lint failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def render(helm: str, values: Path | None) -> list[dict]:
    result = subprocess.run(
        [helm, "template", "memcloud", str(CHART), "--namespace", "memcloud",
         "--kube-version", KUBERNETES_VERSION, *_values_args(values)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(objects: list[dict]) -> tuple[str, list[str]]:
    """Validate each object; returns the schema version used and the kinds left unvalidated."""
    versions, skipped = set(), []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
            if not obj.get("spec", {}).get("endpoints"):
                raise AssertionError(f"{name}: a ServiceMonitor needs spec.endpoints")
            skipped.append(name)
            continue
        try:
            versions.add(kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True))
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name} is invalid for Kubernetes {KUBERNETES_VERSION}: {exc.message}") from exc
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise AssertionError(f"{name}: no schema for {obj.get('apiVersion')}: {exc}") from exc
    return ",".join(sorted(versions)), skipped


def check(helm: str, label: str, values: Path | None) -> Checked:
    lint(helm, values)
    objects = render(helm, values)
    schema_version, skipped = validate(objects)
    return Checked(label, [o["kind"] for o in objects], schema_version, skipped)


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    try:
        helm = helm_bin()
    except HelmUnavailable as exc:
        print(f"chart-check: cannot obtain helm: {exc}", file=sys.stderr)
        return 2
    for label, values in VALUE_SETS.items():
        try:
            done = check(helm, label, values)
        except AssertionError as exc:
            print(f"chart-check [{label}]: FAILED\n{exc}", file=sys.stderr)
            return 1
        skipped = f"; not schema-validated (custom resource): {', '.join(done.skipped)}" if done.skipped else ""
        print(f"chart-check [{label}]: helm lint ok; {len(done.kinds)} objects valid against "
              f"Kubernetes {done.schema_version} ({', '.join(done.kinds)}){skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
