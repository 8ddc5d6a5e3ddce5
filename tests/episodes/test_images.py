"""Index images (episodes/images.py): the first worker to build a small tenant writes its packed
index; a worker that has never seen the tenant loads it, catches up from its version and answers
as an index built from the database would; a stale or damaged image is never used."""

from __future__ import annotations

import numpy as np
import pytest

from episodes import cache as cache_module
from episodes import checkpoint, images
from episodes.cache import build_index, cache, start_index
from episodes.models import IndexImage
from episodes.services import episode_delete, episodes_store
from tenants.models import TenantState
from tests.memindex.oracle import assert_same_answers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_data_dir(settings, tmp_path):
    settings.AGENT_MEM_DATA_DIR = tmp_path  # the host's copies of images live here


def store(tenant, n: int, rng, tag: str = "a") -> list:
    episodes = [{"task_id": f"t{i % 4}", "state_embedding": rng.standard_normal(tenant.dim).astype(np.float32),
                 "reward": float(i), "tags": [tag] if i % 2 else []} for i in range(n)]
    return episodes_store(tenant=tenant, episodes=episodes).ids


def state_of(tenant) -> TenantState:
    return TenantState.objects.get(pk=tenant.pk)


def test_the_first_build_writes_the_image_and_the_next_worker_loads_it(tenant):
    acme, _ = tenant
    rng = np.random.default_rng(1)
    store(acme, 120, rng)
    state = state_of(acme)
    first = cache.current(acme, state)
    image = IndexImage.objects.get(tenant=acme)
    assert (image.generation, image.version) == (state.generation, state.version)
    cache.clear()  # another worker
    found = images.load(tenant_pk=acme.pk, generation=state.generation, floor=state.tombstone_floor,
                        version=state.version, dim=acme.dim, metric=acme.metric, spill_dir=None)
    assert found is not None and found[1] == state.version
    found[0].check()
    assert_same_answers(first.index, found[0], rng)


def test_a_request_writes_the_image_once_its_answer_is_sent(tenant, api):
    acme, key = tenant
    rng = np.random.default_rng(8)
    store(acme, 30, rng)
    images.note_request()  # what request_started does
    first = cache.current(acme, state_of(acme))
    assert not IndexImage.objects.filter(tenant=acme).exists()  # the answer comes first
    images.write_answered()  # what request_finished does, once the server has sent it
    image = IndexImage.objects.get(tenant=acme)
    assert image.version == first.version
    images.write_answered()  # nothing pending: nothing done
    cache.clear()
    IndexImage.objects.all().delete()
    images.local_path(checkpoint.tenant_identity(acme)).unlink()  # nothing to load: the request builds
    response = api.as_key(key).post("/v1/query", {"query_embedding": [0.5] * acme.dim, "top_k": 3}, format="json")
    assert response.status_code == 200
    assert IndexImage.objects.filter(tenant=acme).exists()  # written after that request's answer


def test_a_loaded_image_catches_up_on_what_changed_since(tenant):
    acme, _ = tenant
    rng = np.random.default_rng(2)
    ids = store(acme, 80, rng)
    cache.current(acme, state_of(acme))
    written = IndexImage.objects.get(tenant=acme).version
    cache.clear()
    store(acme, 30, rng, tag="b")
    for eid in ids[:5]:
        episode_delete(tenant=acme, episode_id=eid)
    state = state_of(acme)
    loaded = start_index(acme, state)
    assert loaded.version == state.version > written
    assert IndexImage.objects.get(tenant=acme).version == written  # 35 changes: below the refresh
    loaded.index.check()
    fresh = build_index(acme, state)
    assert sorted(loaded.index.ids) == sorted(fresh.index.ids) and len(loaded.index) == 105
    assert_same_answers(fresh.index, loaded.index, rng)


def test_many_changes_since_the_image_write_a_fresh_one(tenant):
    acme, _ = tenant
    rng = np.random.default_rng(3)
    store(acme, 10, rng)
    cache.current(acme, state_of(acme))
    cache.clear()
    store(acme, cache_module.IMAGE_REFRESH_CHANGES + 1, rng)
    state = state_of(acme)
    start_index(acme, state)
    assert IndexImage.objects.get(tenant=acme).version == state.version


def test_an_image_of_another_generation_or_a_damaged_one_is_not_used(tenant):
    acme, _ = tenant
    rng = np.random.default_rng(4)
    store(acme, 20, rng)
    state = state_of(acme)
    cache.current(acme, state)
    args = {"tenant_pk": acme.pk, "floor": state.tombstone_floor, "version": state.version, "dim": acme.dim,
            "metric": acme.metric, "spill_dir": None}
    assert images.load(generation=state.generation + 1, **args) is None
    assert images.load(generation=state.generation, **{**args, "version": state.version - 1}) is None
    assert images.load(generation=state.generation, **{**args, "dim": acme.dim + 1}) is None
    IndexImage.objects.filter(tenant=acme).update(data=b"MCIX1\x00\x00\x00garbage")
    assert images.load(generation=state.generation, **args) is None
    images.local_path(checkpoint.tenant_identity(acme)).unlink()  # a host that has no copy
    cache.clear()
    rebuilt = start_index(acme, state)  # built from the database, and the image rewritten
    assert len(rebuilt.index) == 20
    assert images.load(generation=state.generation, **args) is not None


def test_an_older_image_never_replaces_a_newer_one(tenant):
    acme, _ = tenant
    rng = np.random.default_rng(5)
    store(acme, 10, rng)
    state = state_of(acme)
    built = build_index(acme, state)
    assert images.save(tenant_pk=acme.pk, generation=state.generation, version=state.version, index=built.index)
    images.save(tenant_pk=acme.pk, generation=state.generation, version=state.version - 1, index=built.index)
    assert IndexImage.objects.get(tenant=acme).version == state.version
    images.save(tenant_pk=acme.pk, generation=state.generation + 1, version=0, index=built.index)
    assert (IndexImage.objects.get(tenant=acme).generation, IndexImage.objects.get(tenant=acme).version) == (
        state.generation + 1, 0)


def test_the_indeximages_command_writes_missing_and_stale_images_only(tenant, other_tenant):
    from django.core.management import call_command

    acme, _ = tenant
    rng = np.random.default_rng(6)
    store(acme, 15, rng)
    assert not IndexImage.objects.exists()
    assert call_command("indeximages", "--all") == "index images: 2 written, 0 already current, 0 too large to image"
    state = state_of(acme)
    assert (IndexImage.objects.get(tenant=acme).generation, IndexImage.objects.get(tenant=acme).version) == (
        state.generation, state.version)
    assert call_command("indeximages", "acme") == "index images: 0 written, 1 already current, 0 too large to image"
    store(acme, 2, rng)
    assert call_command("indeximages", "--all") == "index images: 1 written, 1 already current, 0 too large to image"
    cache.clear()
    loaded = start_index(acme, state_of(acme))
    assert len(loaded.index) == 17 and loaded.version == state_of(acme).version
    from django.core.management.base import CommandError
    with pytest.raises(CommandError):
        call_command("indeximages")
    with pytest.raises(CommandError):
        call_command("indeximages", "nobody")


def test_the_hosts_copy_serves_a_worker_without_reading_the_database(tenant, settings):
    acme, _ = tenant
    rng = np.random.default_rng(7)
    store(acme, 40, rng)
    first = cache.current(acme, state_of(acme))
    identity = checkpoint.tenant_identity(acme)
    assert images.local_path(identity).exists()
    IndexImage.objects.filter(tenant=acme).delete()  # only the host's copy is left
    cache.clear()
    state = state_of(acme)
    found = images.load(tenant_pk=acme.pk, generation=state.generation, floor=state.tombstone_floor,
                        version=state.version, dim=acme.dim, metric=acme.metric, spill_dir=None, identity=identity)
    assert found is not None and found[1] == state.version
    assert_same_answers(first.index, found[0], rng)
    # The loaded index maps the file privately: replacing or removing the copy, or writing the
    # index, changes neither the other.
    on_disk = images.local_path(identity).read_bytes()
    found[0].remove(found[0].ids[:3])
    assert images.local_path(identity).read_bytes() == on_disk
    images.local_path(identity).unlink()
    found[0].check()
    assert len(found[0]) == 37
    images.local_path(identity).write_bytes(on_disk)
    # A copy of another generation is not used; a damaged one neither (the database's image is).
    found = images.load(tenant_pk=acme.pk, generation=state.generation + 1, floor=0, version=state.version,
                        dim=acme.dim, metric=acme.metric, spill_dir=None, identity=identity)
    assert found is None
    images.local_path(identity).unlink()
    cache.current(acme, state)  # no image anywhere: built, and both written again
    assert images.local_path(identity).exists()
    assert IndexImage.objects.filter(tenant=acme).exists()
    images.local_path(identity).write_bytes(b"\x00" * 16 + b"garbage")
    found = images.load(tenant_pk=acme.pk, generation=state.generation, floor=state.tombstone_floor,
                        version=state.version, dim=acme.dim, metric=acme.metric, spill_dir=None, identity=identity)
    assert found is not None and len(found[0]) == 40
    settings.AGENT_MEM_IMAGE_CACHE_MB = 0  # no copies kept
    images.local_path(identity).unlink()
    cache.clear()
    cache.current(acme, state)
    assert not images.local_path(identity).exists()


def test_the_hosts_copies_are_bounded_least_recently_used_first(tenant, settings, tmp_path):
    import os

    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    for i in range(10):
        path = folder / f"t{i}.mcix"
        path.write_bytes(b"x" * 300_000)
        os.utime(path, (1000 + i, 1000 + i))
    # Reading a copy makes it the most recently used (this one is no usable image: the database is
    # asked next, which has none either).
    acme, _ = tenant
    assert images.load(tenant_pk=acme.pk, generation=0, floor=0, version=0, dim=acme.dim, metric=acme.metric,
                       spill_dir=None, identity="t1") is None
    settings.AGENT_MEM_IMAGE_CACHE_MB = 2  # 2 MiB: 6 of the 10 fit within 90 %
    assert images.clean_local() == 4
    assert sorted(p.name for p in folder.iterdir()) == ["t1.mcix", *(f"t{i}.mcix" for i in range(5, 10))]
    assert images.clean_local() == 0
