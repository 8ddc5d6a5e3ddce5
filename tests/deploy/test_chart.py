"""The Helm chart lints, renders and validates against the Kubernetes schemas (deploy/chart_check.py)."""

from __future__ import annotations

import copy

import pytest

from deploy import chart_check

CONTRACT_ENV = {
    "DATABASE_URL", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DJANGO_DEBUG", "REDIS_URL",
    "AGENT_MEM_API_KEY", "AGENT_MEM_DIM", "AGENT_MEM_DATA_DIR", "AGENT_MEM_RATE_LIMIT",
    "AGENT_MEM_RATE_WINDOW_SECS", "AGENT_MEM_AUDIT_LOG", "AGENT_MEM_MAX_BATCH",
    "AGENT_MEM_MAX_BODY_BYTES", "AGENT_MEM_MAX_TOP_K", "AGENT_MEM_INDEX_MEMORY_MB",
    "GUNICORN_WORKERS", "GUNICORN_BIND", "PROMETHEUS_MULTIPROC_DIR",
}


@pytest.fixture(scope="module")
def helm() -> str:
    try:
        return chart_check.helm_bin()
    except chart_check.HelmUnavailable as exc:
        pytest.skip(f"helm cannot be obtained, chart not checked: {exc}")


@pytest.fixture(scope="module")
def full(helm) -> dict[str, dict]:
    return {o["kind"]: o for o in chart_check.render(helm, chart_check.VALUE_SETS["full"])}


@pytest.fixture(scope="module")
def defaults(helm) -> dict[str, dict]:
    return {o["kind"]: o for o in chart_check.render(helm, None)}


def _container(objects: dict[str, dict], kind: str = "Deployment") -> dict:
    return objects[kind]["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("label", sorted(chart_check.VALUE_SETS))
def test_chart_lints_renders_and_validates(helm, label):
    done = chart_check.check(helm, label, chart_check.VALUE_SETS[label])
    assert done.schema_version == "1.35"
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget"} <= set(done.kinds)
    assert done.skipped == (["ServiceMonitor/memcloud-full"] if label == "full" else [])


def test_full_values_turn_every_optional_object_on(full):
    assert set(full) >= {
        "Deployment", "Service", "Ingress", "PersistentVolumeClaim", "Secret", "Job",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "ServiceAccount", "NetworkPolicy",
    }
    assert _container(full)["image"].startswith("registry.example.com/memcloud@sha256:")
    # The HPA owns the replica count.
    assert "replicas" not in full["Deployment"]["spec"]


def test_every_spec_variable_is_set_from_values(full):
    env = _env(_container(full))
    assert set(env) >= CONTRACT_ENV
    assert env["AGENT_MEM_DIM"]["value"] == "768"
    assert env["AGENT_MEM_RATE_LIMIT"]["value"] == "600"
    assert env["AGENT_MEM_MAX_BODY_BYTES"]["value"] == "16777216"
    assert env["AGENT_MEM_INDEX_MEMORY_MB"]["value"] == "2048"
    assert env["GUNICORN_WORKERS"]["value"] == "4"
    assert env["DJANGO_DEBUG"]["value"] == "0"
    assert "api.example.com" in env["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    assert "memcloud.example.com" in env["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    for name in ("DATABASE_URL", "DJANGO_SECRET_KEY", "AGENT_MEM_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "memcloud-full"
    assert full["Secret"]["stringData"]["DATABASE_URL"].startswith("postgres://")


def test_defaults_read_secrets_from_an_existing_secret_and_leave_unset_options_unset(defaults):
    assert "Secret" not in defaults
    env = _env(_container(defaults))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "memcloud-secrets"
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "AGENT_MEM_RATE_LIMIT" not in env and "AGENT_MEM_AUDIT_LOG" not in env
    assert defaults["Deployment"]["spec"]["replicas"] == 2


def test_pods_run_non_root_on_a_read_only_root_with_writable_tmp_and_metrics_dir(full):
    pod = full["Deployment"]["spec"]["template"]["spec"]
    container = _container(full)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    env = _env(container)
    for path in ("/tmp", env["PROMETHEUS_MULTIPROC_DIR"]["value"]):
        assert "emptyDir" in volumes[mounts[path]]
    data = volumes[mounts[env["AGENT_MEM_DATA_DIR"]["value"]]]
    assert data["persistentVolumeClaim"]["claimName"] == full["PersistentVolumeClaim"]["metadata"]["name"]


def test_probes_hit_health_and_ready(full):
    container = _container(full)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    # The probe's Host header must be one Django accepts.
    host = container["livenessProbe"]["httpGet"]["httpHeaders"][0]["value"]
    assert host in _env(container)["DJANGO_ALLOWED_HOSTS"]["value"].split(",")
    assert container["resources"]["limits"]["memory"]


def test_ingress_routes_a_tenant_by_its_key_hash(full):
    annotations = full["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_x_api_key$http_authorization"


def _routed(ingress: dict, path: str) -> bool:
    """Whether some rule's path takes `path` to the chart's Service (Kubernetes rules: Prefix by
    whole path elements, Exact as is)."""
    service = ingress["metadata"]["name"]
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            prefix = p["path"].rstrip("/")
            matches = (p["pathType"] == "Exact" and path == p["path"]) or (
                p["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/")))
            if matches and p["backend"]["service"] == {"name": service, "port": {"name": "http"}}:
                return True
    return False


@pytest.mark.parametrize("path", ["/v1/query", "/mcp"])
def test_ingress_routes_the_api_and_the_mcp_endpoint_to_the_service(full, path):
    assert _routed(full["Ingress"], path)


def test_migrate_job_is_a_hook_that_runs_after_its_secret(full):
    job, secret = full["Job"], full["Secret"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < weight
    assert _container(full, "Job")["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert _env(_container(full, "Job"))["DATABASE_URL"] == _env(_container(full))["DATABASE_URL"]


def test_validation_rejects_a_broken_object(full):
    broken = copy.deepcopy(full["Deployment"])
    broken["spec"]["replicas"] = "two"
    with pytest.raises(AssertionError, match="invalid for Kubernetes"):
        chart_check.validate([broken])
    unknown = copy.deepcopy(full["Service"])
    unknown["spec"]["portz"] = []
    with pytest.raises(AssertionError, match="invalid for Kubernetes"):
        chart_check.validate([unknown])


def _routes_metrics(path: str, path_type: str) -> bool:
    """Kubernetes path matching: Prefix by whole path elements, Exact as is."""
    if path_type == "Exact":
        return path == "/metrics"
    trimmed = path.rstrip("/")
    return trimmed in ("", "/metrics")


def _ingress_paths(ingress: dict) -> list[tuple[str, str]]:
    return [(p["path"], p["pathType"]) for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]


def test_the_ingress_routes_the_public_paths_and_never_metrics(helm, full, tmp_path):
    values = tmp_path / "ingress.yaml"
    values.write_text("ingress:\n  enabled: true\n")  # the default hosts and paths
    rendered = {o["kind"]: o for o in chart_check.render(helm, values)}
    for ingress in (full["Ingress"], rendered["Ingress"]):
        paths = _ingress_paths(ingress)
        assert ("/v1", "Prefix") in paths and ("/admin", "Prefix") in paths and ("/static", "Prefix") in paths
        assert not any(_routes_metrics(path, kind) for path, kind in paths), paths
        assert not any(path in ("/health", "/ready") for path, _ in paths)
    hosts = {rule["host"]: rule["http"]["paths"] for rule in full["Ingress"]["spec"]["rules"]}
    assert [p["path"] for p in hosts["admin.example.com"]] == ["/admin", "/static"]  # a host's own paths win


@pytest.mark.parametrize("path", ["/", "/metrics", "/metrics/"])
def test_a_path_that_would_route_metrics_is_refused(helm, tmp_path, path):
    values = tmp_path / "bad.yaml"
    values.write_text(f"ingress:\n  enabled: true\n  hosts:\n    - host: a.example.com\n      paths:\n"
                      f"        - path: {path}\n          pathType: Prefix\n")
    with pytest.raises(AssertionError, match="would route /metrics"):
        chart_check.render(helm, values)
    shared = tmp_path / "shared.yaml"  # the same path in the list every host defaults to
    shared.write_text(f"ingress:\n  enabled: true\n  paths:\n    - path: {path}\n      pathType: Prefix\n")
    with pytest.raises(AssertionError, match="would route /metrics"):
        chart_check.render(helm, shared)


def test_the_service_monitor_scrapes_with_the_token_the_pods_expect(full):
    endpoint = full["ServiceMonitor"]["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    assert credentials == {"name": full["Secret"]["metadata"]["name"], "key": "AGENT_MEM_METRICS_TOKEN"}
    assert full["Secret"]["stringData"]["AGENT_MEM_METRICS_TOKEN"]
    pod_token = _env(_container(full))["AGENT_MEM_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert (pod_token["name"], pod_token["key"]) == (credentials["name"], credentials["key"])
    env = _env(_container(full))
    assert env["AGENT_MEM_METRICS_ALLOW"]["value"] == "10.42.0.0/16"
    assert env["AGENT_MEM_PUBLIC_DASHBOARD"]["value"] == "1"


def test_by_default_metrics_has_no_open_network_and_the_dashboard_is_for_staff(defaults):
    env = _env(_container(defaults))
    assert "AGENT_MEM_METRICS_ALLOW" not in env and "AGENT_MEM_PUBLIC_DASHBOARD" not in env
    assert env["AGENT_MEM_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "memcloud-secrets"
