"""A project module run as `python -m` in a child process, as its users run it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.server import ROOT


def run_module(module: str, *args: str) -> None:
    """`python -m module args` from the project root, without the test process's pytest and Django
    settings; fails with the tail of its stderr unless it exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
