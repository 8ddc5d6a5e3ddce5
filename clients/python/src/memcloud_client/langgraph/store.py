"""MemcloudStore: a LangGraph BaseStore whose items are Memcloud episodes.

One item is one episode: `task_id` and id from the namespace and key (keys.py), the value, the
namespace, the key and the TTL in `metadata`, `timestamp` the time of the last put (the item's
`created_at` and `updated_at`, as LangGraph's in-memory store: a put writes a new item). A put is
one `PUT /v1/episodes/{id}`, so a concurrent get sees the old value or the new one, never nothing.

Every operation is written once, as a generator of steps (a plan of the Python client, or a
request to embed texts); `batch` drives them with the sync client, `abatch` with the async one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)
from langgraph.store.base.embed import ensure_embeddings, get_text_at_path, tokenize_path

from .. import _api
from ..async_client import AsyncMemcloudClient
from ..client import MemcloudClient
from ..errors import NotFound
from ..models import Episode, Page
from . import keys
from .matching import literal_prefix, namespace_matches, value_matches

INDEXED_TAG = "langgraph:indexed"  # items put with an embedding; the others hold PLACEHOLDER vectors
PAGE = 1000  # the server's largest listing page
MAX_TOP_K = 1000  # the server's default AGENT_MEM_MAX_TOP_K


@dataclass(frozen=True)
class Embed:
    """A step: embed `texts` as documents, or as a query when `query` is set."""

    texts: list[str]
    query: bool = False


Step = Generator[Any, Any, Any]


class MemcloudStore(BaseStore):
    """A LangGraph store over a Memcloud tenant.

    `MemcloudStore(base_url, api_key=..., timeout=..., max_retries=...)` (URL and key default to
    MEMCLOUD_URL and MEMCLOUD_API_KEY), or `MemcloudStore(client=existing_client)` with a
    MemcloudClient or AsyncMemcloudClient. `index={"fields": [...]}` enables `search(query=...)`
    ranked by the tenant's server-side embedder (the store sends texts, the server embeds them);
    `index={"embed": ..., "dims": ..., "fields": [...]}` embeds on this side instead (`dims` must be
    the tenant's dim).
    `root` separates several stores sharing one tenant. TTLs are in minutes (`ttl=`, `ttl_config`).
    """

    supports_ttl = True

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 client: MemcloudClient | AsyncMemcloudClient | None = None, index: IndexConfig | None = None,
                 ttl: TTLConfig | None = None, root: str = "langgraph", **client_options: Any) -> None:
        if not root:
            raise ValueError("root: must be a non-empty label")
        if client is not None:
            transport = client._transport
            base_url, api_key = transport.base_url, transport.api_key
            client_options = {"timeout": transport.timeout, "max_retries": transport.policy.max_retries,
                              **client_options}
        self._options = (base_url, api_key, client_options)
        self._sync = client if isinstance(client, MemcloudClient) else None
        self._async = client if isinstance(client, AsyncMemcloudClient) else None
        self._owned: list[MemcloudClient | AsyncMemcloudClient] = []
        self.root = root
        self.ttl_config = ttl
        self.index_config = dict(index) if index else None
        self.embeddings = None
        self.server_embeds = False  # index without `embed`: texts go to the tenant's embedder
        self._fields: list[tuple[str, str | list[str]]] = []
        if self.index_config:
            if self.index_config.get("embed") is None:
                self.server_embeds = True
            else:
                self.embeddings = ensure_embeddings(self.index_config["embed"])
            self._fields = [(p, p if p == "$" else tokenize_path(p)) for p in self.index_config.get("fields") or ["$"]]
        self._dim: int | None = None

    @classmethod
    def from_client(cls, client: MemcloudClient | AsyncMemcloudClient, **options: Any) -> MemcloudStore:
        return cls(client=client, **options)

    # ----- clients -----
    def _sync_client(self) -> MemcloudClient:
        if self._sync is None:
            self._sync = self._made(MemcloudClient)
        return self._sync

    def _async_client(self) -> AsyncMemcloudClient:
        if self._async is None:
            self._async = self._made(AsyncMemcloudClient)
        return self._async

    def _made(self, kind: type) -> Any:
        """A client of `kind` from the store's own options, closed with the store."""
        base_url, api_key, options = self._options
        made = kind(base_url, api_key, **options)
        self._owned.append(made)
        return made

    def close(self) -> None:
        """Close the clients this store made (not one it was given)."""
        for owned in self._owned:
            if isinstance(owned, MemcloudClient):
                owned.close()
        self._owned = [c for c in self._owned if isinstance(c, AsyncMemcloudClient)]

    async def aclose(self) -> None:
        for owned in self._owned:
            if isinstance(owned, AsyncMemcloudClient):
                await owned.close()
            else:
                owned.close()
        self._owned = []

    # ----- drivers -----
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        client = self._sync_client()
        steps = self._batch(list(ops))
        try:
            step = next(steps)
            while True:
                try:
                    if isinstance(step, Embed):
                        value = (self.embeddings.embed_query(step.texts[0]) if step.query  # type: ignore[union-attr]
                                 else self.embeddings.embed_documents(step.texts))  # type: ignore[union-attr]
                    else:
                        value = client._run(step)
                except Exception as error:  # noqa: BLE001 - handed to the plan, which may expect it
                    step = steps.throw(error)
                else:
                    step = steps.send(value)
        except StopIteration as done:
            return cast(list[Result], done.value)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        client = self._async_client()
        steps = self._batch(list(ops))
        try:
            step = next(steps)
            while True:
                try:
                    if isinstance(step, Embed):
                        value = (await self.embeddings.aembed_query(step.texts[0]) if step.query  # type: ignore[union-attr]
                                 else await self.embeddings.aembed_documents(step.texts))  # type: ignore[union-attr]
                    else:
                        value = await client._run(step)
                except Exception as error:  # noqa: BLE001
                    step = steps.throw(error)
                else:
                    step = steps.send(value)
        except StopIteration as done:
            return cast(list[Result], done.value)

    # ----- the batch -----
    def _batch(self, ops: list[Op]) -> Step:
        """Reads first, then writes, as LangGraph's stores do: every read of a batch sees the
        state before it; several puts of one key in a batch leave the last."""
        for op in ops:
            validate_op_namespace(op)
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                results[i] = yield from self._get(op)
            elif isinstance(op, SearchOp):
                results[i] = yield from self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = yield from self._list_namespaces(op)
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), op.key)] = op
            else:
                raise ValueError(f"unknown operation type: {type(op).__name__}")
        yield from self._write(list(puts.values()))
        return results

    # ----- reads -----
    def _item(self, episode: Episode, score: float | None = None, *, search: bool = False) -> Item | None:
        meta = episode.metadata
        if not isinstance(meta.get("value"), dict) or not isinstance(meta.get("namespace"), list):
            return None  # an episode under the root that this store did not write
        at = datetime.fromtimestamp(episode.timestamp / 1000, tz=UTC)
        fields = {"namespace": tuple(meta["namespace"]), "key": str(meta["key"]), "value": meta["value"],
                  "created_at": at, "updated_at": at}
        return SearchItem(**fields, score=score) if search else Item(**fields)

    def _refresh(self, episodes: Sequence[Episode], wanted: bool) -> Step:
        """Refresh-on-read: an item with a TTL lives `ttl` minutes from now again."""
        if not wanted:
            return
        now = time.time_ns() // 1_000_000
        for episode in episodes:
            ttl = episode.metadata.get("ttl")
            if ttl:
                with_ttl = {"expires_at": now + _ttl_secs(ttl) * 1000}
                with contextlib.suppress(NotFound):  # expired or deleted meanwhile: nothing to refresh
                    yield _api.patch(episode.id, with_ttl)  # type: ignore[arg-type]

    def _get(self, op: GetOp) -> Step:
        try:
            episode = yield _api.get(keys.episode_id(self.root, tuple(op.namespace), op.key))
        except NotFound:
            return None
        yield from self._refresh([episode], op.refresh_ttl)
        return self._item(episode)

    def _listing(self, prefix: tuple[str, ...], keep: Callable[[Episode], bool], want: int | None) -> Step:
        """Episodes under `prefix` passing `keep`, newest put first, until `want` of them (None: all)."""
        found: list[Episode] = []
        cursor: str | None = None
        flt = {"task_id_prefix": keys.prefix_text(self.root, prefix)}
        while want is None or len(found) < want:
            page: Page = yield _api.list_episodes(PAGE, cursor, False, flt)  # type: ignore[arg-type]
            found += [e for e in page.episodes if keep(e)]
            cursor = page.next_cursor
            if not cursor:
                break
        return found if want is None else found[:want]

    def _search(self, op: SearchOp) -> Step:
        prefix = tuple(op.namespace_prefix)

        def passes(episode: Episode) -> bool:
            item = self._item(episode)
            return item is not None and value_matches(item.value, op.filter)

        if op.query and (self.embeddings is not None or self.server_embeds):
            hits = yield from self._ranked(op, prefix, passes)
        else:  # as LangGraph's stores: without an embedder a query does not rank
            episodes = yield from self._listing(prefix, passes, op.offset + op.limit)
            hits = [(e, None) for e in episodes[op.offset:]]
        yield from self._refresh([e for e, _ in hits], op.refresh_ttl)
        return [self._item(e, score, search=True) for e, score in hits]

    def _ranked(self, op: SearchOp, prefix: tuple[str, ...], passes: Callable[[Episode], bool]) -> Step:
        """The best `limit` after `offset` by similarity among indexed items, then (as LangGraph's
        in-memory store) items without an embedding in listing order if there are too few."""
        if self.server_embeds:  # the tenant's embedder makes the query's vector from its text
            vector, ranking = None, {"text": cast(str, op.query), "mode": "vector"}
        else:
            vector, ranking = (yield Embed([cast(str, op.query)], query=True)), None
        want = op.offset + op.limit
        top_k = min(MAX_TOP_K, want if not op.filter else 4 * want)
        flt = {"task_id_prefix": keys.prefix_text(self.root, prefix), "tags_all": [INDEXED_TAG]}
        while True:
            hits = yield _api.query(vector, top_k, False, flt, ranking)  # type: ignore[arg-type]
            kept = [h for h in hits if passes(h)]
            if len(kept) >= want or len(hits) < top_k or top_k >= MAX_TOP_K:
                break
            top_k = min(MAX_TOP_K, top_k * 4)
        ranked: list[tuple[Episode, float | None]] = [(h, h.score) for h in kept[op.offset:want]]
        if len(ranked) < op.limit:
            unindexed = yield from self._listing(
                prefix, lambda e: INDEXED_TAG not in e.tags and passes(e), op.limit - len(ranked))
            ranked += [(e, None) for e in unindexed]
        return ranked

    def _list_namespaces(self, op: ListNamespacesOp) -> Step:
        """Every namespace holding an item and passing the conditions, sorted; read from the items
        under the conditions' literal prefix (the cost follows how many items that holds)."""
        episodes = yield from self._listing(literal_prefix(op.match_conditions), lambda e: True, None)
        found = set()
        for episode in episodes:
            item = self._item(episode)
            if item is not None and namespace_matches(item.namespace, op.match_conditions):
                found.add(item.namespace if op.max_depth is None else item.namespace[: op.max_depth])
        return sorted(found)[op.offset: op.offset + op.limit]

    # ----- writes -----
    def _write(self, puts: list[PutOp]) -> Step:
        gone = [keys.episode_id(self.root, tuple(p.namespace), p.key) for p in puts if p.value is None]
        for start in range(0, len(gone), PAGE):
            yield _api.delete_many(gone[start:start + PAGE], {})
        stores = [p for p in puts if p.value is not None]
        vectors = self._texts(stores) if self.server_embeds else (yield from self._vectors(stores))
        for put, vector in zip(stores, vectors, strict=True):
            namespace = tuple(put.namespace)
            fields: dict[str, Any] = {
                "metadata": {"namespace": list(namespace), "key": put.key, "value": put.value, "ttl": put.ttl},
                "tags": [INDEXED_TAG] if vector is not None else [],
            }
            if put.ttl:
                fields["ttl_secs"] = _ttl_secs(put.ttl)
            if isinstance(vector, str):  # server-side: the text goes, the tenant's embedder makes the vector
                fields["text"], vector = vector, None
            elif vector is None:
                vector = yield from self._placeholder()
            eid, task = keys.episode_id(self.root, namespace, put.key), keys.task_id(self.root, namespace, put.key)
            yield _api.put(eid, task, vector, 0.0, fields)  # type: ignore[arg-type]

    def _vectors(self, puts: list[PutOp]) -> Step:
        """One embedding per put (None: not indexed): the mean of its texts' unit embeddings, all
        texts of the batch embedded in one call (server-side embedding: see __init__)."""
        texts_of = [self._indexed_texts(put) if self.embeddings is not None else [] for put in puts]
        flat = [t for texts in texts_of for t in texts]
        embedded = iter((yield Embed(flat)) if flat else [])
        out: list[list[float] | None] = []
        for texts in texts_of:
            rows = [next(embedded) for _ in texts]
            out.append(_mean_of_units(rows) if rows else None)
        dim = yield from self._tenant_dim()
        for vector in out:
            if vector is not None and len(vector) != dim:
                raise ValueError(f"index: the embedder gives {len(vector)} dimensions, the tenant has {dim}")
        return out

    def _texts(self, puts: list[PutOp]) -> list[str | None]:
        """One text per put for the tenant's embedder (None: not indexed): its indexed fields' texts."""
        return ["\n".join(self._indexed_texts(put)) or None for put in puts]

    def _indexed_texts(self, put: PutOp) -> list[str]:
        """The texts of the put's value at its index paths (the store's, or the put's own; none for
        index=False)."""
        if put.index is False:
            return []
        paths = self._fields if put.index is None else [(p, p if p == "$" else tokenize_path(p)) for p in put.index]
        return [text for _, path in paths for text in get_text_at_path(put.value, path)]

    def _tenant_dim(self) -> Step:
        if self._dim is None:
            self._dim = (yield _api.stats()).dim
        return self._dim

    def _placeholder(self) -> Step:
        """The vector of an item without an embedding: fixed and non-zero (a cosine tenant refuses
        zeros); such items carry no INDEXED_TAG, so a ranked search never scores them."""
        dim = yield from self._tenant_dim()
        return [1.0] * dim


def _ttl_secs(minutes: float) -> int:
    return max(1, math.ceil(float(minutes) * 60))


def _mean_of_units(rows: list[Sequence[float]]) -> list[float]:
    if len(rows) == 1:
        return [float(x) for x in rows[0]]
    total = [0.0] * len(rows[0])
    for row in rows:
        norm = math.sqrt(sum(x * x for x in row)) or 1.0
        for i, x in enumerate(row):
            total[i] += x / norm
    return [x / len(rows) for x in total]
