"""The per-worker index cache's byte budget (episodes/cache.py IndexCache): the running total of its
entries' sizes stays the sum of their nbytes() through keeps, catch-ups, evictions and drops, and
the least recently used tenant goes first."""

from __future__ import annotations

import numpy as np
import pytest

from episodes.cache import IndexCache
from episodes.services import episodes_store
from tenants.models import TenantState
from tenants.services import tenant_create

pytestmark = pytest.mark.django_db


def fill(tenant, n: int, rng) -> None:
    episodes_store(tenant=tenant, episodes=[
        {"task_id": "t", "state_embedding": rng.standard_normal(tenant.dim).astype(np.float32), "reward": 1.0}
        for _ in range(n)])


def exact(cache: IndexCache) -> int:
    return sum(e.index.nbytes() for e in cache.entries.values())


def test_the_running_total_is_exact_and_the_least_recently_used_goes_first():
    rng = np.random.default_rng(1)
    tenants = [tenant_create(slug=f"c{i}", dim=16) for i in range(4)]
    for t in tenants:
        fill(t, 50, rng)

    def state(t):
        return TenantState.objects.get(pk=t.pk)

    probe = IndexCache(1 << 30)
    one = probe.current(tenants[0], state(tenants[0])).index.nbytes()
    cache = IndexCache(3 * one + one // 2)  # room for three of them
    for t in tenants[:3]:
        cache.current(t, state(t))
    assert cache.bytes_used() == exact(cache) and cache.evictions == 0
    cache.current(tenants[0], state(tenants[0]))  # now the most recent: tenants[1] is the oldest
    fill(tenants[0], 200, rng)  # its index grows at the next access (catch-up)
    cache.current(tenants[0], state(tenants[0]))
    assert cache.bytes_used() == exact(cache)
    cache.current(tenants[3], state(tenants[3]))
    assert tenants[1].pk not in cache.entries and cache.evictions >= 1
    assert cache.bytes_used() == exact(cache) <= cache.budget
    cache.drop(tenants[3].pk)
    assert cache.bytes_used() == exact(cache)
    cache.clear()
    assert cache.bytes_used() == 0
