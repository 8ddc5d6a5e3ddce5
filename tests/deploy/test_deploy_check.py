"""`manage.py check --deploy --fail-level WARNING` passes with the production environment the image
and the chart set (plus the secrets they leave to the operator), and fails when a protection is off."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import chart_check
from tests.deploy.dockerfile import stages

REPO = Path(__file__).resolve().parents[2]
HOST = "memcloud.example.com"


def _host_env(tmp_path: Path) -> dict[str, str]:
    """What the operator supplies (secrets, hosts) plus local stand-ins for the image's folders."""
    return {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "AGENT_MEM_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def image_env(tmp_path: Path) -> dict[str, str]:
    runtime = stages(REPO / "Dockerfile")[-1]
    env = runtime.env()
    env.pop("PATH", None)  # the image's venv path; this test runs the current interpreter
    return {**env, **_host_env(tmp_path)}


def test_the_image_environment_passes_the_deploy_check(tmp_path):
    env = image_env(tmp_path)
    assert env["DJANGO_DEBUG"] == "0"
    done = deploy_check(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_the_chart_environment_passes_the_deploy_check(tmp_path):
    try:
        helm = chart_check.helm_bin()
    except chart_check.HelmUnavailable as exc:
        pytest.skip(f"helm cannot be obtained, chart not rendered: {exc}")
    for values in chart_check.VALUE_SETS.values():
        objects = chart_check.render(helm, values)
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        literal = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        assert literal["DJANGO_DEBUG"] == "0"
        # Hosts, the data and metrics folders and the Redis URL stay the local stand-ins.
        for name in ("DJANGO_ALLOWED_HOSTS", "AGENT_MEM_DATA_DIR", "PROMETHEUS_MULTIPROC_DIR", "REDIS_URL"):
            literal.pop(name, None)
        done = deploy_check({**literal, **_host_env(tmp_path)})
        assert done.returncode == 0, f"{values}: {done.stdout}{done.stderr}"


@pytest.mark.parametrize(("override", "warning"), [
    ({"DJANGO_HSTS_SECONDS": "0"}, "security.W004"),
    ({"DJANGO_SECURE_COOKIES": "0"}, "security.W012"),
    ({"DJANGO_HSTS_INCLUDE_SUBDOMAINS": "0"}, "security.W005"),
])
def test_the_check_fails_when_a_protection_is_turned_off(tmp_path, override, warning):
    done = deploy_check({**image_env(tmp_path), **override})
    assert done.returncode != 0 and warning in done.stderr + done.stdout


def test_the_ssl_redirect_warning_is_silenced_only_while_the_ingress_redirects(tmp_path):
    """With DJANGO_SSL_REDIRECT on, Django redirects itself: nothing is silenced then."""
    code = "from django.conf import settings; print(settings.SILENCED_SYSTEM_CHECKS, settings.SECURE_SSL_REDIRECT)"
    for flag, expected in (("0", "['security.W008'] False"), ("1", "[] True")):
        env = {**image_env(tmp_path), "DJANGO_SSL_REDIRECT": flag, "DJANGO_SETTINGS_MODULE": "memcloud.settings"}
        done = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == expected, done.stderr
    done = deploy_check({**image_env(tmp_path), "DJANGO_SSL_REDIRECT": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_development_keeps_plain_http_working(tmp_path):
    env = {**_host_env(tmp_path), "DJANGO_DEBUG": "1", "DJANGO_SETTINGS_MODULE": "memcloud.settings"}
    code = ("from django.conf import settings; "
            "print(settings.SECURE_HSTS_SECONDS, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)")
    done = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0 False False", done.stderr
