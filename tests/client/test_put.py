"""client.put: create or replace an episode whole, seen by every worker at once (docs/api.md §8.7)."""

import asyncio
import uuid

import pytest
from memcloud_client import AsyncMemcloudClient, MemcloudClient, ValidationError

from .helpers import vec

pytestmark = pytest.mark.e2e


def test_put_creates_then_replaces_and_every_worker_reads_the_new_one(server, make_key):
    key = make_key()
    eid = str(uuid.uuid4())
    with MemcloudClient(server.url, key) as writer:
        assert writer.put(eid, "t/a", vec(1), 0.5, metadata={"n": 0}) is True
        for n in range(1, 8):
            assert writer.put(eid, "t/b", vec(100 + n), float(n), metadata={"n": n}, tags=["v"]) is False
            # A client per read: no keep-alive, so the reads land on the server's several workers.
            for _ in range(3):
                with MemcloudClient(server.url, key) as reader:
                    got = reader.get(eid)
                    assert (got.metadata, got.task_id, got.reward) == ({"n": n}, "t/b", float(n))
                    hits = reader.query(vec(100 + n), top_k=1)
                    assert hits[0].id == eid and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert writer.stats().episodes == 1
        with pytest.raises(ValidationError):
            writer.put(eid, "t", [1.0], 0.0)


def test_async_put(server, make_key):
    async def scenario():
        async with AsyncMemcloudClient(server.url, make_key()) as mc:
            eid = str(uuid.uuid4())
            assert await mc.put(eid, "a", vec(1), 1.0) is True
            assert await mc.put(eid, "b", vec(2), 2.0) is False
            assert (await mc.get(eid)).task_id == "b"

    asyncio.run(scenario())
