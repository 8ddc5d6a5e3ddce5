"""Acceptance (issue: operations 4 and 5) in headless Debian chromium: /dashboard shows what the
test did, renders without JavaScript, staff see the tenant table; /docs loads with no network."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from tests.support.database import drop_database, fresh_database_env
from tests.support.server import ROOT, LiveServer
from tests.support.tenants import episode, fresh_client, unique_slug

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
DIM = 8
STAFF_USER, STAFF_PASSWORD = "ops-staff", "a-long-test-password-1"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """4 workers on a database of their own, so the dashboard's totals are exactly this test's. The
    public dashboard is on, so that visitors see the aggregates (without it they are sent to the
    admin's login: tests/ops/test_dashboard.py, tests/e2e/test_metrics.py)."""
    env = fresh_database_env("dash")
    server = LiveServer(workers=4, env={**env, "AGENT_MEM_RATE_LIMIT": "1000", "DJANGO_SUPERUSER_PASSWORD":
                                        STAFF_PASSWORD, "AGENT_MEM_PUBLIC_DASHBOARD": "1"})
    server.migrate()
    server.manage("createsuperuser", "--noinput", "--username", STAFF_USER, "--email", "ops@example.com")
    with server:
        yield server
    drop_database(env)


@pytest.fixture(scope="module")
def traffic(server) -> dict:
    """Known work: per tenant, its stores, queries and requests."""
    rng = np.random.default_rng(21)
    plan = {unique_slug("dash"): (9, 4, 6), unique_slug("dash"): (3, 2, 0), unique_slug("dash"): (0, 0, 0)}
    done = {}
    for slug, (singles, batch, queries) in plan.items():
        key = server.create_tenant(slug, "--dim", str(DIM))
        requests = 0
        with fresh_client(server.url, key) as c:
            for _ in range(singles):
                assert c.post("/v1/episodes", json=episode(DIM, rng)).status_code == 201
                requests += 1
            if batch:
                body = {"episodes": [episode(DIM, rng) for _ in range(batch)]}
                assert c.post("/v1/episodes/batch", json=body).status_code == 201
                requests += 1
            for _ in range(queries):
                assert c.post("/v1/query", json={"query_embedding": rng.normal(size=DIM).tolist()}).status_code == 200
                requests += 1
        done[slug] = {"key": key, "episodes": singles + batch, "queries": queries, "requests": requests}
    return done


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def check_figures(page, traffic: dict) -> None:
    assert text(page, "#health-database") == "ok"
    assert text(page, "#total-requests") == str(sum(t["requests"] for t in traffic.values()))
    assert text(page, "#total-stores") == str(sum(t["episodes"] for t in traffic.values()))
    assert text(page, "#total-queries") == str(sum(t["queries"] for t in traffic.values()))
    assert text(page, "#total-episodes") == str(sum(t["episodes"] for t in traffic.values()))
    assert text(page, "#total-tenants") == "3" and text(page, "#total-tenants-active") == "2"
    assert text(page, "#hour-stores") == text(page, "#total-stores")
    bars = page.locator("#chart-stores rect").evaluate_all("els => els.map(e => Number(e.dataset.value))")
    assert sum(bars) == sum(t["episodes"] for t in traffic.values())
    assert page.locator("#chart-requests rect").count() == 60
    assert text(page, "#config-rate-limit").startswith("1000 requests per 60 s")


def test_the_dashboard_shows_what_the_test_did(browser, server, traffic):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    assert page.goto(f"{server.url}/dashboard").status == 200
    check_figures(page, traffic)
    assert page.locator("#tenants").count() == 0  # aggregates only for visitors
    assert page.locator("#config-data-dir").count() == 0  # and no filesystem path
    html = page.content()
    assert not any(slug in html for slug in traffic) and not any(t["key"] in html for t in traffic.values())
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 0
    context.close()


def test_the_dashboard_renders_without_javascript(browser, server, traffic):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    assert page.goto(f"{server.url}/dashboard").status == 200
    assert text(page, "#total-stores") == str(sum(t["episodes"] for t in traffic.values()))
    assert text(page, "#total-requests") == str(sum(t["requests"] for t in traffic.values()))
    assert page.locator("#chart-stores rect").count() == 60
    page.screenshot(path=str(ARTIFACTS / "dashboard-nojs.png"), full_page=True)
    context.close()


def test_staff_signed_in_to_the_admin_see_the_tenant_table(browser, server, traffic):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/admin/login/?next=/dashboard")
    page.fill("#id_username", STAFF_USER)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard")
    for slug, t in traffic.items():
        cells = page.locator(f'#tenants tr[data-tenant="{slug}"] td').all_inner_texts()
        assert cells[0] == slug and cells[1] == str(t["episodes"]) and cells[2] == str(t["requests"])
        assert (cells[3] == "never") == (t["requests"] == 0)
    assert not any(t["key"] in page.content() for t in traffic.values())
    assert text(page, "#config-data-dir")  # staff see where the data lives
    page.screenshot(path=str(ARTIFACTS / "dashboard-staff.png"), full_page=True)
    context.close()


def test_docs_load_without_network(browser, server):
    context = browser.new_context()
    attempted: list[str] = []

    def only_loopback(route) -> None:
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    assert page.goto(f"{server.url}/docs").status == 200
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Memcloud API" in text(page, ".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/query" in p for p in paths) and any("/v1/episodes/batch" in p for p in paths)
    assert attempted == []
    page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
    context.close()
    assert Path(ARTIFACTS / "docs.png").exists()
