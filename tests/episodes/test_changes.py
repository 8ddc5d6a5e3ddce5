"""episodes/changes.py: what a catch-up reads, rows and tombstones in one statement (both backends)."""

from __future__ import annotations

import uuid

from episodes import changes
from tenants.models import TenantState
from tests.episodes.bodies import ep, vec


def test_rows_and_removals_since_a_version_come_apart_in_commit_order(api, tenant):
    tenant, key = tenant
    client = api.as_key(key)
    first = [str(uuid.uuid4()) for _ in range(3)]
    client.post("/v1/episodes/batch", {"episodes": [ep(id=i, tags=["a"]) for i in first]}, format="json")
    before = TenantState.objects.get(pk=tenant.pk).version
    later = str(uuid.uuid4())
    assert client.post("/v1/episodes", ep(id=later, state_embedding=vec(0.0, 1.0), tags=["b", "c"], text="Text, too"),
                       format="json").status_code == 201
    assert client.delete(f"/v1/episodes/{first[1]}").status_code == 200
    after = TenantState.objects.get(pk=tenant.pk).version

    rows, tombstones = changes.since(tenant_pk=tenant.pk, version=before)
    assert [r[0] for r in rows] == [later]
    eid, seq, version, embedding, _ts, reward, expires, task, source, user, tags, text = rows[0]
    assert text == "Text, too"
    assert isinstance(seq, int) and before < version <= after and reward == 1.0 and expires is None
    assert len(bytes(embedding)) == 8 * 4 and (task, source, user, tags) == ("task_1", None, None, ["b", "c"])
    assert tombstones == [(first[1], after)]

    rows, tombstones = changes.since(tenant_pk=tenant.pk, version=0)
    assert [r[0] for r in rows] == [first[0], first[2], later]  # the batch in store order, then the later one
    assert [r[2] for r in rows] == sorted(r[2] for r in rows)
    assert tombstones == [(first[1], after)]
    assert changes.since(tenant_pk=tenant.pk, version=after) == ([], [])
