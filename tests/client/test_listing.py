"""Listing with cursors, PATCH, batch delete and TTL (docs/api.md §8) through the client."""

import time

import pytest
from memcloud_client import NotFound, Page, ValidationError

from .helpers import vec

pytestmark = [pytest.mark.e2e, pytest.mark.needs("list")]

T0 = 1_700_000_000_000


@pytest.fixture
def twenty(client):
    """20 episodes at increasing timestamps; even ones tagged "even"."""
    return client.store_batch(
        {"task_id": f"l{i:02d}", "state_embedding": vec(i), "reward": i / 20, "timestamp": T0 + i,
         "tags": ["even"] if i % 2 == 0 else ["odd"]}
        for i in range(20)
    )


def test_list_pages_newest_first_with_cursors(client, twenty):
    first = client.list_episodes(limit=7)
    assert isinstance(first, Page) and first.next_cursor
    assert [e.task_id for e in first.episodes] == [f"l{i:02d}" for i in range(19, 12, -1)]
    second = client.list_episodes(limit=7, cursor=first.next_cursor)
    assert [e.task_id for e in second.episodes] == [f"l{i:02d}" for i in range(12, 5, -1)]
    third = client.list_episodes(limit=7, cursor=second.next_cursor)
    assert len(third.episodes) == 6 and third.next_cursor is None


def test_iter_episodes_walks_every_page_once(client, twenty):
    walked = [e.id for e in client.iter_episodes(page_size=3)]
    assert sorted(walked) == sorted(twenty) and len(walked) == 20


def test_list_filters_travel_as_query_parameters(client, twenty):
    evens = list(client.iter_episodes(page_size=4, tags_any=["even"], min_reward=0.5))
    assert [e.task_id for e in evens] == ["l18", "l16", "l14", "l12", "l10"]
    window = client.list_episodes(time_after=T0 + 3, time_before=T0 + 5)
    assert [e.task_id for e in window.episodes] == ["l05", "l04", "l03"]


def test_list_can_include_embeddings(client, twenty):
    (episode,) = client.list_episodes(limit=1, include_embedding=True).episodes
    assert episode.state_embedding == pytest.approx(vec(19).tolist())


@pytest.mark.needs("patch")
def test_patch_changes_fields_and_merges_metadata(client):
    episode_id = client.store("before", vec(1), 0.1, metadata={"a": 1, "b": 2}, tags=["x"])
    patched = client.patch(episode_id, task_id="after", reward=0.9, tags=["y", "z"], source="s", user_id="u")
    assert (patched.task_id, patched.reward, patched.tags, patched.source, patched.user_id) == ("after", 0.9, ["y", "z"], "s", "u")
    assert client.patch(episode_id, metadata_merge={"b": 3, "c": 4}).metadata == {"a": 1, "b": 3, "c": 4}
    assert client.patch(episode_id, metadata={"only": True}).metadata == {"only": True}
    assert client.query(vec(1), top_k=1, min_reward=0.8)[0].task_id == "after"


@pytest.mark.needs("patch")
def test_patch_of_the_embedding_is_refused_and_changes_nothing(client):
    episode_id = client.store("t", vec(2), 0.5)
    with pytest.raises(ValidationError) as exc:
        client.patch(episode_id, state_embedding=vec(3).tolist(), reward=0.9)  # type: ignore[call-arg]
    assert "state_embedding" in exc.value.message
    after = client.get(episode_id)
    assert after.reward == 0.5 and after.state_embedding == pytest.approx(vec(2).tolist())


@pytest.mark.needs("patch")
def test_patch_of_a_missing_episode_is_not_found(client):
    with pytest.raises(NotFound):
        client.patch("00000000-0000-4000-8000-000000000000", reward=1.0)


@pytest.mark.needs("delete_many")
def test_delete_many_by_ids_and_by_filter(client, twenty):
    assert client.delete_many(twenty[:3]) == 3
    assert client.delete_many(tags_all=["even"], min_reward=0.5) == 5
    assert client.stats().episodes == 12
    with pytest.raises(ValueError):
        client.delete_many(twenty[3:5], tags_any=["odd"])


@pytest.mark.needs("delete_many")
def test_delete_many_with_an_empty_filter_is_refused(client, twenty):
    with pytest.raises(ValidationError):
        client.delete_many()
    assert client.stats().episodes == 20


def test_list_leaves_out_expired_episodes(client):
    client.store("expired", vec(4), 0.5, expires_at=int(time.time() * 1000) - 1000)
    kept = client.store("kept", vec(6), 0.5, ttl_secs=3600)
    assert [e.id for e in client.iter_episodes()] == [kept]
