"""The tenants app's management commands through call_command: createtenant, issuekey, revokekey,
rollkey, devtenant (its printed key and hint: test_devtenant.py). Bad input is a CommandError that
changes nothing."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.keys import verify
from tenants.models import ApiKey, Tenant
from tenants.services import key_issue

pytestmark = pytest.mark.django_db

RAW_KEY = re.compile(r"mc_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


def run(*args) -> str:
    """What the command prints on stdout."""
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def works(raw: str) -> str | None:
    """The slug the key authenticates as, or None."""
    r = APIClient().get("/v1/stats", HTTP_AUTHORIZATION=f"Bearer {raw}")
    return r.json()["tenant"] if r.status_code == 200 else None


def refused(*args, words: str) -> None:
    tenants, keys = Tenant.objects.count(), ApiKey.objects.count()
    with pytest.raises(CommandError, match=words):
        run(*args)
    assert (Tenant.objects.count(), ApiKey.objects.count()) == (tenants, keys)


# ----- createtenant -----
def test_createtenant_creates_a_tenant_with_every_option():
    out = run("createtenant", "new-co", "--name", "New Co", "--dim", "16", "--metric", "dot", "--rate-limit", "5",
              "--max-episodes", "100", "--default-ttl-secs", "60")
    assert out.strip() == "created tenant new-co (dim 16, dot)"
    t = Tenant.objects.get(slug="new-co")
    assert (t.name, t.dim, t.metric, t.rate_limit, t.max_episodes, t.default_ttl_secs) == (
        "New Co", 16, "dot", 5, 100, 60)
    assert t.state.episode_count == 0


def test_createtenant_takes_the_default_dim_from_the_setting(settings):
    settings.AGENT_MEM_DIM = 24
    assert run("createtenant", "plain").strip() == "created tenant plain (dim 24, cosine)"


@pytest.mark.parametrize(("args", "words"), [
    (["Bad_Slug"], "^slug:"),
    (["x", "--dim", "0"], "^dim:"),
    (["x", "--dim", "70000"], "^dim:"),
    (["x", "--default-ttl-secs", "0"], "^default_ttl_secs:"),
    (["x", "--metric", "cosinus"], "metric"),
    (["x", "--dim", "eight"], "dim"),
])
def test_createtenant_refuses_bad_input(args, words):
    refused("createtenant", *args, words=words)


def test_createtenant_refuses_a_taken_slug(tenant):
    refused("createtenant", "acme", words="already exists")


# ----- issuekey -----
def test_issuekey_prints_the_key_alone(tenant):
    out = run("issuekey", "acme", "--name", "ci")
    assert RAW_KEY.fullmatch(out.rstrip("\n")) and out.endswith("\n") and out.count("\n") == 1
    raw = out.strip()
    key = ApiKey.objects.get(prefix=raw[3:11])
    assert (key.tenant.slug, key.name, key.scope, key.expires_at) == ("acme", "ci", "write", None)
    assert verify(raw, key.key_hash) and works(raw) == "acme"


def test_issuekey_issues_for_the_named_tenant_only(tenant, other_tenant):
    raw = run("issuekey", "rival", "--scope", "read").strip()
    assert works(raw) == "rival"
    assert ApiKey.objects.get(prefix=raw[3:11]).scope == "read"


def test_issuekey_sets_an_expiry_in_days(tenant):
    raw = run("issuekey", "acme", "--expires-days", "2").strip()
    expires = ApiKey.objects.get(prefix=raw[3:11]).expires_at
    assert abs((expires - (timezone.now() + timedelta(days=2))).total_seconds()) < 5


@pytest.mark.parametrize(("args", "words"), [
    (["nobody"], "no tenant 'nobody'"),
    (["acme", "--expires-days", "0"], "--expires-days must be > 0"),
    (["acme", "--expires-days", "-1"], "--expires-days must be > 0"),
    (["acme", "--scope", "root"], "scope"),
])
def test_issuekey_refuses_bad_input(tenant, args, words):
    refused("issuekey", *args, words=words)


# ----- revokekey -----
def test_revokekey_revokes_by_prefix(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    assert run("revokekey", raw[3:11]).strip() == f"revoked key {raw[3:11]} of tenant acme"
    assert works(raw) is None
    assert works(rival_raw) == "rival"


def test_revokekey_accepts_the_whole_key(tenant):
    _, raw = tenant
    run("revokekey", raw)
    assert ApiKey.objects.get(prefix=raw[3:11]).revoked_at is not None


def test_revokekey_refuses_an_unknown_key(tenant):
    with pytest.raises(CommandError, match="zzzzzzzz"):
        run("revokekey", "zzzzzzzz")


# ----- rollkey -----
def test_rollkey_prints_the_new_key_alone_and_keeps_the_old_for_the_grace(tenant):
    _, old = tenant
    out = run("rollkey", old, "--grace-hours", "1")
    assert RAW_KEY.fullmatch(out.rstrip("\n")) and out.count("\n") == 1
    new = out.strip()
    assert new != old and works(new) == "acme" and works(old) == "acme"
    old_expires = ApiKey.objects.get(prefix=old[3:11]).expires_at
    assert abs((old_expires - (timezone.now() + timedelta(hours=1))).total_seconds()) < 5


@pytest.mark.parametrize(("args", "words"), [
    (["zzzzzzzz"], "zzzzzzzz"),
    (["ACME", "--grace-hours", "-1"], "grace_hours"),
])
def test_rollkey_refuses_bad_input(tenant, args, words):
    _, raw = tenant
    refused("rollkey", *[raw[3:11] if a == "ACME" else a for a in args], words=words)


def test_rollkey_refuses_a_revoked_key(tenant):
    _, raw = tenant
    run("revokekey", raw[3:11])
    refused("rollkey", raw[3:11], words="no usable key")


# ----- devtenant -----
def test_devtenant_issues_one_admin_key_and_nothing_on_a_second_run():
    out = run("devtenant")
    raw = RAW_KEY.search(out).group(0)
    key = ApiKey.objects.get(prefix=raw[3:11])
    assert (key.tenant.slug, key.scope) == ("dev", "admin")
    assert RAW_KEY.search(run("devtenant")) is None
    assert ApiKey.objects.filter(tenant__slug="dev").count() == 1


# ----- issuekey --scope, rollkey through the API -----
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_issuekey_scope(tenant, capsys):
    call_command("issuekey", "acme", "--scope", "read")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("mc_") and ApiKey.objects.get(prefix=raw[3:11]).scope == "read"
    call_command("issuekey", "acme")
    raw = capsys.readouterr().out.strip()
    assert ApiKey.objects.get(prefix=raw[3:11]).scope == "write"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_rollkey_keeps_both_keys_during_grace_then_only_the_new(api, tenant, settings, tmp_path, capsys):
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    t, _ = tenant
    _, old = key_issue(tenant=t, scope="read")
    call_command("rollkey", old[3:11], "--grace-hours", "0.0005")  # 1.8 s
    new = capsys.readouterr().out.strip()
    assert new.startswith("mc_") and new != old
    assert ApiKey.objects.get(prefix=new[3:11]).scope == "read"
    assert api.as_key(old).get("/v1/stats").status_code == 200
    assert api.as_key(new).get("/v1/stats").status_code == 200
    deadline = ApiKey.objects.get(prefix=old[3:11]).expires_at.timestamp()
    time.sleep(max(0.0, deadline - time.time()) + 0.2)
    r = api.as_key(old).get("/v1/stats")
    assert r.status_code == 401 and "expired" in r.json()["error"]
    assert api.as_key(new).get("/v1/stats").status_code == 200
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    rolled = [e for e in lines if e["op"] == "key_rolled"]
    assert rolled == [{**rolled[0], "tenant_id": "acme", "key_prefix": old[3:11], "new_key_prefix": new[3:11]}]
    assert old[11:] not in (tmp_path / "audit.jsonl").read_text()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_sweep_from_requests")
def test_rollkey_refuses_unknown_or_dead_keys(tenant):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("rollkey", "zzzzzzzz")
    with pytest.raises(CommandError):
        call_command("rollkey", tenant[1][3:11], "--grace-hours", "-1")

