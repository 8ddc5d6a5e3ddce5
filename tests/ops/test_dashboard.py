"""/dashboard in process: staff only by default; with AGENT_MEM_PUBLIC_DASHBOARD aggregates for
everyone; the per-tenant table and filesystem paths for staff only; never a key."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db(transaction=True)
DIM = 8


def ep(i: int) -> dict:
    return {"task_id": f"task_{i}", "state_embedding": [1.0 + i] + [0.5] * (DIM - 1), "reward": float(i)}


def figure(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert match, element_id
    return match.group(1).strip()


@pytest.fixture
def traffic(api, make_tenant):
    """Known usage: acme stores 4 (3 + a batch of 1... see counts) and queries twice; rival stores 1."""
    _, key = make_tenant("acme", dim=DIM)
    _, rival = make_tenant("rival", dim=DIM)
    make_tenant("idle", dim=DIM)
    client = api.as_key(key)
    for i in range(3):
        assert client.post("/v1/episodes", ep(i), format="json").status_code == 201
    assert client.post("/v1/episodes/batch", {"episodes": [ep(7), ep(8)]}, format="json").status_code == 201
    for _ in range(2):
        assert client.post("/v1/query", {"query_embedding": ep(1)["state_embedding"]}, format="json").status_code == 200
    assert client.post("/v1/query", {"query_embedding": [1.0]}, format="json").status_code == 400
    assert api.as_key(rival).post("/v1/episodes", ep(5), format="json").status_code == 201
    return {"acme": key, "rival": rival}


def test_visitors_are_sent_to_the_admin_login(client, traffic, django_user_model):
    r = client.get("/dashboard")
    assert r.status_code == 302 and r["Location"] == "/admin/login/?next=/dashboard"
    client.force_login(django_user_model.objects.create_user("plain", password="pw-123456"))
    r = client.get("/dashboard")
    assert r.status_code == 302 and r["Location"] == "/admin/login/?next=/dashboard"


def test_with_the_public_dashboard_everyone_sees_aggregates_and_charts(client, traffic, settings):
    settings.AGENT_MEM_PUBLIC_DASHBOARD = True
    r = client.get("/dashboard")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/html")
    html = r.content.decode()
    assert figure(html, "total-requests") == "8"  # 3 + 1 + 2 + 1 (the 400 counts) + 1
    assert figure(html, "total-stores") == "6"
    assert figure(html, "total-queries") == "2"
    assert figure(html, "total-episodes") == "6"
    assert figure(html, "total-tenants") == "3"
    assert figure(html, "total-tenants-active") == "2"
    assert figure(html, "health-database") == "ok"
    assert figure(html, "config-audit") in ("on", "off")
    assert figure(html, "config-dim") == "384"
    stores = re.search(r'<svg id="chart-stores".*?</svg>', html, re.S).group(0)
    assert sum(int(v) for v in re.findall(r'data-value="(\d+)"', stores)) == 6
    assert 'id="tenants"' not in html and "acme" not in html and "rival" not in html
    assert not any(key in html or key.split("_", 2)[-1] in html for key in traffic.values())
    assert "<script" not in html
    assert 'id="config-data-dir"' not in html and str(settings.AGENT_MEM_DATA_DIR) not in html


def test_staff_also_see_the_per_tenant_table(client, traffic, django_user_model, settings):
    staff = django_user_model.objects.create_user("ops", password="pw-123456", is_staff=True)
    plain = django_user_model.objects.create_user("plain", password="pw-123456")
    settings.AGENT_MEM_PUBLIC_DASHBOARD = True
    client.force_login(plain)
    assert 'id="tenants"' not in client.get("/dashboard").content.decode()
    settings.AGENT_MEM_PUBLIC_DASHBOARD = False
    client.force_login(staff)
    html = client.get("/dashboard").content.decode()
    assert figure(html, "config-data-dir") == str(settings.AGENT_MEM_DATA_DIR)
    rows = dict(re.findall(r'<tr data-tenant="([a-z0-9-]+)"><td>[^<]*</td><td class="num">(\d+)</td>', html))
    assert rows == {"acme": "5", "rival": "1", "idle": "0"}
    requests = dict(re.findall(r'<tr data-tenant="([a-z0-9-]+)">(?:<td[^>]*>[^<]*</td>\s*){2}<td class="num">(\d+)</td>',
                               html))
    assert requests == {"acme": "7", "rival": "1", "idle": "0"}
    assert not any(key.split("_", 2)[-1] in html for key in traffic.values())


def test_readiness_and_health(client):
    assert client.get("/health").content == b"ok"
    r = client.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_usage_is_listed_read_only_in_the_admin(client, traffic, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", password="pw-123456")
    client.force_login(admin_user)
    r = client.get("/admin/core/usageminute/")
    assert r.status_code == 200 and b"acme" in r.content
    assert client.get("/admin/core/usageminute/add/").status_code == 403
