"""tenants/authentication.py: which key a request carries and whether it lets the request in, through
DRF's test client on /v1/stats (a read-scope endpoint) unless the class alone is the subject."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from tenants.authentication import ApiKeyAuthentication
from tenants.models import ApiKey, Tenant
from tenants.services import key_issue, key_revoke, key_roll, key_touch

pytestmark = pytest.mark.django_db


def stats(client: APIClient | None = None, **headers):
    return (client or APIClient()).get("/v1/stats", **headers)


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def assert_refused(response, status: int, words: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]


def audit_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----- which key the request carries -----
def test_it_returns_none_without_any_key_header():
    request = Request(APIRequestFactory().get("/v1/stats"))
    assert ApiKeyAuthentication().authenticate(request) is None


def test_it_answers_401_at_the_view_without_a_key(tenant):
    r = stats()
    assert_refused(r, 401, "missing API key")
    assert r["WWW-Authenticate"] == 'Bearer realm="memcloud"'


def test_it_accepts_a_bearer_key(tenant):
    _, raw = tenant
    r = stats(**bearer(raw))
    assert r.status_code == 200 and r.json()["tenant"] == "acme"


def test_it_accepts_the_bearer_scheme_in_any_case(tenant):
    _, raw = tenant
    assert stats(HTTP_AUTHORIZATION=f"bearer {raw}").json()["tenant"] == "acme"


def test_it_accepts_an_x_api_key_header(tenant):
    _, raw = tenant
    r = stats(HTTP_X_API_KEY=raw)
    assert r.status_code == 200 and r.json()["tenant"] == "acme"


def test_it_accepts_the_same_key_in_both_headers(tenant):
    _, raw = tenant
    assert stats(HTTP_X_API_KEY=raw, **bearer(raw)).status_code == 200


def test_it_rejects_two_different_keys_in_the_two_headers(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    assert_refused(stats(HTTP_X_API_KEY=rival_raw, **bearer(raw)), 401, "different keys")
    # Whichever header holds which key: never the one or the other tenant.
    assert_refused(stats(HTTP_X_API_KEY=raw, **bearer(rival_raw)), 401, "different keys")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "Token mc_abcd1234_x", "mc_abcd1234_x"])
def test_it_rejects_an_authorization_header_that_is_not_a_bearer_key(tenant, header):
    assert_refused(stats(HTTP_AUTHORIZATION=header), 401, "Bearer <key>")


# ----- whether the key lets the request in -----
def test_it_rejects_an_unknown_prefix(tenant, settings, tmp_path):
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    assert_refused(stats(**bearer("mc_zzzzzzzz_" + "a" * 43)), 401, "invalid API key")
    failed = [e for e in audit_lines(tmp_path / "audit.jsonl") if e["op"] == "auth_failed"]
    assert [(e["tenant_id"], e["key_prefix"]) for e in failed] == [(None, "zzzzzzzz")]


def test_it_rejects_a_key_not_in_our_format(tenant):
    assert_refused(stats(**bearer("not-a-memcloud-key")), 401, "invalid API key")
    assert_refused(stats(HTTP_X_API_KEY="mc_short"), 401, "invalid API key")


def test_it_rejects_a_known_prefix_with_the_wrong_secret(tenant, settings, tmp_path):
    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    _, raw = tenant
    forged = raw[:12] + ("A" if raw[12] != "A" else "B") + raw[13:]
    assert_refused(stats(**bearer(forged)), 401, "invalid API key")
    assert ApiKey.objects.get(prefix=raw[3:11]).last_used_at is None  # a failed attempt is no use
    log = (tmp_path / "audit.jsonl").read_text()
    assert raw[3:11] in log and raw[12:] not in log and forged[12:] not in log  # the prefix only, never a secret


def test_it_rejects_revoked_key(tenant):
    _, raw = tenant
    assert stats(**bearer(raw)).status_code == 200
    key_revoke(prefix=raw[3:11])
    assert_refused(stats(**bearer(raw)), 401, "revoked")


def test_it_rejects_expired_key(tenant):
    t, _ = tenant
    _, raw = key_issue(tenant=t, scope="read", expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(stats(**bearer(raw)), 401, "expired")


def test_it_accepts_a_key_until_its_expiry(tenant):
    t, _ = tenant
    _, raw = key_issue(tenant=t, scope="read", expires_at=timezone.now() + timedelta(minutes=5))
    assert stats(**bearer(raw)).status_code == 200


def test_it_refuses_every_key_of_an_inactive_tenant_with_403(tenant, other_tenant):
    t, raw = tenant
    _, rival_raw = other_tenant
    Tenant.objects.filter(pk=t.pk).update(is_active=False)
    assert_refused(stats(**bearer(raw)), 403, "inactive")
    assert stats(**bearer(rival_raw)).status_code == 200  # the other tenant is not affected


def test_it_accepts_both_keys_of_a_roll_within_the_grace_period(tenant):
    _, old = tenant
    _, new = key_roll(prefix=old[3:11], grace_hours=1)
    assert stats(**bearer(old)).json()["tenant"] == "acme"
    assert stats(**bearer(new)).json()["tenant"] == "acme"


def test_it_rejects_the_rolled_key_after_the_grace_period(tenant):
    _, old = tenant
    _, new = key_roll(prefix=old[3:11], grace_hours=1)
    # An hour later, as far as the key is concerned.
    ApiKey.objects.filter(prefix=old[3:11]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(stats(**bearer(old)), 401, "expired")
    assert stats(**bearer(new)).status_code == 200


def test_it_rejects_the_rolled_key_at_once_with_no_grace(tenant):
    _, old = tenant
    _, new = key_roll(prefix=old[3:11], grace_hours=0)
    assert_refused(stats(**bearer(old)), 401, "expired")
    assert stats(**bearer(new)).status_code == 200


# ----- last_used_at -----
def key_touches(queries) -> list[str]:
    table = ApiKey._meta.db_table
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE") and table in q["sql"]]


def test_it_writes_last_used_at_at_most_once_a_minute(tenant):
    _, raw = tenant
    prefix = raw[3:11]
    before = timezone.now()
    with CaptureQueriesContext(connection) as first:
        assert stats(**bearer(raw)).status_code == 200
    assert len(key_touches(first.captured_queries)) == 1
    used = ApiKey.objects.get(prefix=prefix).last_used_at
    assert used is not None and before <= used <= timezone.now()
    with CaptureQueriesContext(connection) as again:
        for _ in range(3):
            assert stats(**bearer(raw)).status_code == 200
    assert key_touches(again.captured_queries) == []  # within the minute: no write
    assert ApiKey.objects.get(prefix=prefix).last_used_at == used
    # More than a minute later, as far as the key is concerned: written again.
    ApiKey.objects.filter(prefix=prefix).update(last_used_at=used - timedelta(minutes=2))
    assert stats(**bearer(raw)).status_code == 200
    assert ApiKey.objects.get(prefix=prefix).last_used_at > used


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement touch is PostgreSQL's")
def test_outside_a_transaction_a_touch_is_one_statement_committed_without_waiting(make_tenant):
    t, raw = make_tenant("toucher")
    key = ApiKey.objects.get(prefix=raw[3:11])
    assert connection.get_autocommit()
    with CaptureQueriesContext(connection) as touched:
        key_touch(api_key=key)
    assert len(touched.captured_queries) == 1 and key_touches(touched.captured_queries)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == key.last_used_at is not None
    with connection.cursor() as cursor:  # the setting lasted the statement's own transaction only
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_it_touches_only_the_key_that_was_used(tenant, other_tenant):
    t, raw = tenant
    _, rival_raw = other_tenant
    idle, _ = key_issue(tenant=t, scope="read")
    assert stats(**bearer(raw)).status_code == 200
    idle.refresh_from_db()
    assert idle.last_used_at is None
    assert ApiKey.objects.get(prefix=rival_raw[3:11]).last_used_at is None


# ----- isolation: a key is its tenant, nobody else's -----
def test_each_key_sees_only_its_own_tenant(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    mine = stats(**bearer(raw)).json()
    theirs = stats(**bearer(rival_raw)).json()
    assert (mine["tenant"], mine["episodes"]) == ("acme", 0)  # the rival's episode is not counted here
    assert (theirs["tenant"], theirs["episodes"]) == ("rival", 1)
    assert APIClient().get("/v1/episodes", **bearer(raw)).json()["episodes"] == []


def test_revoking_one_tenants_key_leaves_the_other_tenant_in(tenant, other_tenant):
    _, raw = tenant
    _, rival_raw = other_tenant
    key_revoke(prefix=raw[3:11])
    assert stats(**bearer(raw)).status_code == 401
    assert stats(**bearer(rival_raw)).json()["tenant"] == "rival"


# ----- the bootstrap key (AGENT_MEM_API_KEY) -----
def test_the_bootstrap_key_authenticates_as_the_default_tenant(tenant, settings):
    settings.AGENT_MEM_API_KEY = "bootstrap-key-for-tests"
    r = stats(**bearer("bootstrap-key-for-tests"))
    assert r.status_code == 200 and r.json()["tenant"] == "default"
    assert Tenant.objects.filter(slug="default").count() == 1
    assert stats(HTTP_X_API_KEY="bootstrap-key-for-tests").json()["tenant"] == "default"
    assert Tenant.objects.filter(slug="default").count() == 1  # created once, then found
    assert_refused(stats(**bearer("bootstrap-key-for-test")), 401, "invalid API key")


def test_last_used_at_is_written_once_the_answer_is_sent(tenant):
    # touch_answered is the request_finished receiver (tenants/apps.py); the test above sees it run
    # when the test client closes the response.
    from tenants.services import key_touch_after_answer, touch_answered

    _, raw = tenant
    key = ApiKey.objects.get(prefix=raw[3:11])
    key_touch_after_answer(api_key=key)
    assert ApiKey.objects.get(pk=key.pk).last_used_at is None  # nothing on the request path
    touch_answered()
    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None
    written = ApiKey.objects.get(pk=key.pk).last_used_at
    touch_answered()  # once: nothing pending any more
    assert ApiKey.objects.get(pk=key.pk).last_used_at == written
