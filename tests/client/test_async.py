"""The asyncio client drives the same endpoint code: a walk through every method."""

import asyncio
import uuid

import pytest
from memcloud_client import AsyncMemcloudClient, AuthenticationError, NotFound, QueryHit, ValidationError

from .helpers import vec

pytestmark = pytest.mark.e2e


def test_async_client_stores_queries_deletes_and_prunes(server, make_key):
    async def scenario():
        async with AsyncMemcloudClient(server.url, make_key(), batch_size=3) as mc:
            assert await mc.health() and await mc.ready()
            one = await mc.store("a-one", vec(1), 0.9, tags=["x"], timestamp=1000)
            assert await mc.store("a-one", vec(1), 0.9, tags=["x"], timestamp=1000, id=one) == one
            ids = await mc.store_batch(
                {"task_id": f"a{i}", "state_embedding": vec(10 + i), "reward": i / 10, "timestamp": 2000 + i}
                for i in range(7)
            )
            assert len(ids) == 7 and (await mc.stats()).episodes == 8
            assert (await mc.get(one)).tags == ["x"]
            hits = await mc.query(vec(1), top_k=2, min_reward=0.5)
            assert isinstance(hits[0], QueryHit) and hits[0].id == one
            assert await mc.delete(one) == 1
            with pytest.raises(NotFound):
                await mc.get(one)
            assert await mc.prune_older_than(2002) == 2
            assert await mc.prune_keep_highest_reward(4) == 1
            assert await mc.prune_keep_newest(1) == 3
            assert [h.task_id for h in await mc.query(vec(0), top_k=5)] == ["a6"]
            with pytest.raises(ValidationError):
                await mc.store("t", [1.0], 0.5)

    asyncio.run(scenario())


@pytest.mark.needs("list")
@pytest.mark.needs("patch")
@pytest.mark.needs("delete_many")
def test_async_client_lists_patches_and_deletes_many(server, make_key):
    async def scenario():
        async with AsyncMemcloudClient(server.url, make_key()) as mc:
            ids = await mc.store_batch(
                {"task_id": f"s{i}", "state_embedding": vec(i), "reward": 0.5, "timestamp": 1000 + i} for i in range(7)
            )
            page = await mc.list_episodes(limit=5)
            assert [e.id for e in page.episodes] == ids[::-1][:5] and page.next_cursor
            assert [e.id async for e in mc.iter_episodes(page_size=3)] == ids[::-1]
            assert (await mc.patch(ids[0], reward=0.1, metadata_merge={"k": 1})).metadata == {"k": 1}
            assert await mc.delete_many(ids[:2]) == 2
            assert (await mc.stats()).episodes == 5

    asyncio.run(scenario())


@pytest.mark.needs("snapshots")
@pytest.mark.needs("checkpoint")
def test_async_client_saves_loads_and_checkpoints(server, make_key):
    async def scenario():
        async with AsyncMemcloudClient(server.url, make_key()) as mc:
            await mc.store_batch({"task_id": f"s{i}", "state_embedding": vec(i), "reward": 0.5} for i in range(5))
            assert await mc.save("async-snap") == 5
            assert [s.path for s in await mc.list_snapshots()] == ["async-snap"]
            assert await mc.prune_keep_newest(0) == 5
            assert await mc.load("async-snap") == 5
            assert await mc.checkpoint() == 5

    asyncio.run(scenario())


def test_async_client_raises_typed_errors(server):
    async def scenario():
        async with AsyncMemcloudClient(server.url, "mc_nobody00_" + uuid.uuid4().hex) as mc:
            with pytest.raises(AuthenticationError):
                await mc.stats()

    asyncio.run(scenario())
