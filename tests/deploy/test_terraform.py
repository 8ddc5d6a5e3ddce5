"""deploy/terraform parses (python-hcl2) and wires every variable into the chart's values."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "deploy" / "terraform"
CHART_VALUES = yaml.safe_load((REPO / "charts" / "memcloud" / "values.yaml").read_text())
VAR_REF = re.compile(r"\bvar\.([a-z_][a-z0-9_]*)")


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle)


def _blocks(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    """`variable "x" {...}` blocks as {"x": body}."""
    return {_unquote(name): body for block in doc.get(kind, []) for name, body in block.items()}


def _locals(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for block in doc.get("locals", []) for k, v in block.items() if not k.startswith("__")}


def _leaves(tree: Any, prefix: tuple[str, ...] = ()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not key.startswith("__"):
                yield from _leaves(value, (*prefix, _unquote(key)))
    else:
        yield prefix, tree


def _chart_has(path: tuple[str, ...]) -> bool:
    node: Any = CHART_VALUES
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.fixture(scope="module")
def module() -> dict[str, dict[str, Any]]:
    files = sorted(MODULE.rglob("*.tf"))
    assert {p.name for p in files} >= {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
    return {str(p.relative_to(MODULE)): _load(p) for p in files}


def test_every_file_parses_and_pins_its_providers(module):
    for name, doc in module.items():
        for block in doc.get("terraform", []):
            for providers in block.get("required_providers", []):
                for provider, spec in providers.items():
                    if provider.startswith("__"):
                        continue
                    assert re.fullmatch(r'"?~> \d+\.\d+"?', spec["version"]), f"{name}: {provider} not pinned"
    versions = module["versions.tf"]["terraform"][0]
    assert _unquote(versions["required_providers"][0]["helm"]["source"]) == "hashicorp/helm"


def test_chart_values_set_by_the_module_exist_in_the_chart(module):
    values = _locals(module["main.tf"])["values"]
    leaves = list(_leaves(values))
    assert len(leaves) >= 25
    for path, _ in leaves:
        assert _chart_has(path), f"the module sets {'.'.join(path)}, which charts/memcloud/values.yaml lacks"
    secret_paths = re.findall(r'name = \\?"(secret\.[A-Za-z]+)', _locals(module["main.tf"])["secret_values"])
    assert set(secret_paths) == {"secret.databaseUrl", "secret.secretKey", "secret.apiKey", "secret.metricsToken"}
    for dotted in secret_paths:
        assert _chart_has(tuple(dotted.split(".")))


def test_every_variable_is_declared_described_and_used(module):
    declared = _blocks(module["variables.tf"], "variable")
    main_text = (MODULE / "main.tf").read_text() + (MODULE / "outputs.tf").read_text()
    used = set(VAR_REF.findall(main_text))
    assert used <= set(declared), f"undeclared: {used - set(declared)}"
    assert set(declared) <= used, f"declared but never used: {set(declared) - used}"
    for name, body in declared.items():
        assert _unquote(body.get("description", "")).strip(), f"variable {name} has no description"
    for name in ("database_url", "django_secret_key", "bootstrap_api_key", "metrics_token"):
        assert declared[name]["sensitive"] is True


def test_the_spec_settings_and_the_issue_inputs_are_variables(module):
    values = _locals(module["main.tf"])["values"]
    wired = {".".join(path): str(value) for path, value in _leaves(values)}
    expected = {
        "image.repository": "var.image_repository", "image.tag": "var.image_tag",
        "replicaCount": "var.replicas", "secret.existingSecret": "var.existing_secret_name",
        "config.dim": "var.embedding_dim", "config.redisUrl": "var.redis_url",
        "config.rateLimit": "var.rate_limit", "config.rateWindowSecs": "var.rate_window_secs",
        "config.auditLog": "var.audit_log", "config.maxBatch": "var.max_batch",
        "config.maxBodyBytes": "var.max_body_bytes", "config.maxTopK": "var.max_top_k",
        "config.indexMemoryMb": "var.index_memory_mb", "config.allowedHosts": "var.allowed_hosts",
        "gunicorn.workers": "var.gunicorn_workers", "ingress.hosts": "var.ingress_host",
        "ingress.enabled": "var.ingress_host",
    }
    for path, ref in expected.items():
        assert ref in wired.get(path, ""), f"{path} is not wired to {ref}"


def test_the_release_deploys_the_repository_chart_and_hides_secrets(module):
    release = _blocks(module["main.tf"], "resource")["helm_release"]
    body = release[next(iter(release))]
    assert "local.chart_path" in body["chart"]
    assert "charts/memcloud" in _locals(module["main.tf"])["chart_path"]
    assert "local.secret_values" in body["set_sensitive"]
    assert "yamlencode(local.values)" in str(body["values"])
    outputs = _blocks(module["outputs.tf"], "output")
    assert {"release_name", "namespace", "status", "service_name", "url"} <= set(outputs)


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform CLI not installed: fmt check skipped")
def test_terraform_fmt_is_clean():
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(MODULE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
