"""Tenants with an embedder: createtenant --embedder, tenant_create's rules, the admin form, /v1/stats."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from core.errors import InvalidInput
from embedders import EmbedderUnavailable
from embedders.registry import reset
from tenants.models import Tenant
from tenants.services import key_issue, tenant_create
from tests.support.server import free_port

pytestmark = pytest.mark.django_db


def create(*args: str) -> str:
    out = io.StringIO()
    call_command("createtenant", *args, stdout=out)
    return out.getvalue()


def stats(tenant: Tenant) -> dict:
    _, raw = key_issue(tenant=tenant, scope="read")
    return APIClient().get("/v1/stats", HTTP_AUTHORIZATION=f"Bearer {raw}").json()


def test_the_dim_comes_from_the_embedder():
    assert "embedder local-minilm" in create("mem", "--embedder", "local-minilm")
    tenant = Tenant.objects.get(slug="mem")
    assert (tenant.dim, tenant.embedder) == (384, "local-minilm")
    assert stats(tenant)["embedder"] == "local-minilm" and stats(tenant)["dim"] == 384


def test_an_agreeing_dim_is_accepted_a_different_one_refused():
    create("same", "--embedder", "local-minilm", "--dim", "384")
    assert Tenant.objects.get(slug="same").dim == 384
    with pytest.raises(CommandError, match=r"dim: 8 differs from the embedder's 384 \(local-minilm\)"):
        create("other", "--embedder", "local-minilm", "--dim", "8")
    assert not Tenant.objects.filter(slug="other").exists()


def test_the_stated_openai_dim_needs_no_provider(settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = ""
    tenant = tenant_create(slug="remote", embedder=" openai:text-embedding-3-small@1536 ")
    assert (tenant.dim, tenant.embedder) == (1536, "openai:text-embedding-3-small@1536")


def test_a_malformed_spec_is_refused_naming_embedder():
    with pytest.raises(CommandError, match="embedder: must be 'local-minilm'"):
        create("bad", "--embedder", "minilm")
    with pytest.raises(InvalidInput, match="embedder: "):
        tenant_create(slug="bad", embedder="openai:m@0")
    assert not Tenant.objects.filter(slug="bad").exists()


def test_an_unreachable_provider_at_creation_is_a_503_and_creates_nothing(settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 0
    reset(kind="openai")
    try:
        with pytest.raises(EmbedderUnavailable) as exc:
            tenant_create(slug="down", embedder="openai:text-embedding-3-small")
    finally:
        reset(kind="openai")
    assert exc.value.status == 503
    assert not Tenant.objects.filter(slug="down").exists()


def test_without_an_embedder_nothing_changes():
    tenant = tenant_create(slug="plain", dim=8)
    assert (tenant.dim, tenant.embedder) == (8, "")
    assert stats(tenant)["embedder"] is None


def test_the_admin_takes_the_dim_from_the_embedder(admin_client):
    form = {"slug": "viaadmin", "name": "", "metric": "cosine", "is_active": "on", "embedder": "local-minilm",
            "dim": "", "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"}
    r = admin_client.post("/admin/tenants/tenant/add/", form)
    assert r.status_code == 302, r.content[:2000]
    tenant = Tenant.objects.get(slug="viaadmin")
    assert (tenant.dim, tenant.embedder) == (384, "local-minilm") and hasattr(tenant, "state")


@pytest.mark.parametrize(("embedder", "dim", "error"), [
    ("minilm", "", "embedder: must be"),
    ("local-minilm", "8", "dim: 8 differs"),
    ("", "", "required without an embedder"),
])
def test_the_admin_refuses_what_createtenant_refuses(admin_client, embedder, dim, error):
    form = {"slug": "refused", "name": "", "metric": "cosine", "is_active": "on", "embedder": embedder,
            "dim": dim, "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"}
    r = admin_client.post("/admin/tenants/tenant/add/", form)
    assert r.status_code == 200 and error in r.content.decode()
    assert not Tenant.objects.filter(slug="refused").exists()


def test_the_admin_keeps_the_embedder_fixed(admin_client):
    tenant = tenant_create(slug="fixed", embedder="local-minilm")
    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert 'name="embedder"' not in page and "local-minilm" in page
