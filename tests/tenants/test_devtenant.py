"""`manage.py devtenant` (what `make run` calls): the dev tenant once, its key printed once, with a
curl hint for the address the server will listen on."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_prints_a_working_key_once_with_the_servers_address():
    out = io.StringIO()
    call_command("devtenant", "--url", "http://127.0.0.1:8093", stdout=out)
    text = out.getvalue()
    key = re.search(r"Bearer (\S+)'", text).group(1)
    assert "http://127.0.0.1:8093/v1/stats" in text
    assert APIClient().get("/v1/stats", HTTP_AUTHORIZATION=f"Bearer {key}").json()["tenant"] == "dev"
    again = io.StringIO()
    call_command("devtenant", stdout=again)
    assert "exists" in again.getvalue() and key not in again.getvalue()
