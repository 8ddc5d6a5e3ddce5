"""Text, keyword and hybrid queries through the sync and async clients."""

import asyncio

import pytest
from memcloud_client import AsyncMemcloudClient, QueryHit, ValidationError

from .helpers import vec

pytestmark = pytest.mark.e2e

TEXTS = [f"The job failed with ERR_{4700 + i} while writing to the server" for i in range(10)]


def test_store_with_text_and_query_by_keyword_and_hybrid(client):
    ids = [client.store("job", vec(i), 0.5, text=text, timestamp=1000 + i) for i, text in enumerate(TEXTS)]
    assert client.get(ids[3]).text == TEXTS[3]
    assert [e.text for e in client.list_episodes(limit=2).episodes] == [TEXTS[9], TEXTS[8]]
    hits = client.query(text="server ERR_4703", mode="keyword", top_k=3)
    assert all(isinstance(h, QueryHit) for h in hits) and hits[0].id == ids[3]
    assert hits[0].score > hits[1].score > 0 and hits[0].vector_rank is None
    hybrid = client.query(vec(7), text="err_4703", mode="hybrid", top_k=2, rrf_k=10, keyword_weight=2.0)
    assert hybrid[0].id == ids[3] and hybrid[0].keyword_rank == 1 and hybrid[0].vector_rank >= 1
    assert hybrid[1].id == ids[7] and (hybrid[1].vector_rank, hybrid[1].keyword_rank) == (1, None)
    assert hybrid[1].score == pytest.approx(1 / 11)
    assert [h.id for h in client.query(vec(3), top_k=1)] == [ids[3]]  # vector, as before


def test_the_server_decides_what_a_store_without_embedding_means(client):
    with pytest.raises(ValidationError, match="state_embedding"):
        client.store("job", reward=1.0, text="no embedder on this tenant")
    with pytest.raises(TypeError, match="reward"):
        client.store("job", vec(1))
    with pytest.raises(ValidationError, match="query_text"):
        client.query(mode="keyword")


def test_async_client_stores_text_and_queries_by_keyword(server, make_key):
    async def scenario():
        async with AsyncMemcloudClient(server.url, make_key()) as mc:
            one = await mc.store("a", vec(1), 1.0, text="disk full on node-7")
            await mc.store("b", vec(2), 1.0, text="all good")
            [hit] = await mc.query(text="NODE-7", mode="keyword")
            assert hit.id == one and hit.text == "disk full on node-7"
            both = await mc.query(vec(2), text="node", mode="hybrid", top_k=5)
            assert [h.keyword_rank for h in both] in ([1, None], [None, 1])

    asyncio.run(scenario())
