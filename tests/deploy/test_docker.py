"""The Dockerfile's shape, and its commands run for real in a clean virtualenv (no Docker engine here).

The slow test reads the Dockerfile rather than repeating it: it runs the build stage's RUN lines
on a copy of the build context (filtered by .dockerignore), then the runtime stage's
ENTRYPOINT + CMD with its ENV, and the HEALTHCHECK command against that server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Stage, dockerignore, ignored, stages

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "DATABASE_URL")


@pytest.fixture(scope="module")
def build_and_runtime() -> tuple[Stage, Stage]:
    found = stages(DOCKERFILE)
    assert len(found) >= 2, "the Dockerfile must be multi-stage"
    return found[0], found[-1]


def test_it_is_multi_stage_on_python_311_slim(build_and_runtime):
    build, runtime = build_and_runtime
    assert build.base == runtime.base == "python:3.11-slim"
    assert build.name and f"--from={build.name}" in " ".join(runtime.all("COPY"))
    assert not runtime.all("RUN") or all("pip install" not in r for r in runtime.all("RUN"))


def test_it_runs_as_a_non_root_user(build_and_runtime):
    _, runtime = build_and_runtime
    user = runtime.last("USER")
    assert user and user.split(":")[0] not in ("root", "0")
    assert any("useradd" in run for run in runtime.all("RUN"))


def test_it_installs_only_pinned_runtime_requirements(build_and_runtime):
    build, _ = build_and_runtime
    installs = [run for run in build.all("RUN") if "pip install" in run]
    assert installs == [
        "pip install --no-cache-dir -r requirements.txt",
        # The embeddings extra, only with --build-arg WITH_EMBEDDINGS=1 (off by default).
        'if [ "$WITH_EMBEDDINGS" = "1" ]; then pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" '
        "-r requirements-embeddings.txt; fi",
    ]
    assert "WITH_EMBEDDINGS=0" in build.all("ARG")
    for name in ("requirements.txt", "requirements-embeddings.txt"):
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            assert not line or "==" in line, f"unpinned requirement in {name}: {line}"


def test_it_bakes_in_no_secret(build_and_runtime):
    for stage in build_and_runtime:
        for name in stage.env():
            assert not any(word in name for word in SECRET_WORDS), f"ENV {name} in the image"
        assert not stage.all("ARG") or all(
            not any(word in arg.upper() for word in SECRET_WORDS) for arg in stage.all("ARG")
        )
    collect = [run for run in build_and_runtime[0].all("RUN") if "collectstatic" in run]
    assert collect and "DJANGO_SECRET_KEY=" in collect[0], "collectstatic gets a throwaway key inline"


def test_it_serves_gunicorn_with_the_project_conf_on_8080(build_and_runtime):
    _, runtime = build_and_runtime
    assert runtime.exec_form("ENTRYPOINT") + runtime.exec_form("CMD") == [
        "gunicorn", "-c", "memcloud/gunicorn.conf.py", "memcloud.wsgi",
    ]
    assert runtime.env()["GUNICORN_BIND"] == "0.0.0.0:8080"
    assert runtime.last("EXPOSE") == "8080"
    assert "/health" in " ".join(runtime.exec_form("HEALTHCHECK"))


def test_dockerignore_keeps_the_code_and_drops_local_state():
    patterns = dockerignore(REPO / ".dockerignore")
    for kept in ("manage.py", "memcloud/gunicorn.conf.py", "requirements.txt", "templates/x.html"):
        assert not ignored(kept, patterns), kept
    for dropped in (".git/HEAD", ".venv/bin/python", "db.sqlite3", "tests/conftest.py",
                    "episodes/__pycache__/x.pyc", "data/acme/snapshots/s.jsonl", ".env"):
        assert ignored(dropped, patterns), dropped


def _build_context(dest: Path) -> None:
    """Copy what `docker build .` would send: the repository's files minus .dockerignore."""
    patterns = dockerignore(REPO / ".dockerignore")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file() and not ignored(relative, patterns):
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relative)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _host_env(python_dir: Path) -> dict[str, str]:
    """The machine's environment minus anything that would leak project settings into the run."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "AGENT_MEM_", "GUNICORN_", "PROMETHEUS_"))
           and k not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{python_dir}:{env.get('PATH', '')}"
    return env


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the image runs Python 3.11")
def test_the_image_commands_install_and_serve_from_a_clean_venv(build_and_runtime, tmp_path):
    build, runtime = build_and_runtime
    app, venv, data = tmp_path / "app", tmp_path / "venv", tmp_path / "data"
    for folder in (app, data, tmp_path / "bin"):
        folder.mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)  # the base image's `python`
    _build_context(app)

    image_venv = build.env()["VIRTUAL_ENV"]
    assert runtime.env()["VIRTUAL_ENV"] == image_venv
    build_env = {k: v.replace(image_venv, str(venv)) for k, v in build.env(_host_env(tmp_path / "bin")).items()}
    for command in build.all("RUN"):
        done = subprocess.run(["bash", "-c", command], cwd=app, env=build_env,
                              capture_output=True, text=True, timeout=500)
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert (app / "staticfiles").is_dir(), "collectstatic wrote nothing under staticfiles/"

    port = _free_port()
    run_env = {k: v.replace(image_venv, str(venv)) for k, v in runtime.env(_host_env(tmp_path / "bin")).items()}
    run_env.update({
        "GUNICORN_BIND": f"127.0.0.1:{port}",  # the image binds 0.0.0.0:8080; tests stay on loopback
        "AGENT_MEM_DATA_DIR": str(data),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "docker-check-only",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
    })
    migrate = subprocess.run(["python", "manage.py", "migrate", "--noinput"], cwd=app, env=run_env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    command = runtime.exec_form("ENTRYPOINT") + runtime.exec_form("CMD")
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(command, cwd=app, env=run_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        healthcheck = runtime.exec_form("HEALTHCHECK")
        deadline = time.monotonic() + 60  # start-up wait only, not an assertion on speed
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
            if subprocess.run(healthcheck, cwd=app, env=run_env, capture_output=True).returncode == 0:
                break
            assert time.monotonic() < deadline, "HEALTHCHECK never passed:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:]
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            assert response.status == 200
            assert response.read().decode().strip() == "ok"
        with urllib.request.urlopen(f"{base}/ready", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/static/admin/css/base.css", timeout=10) as response:
            assert response.status == 200  # collectstatic output served by whitenoise
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
