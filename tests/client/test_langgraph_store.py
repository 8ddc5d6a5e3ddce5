"""MemcloudStore (memcloud_client.langgraph) against a live server, with LangGraph's own
InMemoryStore as the reference: random operation sequences must get the same answers.

The reference needs two adjustments, both where LangGraph defines nothing:
* Order of a search without a query: InMemoryStore returns its dicts' insertion order, LangGraph's
  PostgreSQL store the most recently updated first; Memcloud does the latter (the server's listing
  order). The reference's full answer is put in that order before `offset` and `limit` apply.
* InMemoryStore keeps a namespace whose items were all deleted, or that a get merely read (its
  defaultdict), and lists it; a namespace here exists while it holds an item, as in the PostgreSQL
  store. The reference's empty namespaces are dropped before it lists.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from langgraph.store.base import GetOp, ListNamespacesOp, MatchCondition, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore
from memcloud_client.langgraph import MemcloudStore

pytestmark = pytest.mark.e2e

SEQUENCES = 200
OPS_PER_SEQUENCE = 12
NAMESPACES = [("t", "acme"), ("t", "acme-corp"), ("t", "acme", "x"), ("t", "%"), ("t", "a%"), ("t", "_"),
              ("t", "a_b"), ("t", "*"), ("t", "a/b"), ("t", "a", "b"), ("u",), ("u", "acme"), ("t",)]
PREFIXES = [(), ("t",), ("t", "acme"), ("t", "a"), ("t", "%"), ("t", "_"), ("t", "*"), ("t", "a/b"), ("u",),
            ("t", "acme", "x"), ("v",)]
KEYS = ["k1", "k2", "k/3", "%", "_", ""]
FILTERS = [None, None, {"n": {"$gt": 4}}, {"n": {"$lte": 3}, "s": "red"}, {"s": {"$ne": "red"}},
           {"nested": {"a": 1}}, {"tags": ["x", "y"]}, {"n": {"$gte": 2, "$lt": 7}}, {"s": {"$eq": "blue"}}]


class Reference:
    """InMemoryStore, with Memcloud's order for searches without a query (see the module's doc)."""

    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.clock: dict[tuple[tuple[str, ...], str], int] = {}
        self.ticks = 0

    def batch(self, ops: list) -> list:
        # A batch's reads all see the state before its writes: run them one by one (dropping the
        # namespaces a get left empty before each listing), then its writes as one batch.
        results = []
        for op in ops:
            if isinstance(op, ListNamespacesOp):
                for namespace in [ns for ns, items in self.store._data.items() if not items]:
                    del self.store._data[namespace]
            if isinstance(op, SearchOp):
                found = self.store.batch([op._replace(limit=10**6, offset=0)])[0]
                found.sort(key=lambda item: -self.clock[(item.namespace, item.key)])
                results.append(found[op.offset:op.offset + op.limit])
            else:
                results.append(None if isinstance(op, PutOp) else self.store.batch([op])[0])
        self.store.batch([op for op in ops if isinstance(op, PutOp)])
        last: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                last[(op.namespace, op.key)] = op
        for place, op in last.items():  # a batch's puts land in first-seen order with the last value
            if op.value is not None:
                self.ticks += 1
                self.clock[place] = self.ticks
        return results


def random_value(rng: random.Random) -> dict:
    value = {"n": rng.randint(0, 9), "s": rng.choice(["red", "blue", "green"]),
             "nested": {"a": rng.randint(0, 2)}}
    if rng.random() < 0.5:
        value["tags"] = rng.choice([["x", "y"], ["y", "x"], ["x"]])
    if rng.random() < 0.2:
        value["text"] = "50% off_sale*/" * rng.randint(1, 3)
    return value


def random_op(rng: random.Random):
    kind = rng.choices(["put", "get", "search", "delete", "list"], weights=[5, 2, 3, 1.5, 1.5])[0]
    if kind == "put":
        return PutOp(rng.choice(NAMESPACES), rng.choice(KEYS), random_value(rng))
    if kind == "delete":
        return PutOp(rng.choice(NAMESPACES), rng.choice(KEYS), None)
    if kind == "get":
        return GetOp(rng.choice(NAMESPACES), rng.choice(KEYS))
    if kind == "search":
        return SearchOp(rng.choice(PREFIXES), rng.choice(FILTERS), rng.randint(1, 12), rng.randint(0, 3))
    conditions = []
    if rng.random() < 0.6:
        conditions.append(MatchCondition("prefix", rng.choice(PREFIXES[1:] + [("t", "*"), ("*", "acme")])))
    if rng.random() < 0.3:
        conditions.append(MatchCondition("suffix", rng.choice([("acme",), ("x",), ("*",), ("acme", "x")])))
    return ListNamespacesOp(tuple(conditions) or None, rng.choice([None, None, 1, 2]), rng.randint(1, 20),
                            rng.randint(0, 2))


def shape(result):
    """What must agree: items as (namespace, key, value), in order; namespaces as they are."""
    if result is None:
        return None
    if isinstance(result, list):
        return [shape(r) for r in result]
    if isinstance(result, tuple):
        return result
    return (result.namespace, result.key, result.value)


@pytest.fixture
def key(make_key) -> str:
    return make_key()


@pytest.fixture
def store(server, key):
    made = MemcloudStore(server.url, api_key=key)
    yield made
    made.close()


def run_sequence(url: str, key: str, sequence: int) -> None:
    """One random sequence of single ops and mixed batches, on a root of its own."""
    rng = random.Random(20261205 + sequence)
    ours = MemcloudStore(url, api_key=key, root=f"diff{sequence}")
    reference = Reference()
    try:
        for step in range(OPS_PER_SEQUENCE):
            ops = [random_op(rng)] if rng.random() < 0.8 else [random_op(rng) for _ in range(rng.randint(2, 5))]
            expected, got = reference.batch(ops), ours.batch(ops)
            assert shape(got) == shape(expected), f"sequence {sequence}, step {step}: {ops}"
    finally:
        ours.close()


@pytest.mark.slow
def test_differential_against_langgraphs_in_memory_store(server, key):
    """>= 200 random sequences, the same answers op by op (three at a time: they share nothing)."""
    with ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(run_sequence, server.url, key, n) for n in range(SEQUENCES)]:
            done.result()


def test_items_carry_their_put_time(store):
    before = datetime.now(UTC) - timedelta(seconds=1)
    store.put(("t",), "k", {"a": 1})
    first = store.get(("t",), "k")
    assert before <= first.created_at == first.updated_at <= datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(0.01)
    store.put(("t",), "k", {"a": 2})
    second = store.get(("t",), "k")
    assert second.value == {"a": 2} and second.updated_at > first.updated_at
    assert [i.updated_at for i in store.search(("t",))] == [second.updated_at]


@pytest.mark.parametrize("op", ["get", "search", "list_namespaces", "delete"])
def test_acme_never_sees_acme_corp(store, op):
    store.put(("t", "acme-corp"), "k", {"who": "corp"})
    store.put(("t", "acmeX"), "k", {"who": "x"})
    store.put(("t", "acme"), "k", {"who": "acme"})
    if op == "get":
        assert store.get(("t", "acme"), "k").value == {"who": "acme"}
        assert store.get(("t", "acme"), "-corp/k") is None
    elif op == "search":
        assert [i.value for i in store.search(("t", "acme"))] == [{"who": "acme"}]
        assert [i.value for i in store.search(("t", "acme"), filter={"who": "corp"})] == []
    elif op == "list_namespaces":
        assert store.list_namespaces(prefix=("t", "acme")) == [("t", "acme")]
        assert store.list_namespaces(suffix=("acme",)) == [("t", "acme")]
    else:
        store.delete(("t", "acme"), "k")
        assert store.search(("t", "acme")) == []
        assert [i.value for i in store.search(("t",))] == [{"who": "x"}, {"who": "corp"}]


@pytest.mark.parametrize("label", ["%", "_", "*", "/", "a%", "a_", "%2F", "//"])
def test_labels_are_literal(store, label):
    """Every character of a label means itself: LIKE wildcards, glob stars, the separator, escapes."""
    lookalikes = {"%": ["a", "%%", "%25"], "_": ["a", "__"], "*": ["a", "**"], "/": ["%2F", "a"],
                  "a%": ["ab", "a%%"], "a_": ["ab"], "%2F": ["/", "%2f"], "//": ["/", "%2F%2F"]}[label]
    for other in lookalikes:
        store.put(("t", other), "k", {"label": other})
        store.put(("t", other, label), "k", {"label": f"{other}/{label}"})
    store.put(("t", label), "k", {"label": label})
    store.put(("t", label, "sub"), "k", {"label": f"{label}/sub"})
    assert {i.value["label"] for i in store.search(("t", label))} == {label, f"{label}/sub"}
    assert store.get(("t", label), "k").value == {"label": label}
    listed = store.list_namespaces(prefix=("t", label))
    if label == "*":  # LangGraph's one wildcard: a whole label "*" in list_namespaces' conditions
        assert len(listed) == 2 * len(lookalikes) + 2 and ("t", "**") in listed
    else:
        assert listed == [("t", label), ("t", label, "sub")]
    assert ("t", label) in store.list_namespaces(max_depth=2)
    store.delete(("t", label), "k")
    assert [i.value["label"] for i in store.search(("t", label))] == [f"{label}/sub"]
    assert len(store.search(("t",), limit=100)) == 2 * len(lookalikes) + 1


def test_async_ops_match_sync_ones(server, key):
    async def scenario() -> None:
        store = MemcloudStore(server.url, api_key=key, root="async")
        await store.aput(("a", "b"), "k1", {"n": 1})
        await store.aput(("a", "c"), "k2", {"n": 5})
        await store.aput(("a", "b"), "k1", {"n": 2})
        assert (await store.aget(("a", "b"), "k1")).value == {"n": 2}
        assert [i.key for i in await store.asearch(("a",), filter={"n": {"$gt": 1}})] == ["k1", "k2"]
        assert await store.alist_namespaces(prefix=("a",)) == [("a", "b"), ("a", "c")]
        results = await store.abatch([GetOp(("a", "c"), "k2"), PutOp(("a", "c"), "k2", None),
                                      SearchOp(("a", "c"), None, 10, 0)])
        assert results[0].value == {"n": 5} and results[1] is None and [i.key for i in results[2]] == ["k2"]
        assert await store.aget(("a", "c"), "k2") is None  # the batch's reads ran before its writes
        await store.adelete(("a", "b"), "k1")
        assert await store.alist_namespaces() == []
        await store.aclose()

    asyncio.run(scenario())


def test_from_an_existing_client(make_client):
    client = make_client()
    store = MemcloudStore.from_client(client, root="given")
    store.put(("x",), "k", {"v": 1})
    assert client.stats().episodes == 1
    assert asyncio.run(store.aget(("x",), "k")).value == {"v": 1}  # an async client with the same key
    store.close()
    assert client.stats().episodes == 1  # the given client stays open


def test_concurrent_get_sees_old_or_new_never_nothing(server, key):
    writer = MemcloudStore(server.url, api_key=key, root="race")
    writer.put(("r",), "k", {"n": 0})
    done, seen, missing = threading.Event(), set(), []

    def read() -> None:
        reader = MemcloudStore(server.url, api_key=key, root="race")
        while not done.is_set():
            item = reader.get(("r",), "k")
            if item is None:
                missing.append(1)
            else:
                seen.add(item.value["n"])
        reader.close()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(1, 30):
        writer.put(("r",), "k", {"n": n})
    done.set()
    for t in threads:
        t.join()
    writer.close()
    assert not missing and len(seen) > 1


def test_ttl_expires_and_reads_refresh_it(server, key):
    store = MemcloudStore(server.url, api_key=key, root="ttl", ttl={"refresh_on_read": True})
    store.put(("s",), "read", {"v": 1}, ttl=3 / 60)  # 3 seconds
    store.put(("s",), "idle", {"v": 2}, ttl=3 / 60)
    store.put(("s",), "kept", {"v": 3})
    time.sleep(1.5)
    assert store.get(("s",), "read") is not None  # refreshes: lives until ~4.5 s
    time.sleep(2.0)
    assert store.get(("s",), "idle", refresh_ttl=False) is None
    assert store.get(("s",), "read", refresh_ttl=False) is not None
    assert [i.key for i in store.search(("s",), refresh_ttl=False)] == ["kept", "read"]
    time.sleep(1.5)
    assert [i.key for i in store.search(("s",))] == ["kept"]
    store.close()


# ----- ranked search with a client-side embedder (8 dims, the test tenants') -----
def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic stand-in embedder: a bag of hashed words, so shared words mean closeness."""
    out = []
    for text in texts:
        v = [0.0] * 8
        for word in text.lower().split():
            h = hashlib.sha256(word.encode()).digest()
            v[h[0] % 8] += 1.0 + h[1] / 255
        v[0] += 1e-3  # never all zero
        out.append(v)
    return out


def test_query_ranks_like_langgraphs_store(store, server, key):
    index = {"dims": 8, "embed": embed, "fields": ["text"]}
    ours = MemcloudStore(server.url, api_key=key, root="ranked", index=index)
    reference = InMemoryStore(index=index)
    docs = {"a": "apples and pears", "b": "pears", "c": "fast cars and trucks", "d": "red apples",
            "e": "trucks", "f": "a boat"}
    for target in (ours, reference):
        for name, text in docs.items():
            target.put(("docs",), name, {"text": text, "n": ord(name)})
        target.put(("docs",), "plain", {"n": 1}, index=False)
    for query, flt, limit, offset in [("apples", None, 3, 0), ("trucks", None, 2, 1), ("pears", {"n": {"$gt": 97}}, 4, 0),
                                      ("boat", None, 10, 0)]:
        got = ours.search(("docs",), query=query, filter=flt, limit=limit, offset=offset)
        want = reference.search(("docs",), query=query, filter=flt, limit=limit, offset=offset)
        assert [i.key for i in got] == [i.key for i in want], query
        for g, w in zip(got, want, strict=True):
            assert (g.score is None) == (w.score is None)
            assert g.score is None or math.isclose(g.score, w.score, abs_tol=1e-5)
    ours.close()


def test_an_embedder_of_the_wrong_size_is_refused(server, key):
    store = MemcloudStore(server.url, api_key=key, index={"dims": 3, "embed": lambda ts: [[1.0, 2.0, 3.0]] * len(ts)})
    with pytest.raises(ValueError, match="3 dimensions, the tenant has 8"):
        store.put(("a",), "k", {"text": "x"})
    assert store.get(("a",), "k") is None
    store.close()


def test_too_long_a_namespace_is_refused_before_sending(store):
    with pytest.raises(ValueError, match="too long"):
        store.put(("n" * 300, "m" * 300), str(uuid.uuid4()), {"v": 1})


def test_search_by_query_ranks_with_the_tenants_server_side_embedder(server):
    pytest.importorskip("sentence_transformers", reason="the embeddings extra is not installed (make embeddings-deps)")
    key = server.create_tenant(f"lg-text-{random.randrange(10**9)}", "--embedder", "local-minilm")
    store = MemcloudStore(server.url, api_key=key, index={"fields": ["text"]})
    try:
        notes = {"drink": "The user drinks green tea and never coffee.",
                 "deploy": "Deploys fail when the staging migration times out.",
                 "billing": "Invoices go out on the first business day of the month."}
        for name, text in notes.items():
            store.put(("user", "42"), name, {"text": text})
        store.put(("user", "42"), "raw", {"text": "not indexed"}, index=False)
        found = store.search(("user", "42"), query="what does the user like to drink?", limit=3)
        assert [item.key for item in found][0] == "drink" and found[0].score is not None
        assert store.get(("user", "42"), "drink").value == {"text": notes["drink"]}
        everything = store.search(("user", "42"), query="anything", limit=10)
        assert {item.key for item in everything} == {*notes, "raw"}  # the unindexed one after the ranked
        assert everything[-1].key == "raw" and everything[-1].score is None
    finally:
        store.close()
