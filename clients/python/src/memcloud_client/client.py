"""The synchronous client."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar, Unpack, cast

from . import _api
from ._api import DEFAULT_BATCH_SIZE, Changes, EpisodeFields, Filters, Plan, Time
from ._http import SyncTransport, decode
from .errors import MemcloudError
from .models import Episode, Page, QueryHit, Snapshot, Stats

T = TypeVar("T")


class MemcloudClient:
    """Talks to a Memcloud server. URL and key default to `MEMCLOUD_URL` and `MEMCLOUD_API_KEY`.

    Failed calls raise a subclass of `MemcloudError`. 429, 503 and connection errors are retried
    up to `max_retries` times with exponential backoff (429 waits `Retry-After`). Stores are always
    safe to retry: each episode without an id gets a client-generated uuid4, and the server answers a
    repeat of the same id and content with 200 instead of storing it twice.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        self._transport = SyncTransport(base_url, api_key, timeout, max_retries)
        self.base_url = self._transport.base_url
        self.batch_size = batch_size

    def _run(self, plan: Plan[T]) -> T:
        try:
            call = next(plan)
            while True:
                try:
                    response = self._transport.send(call)
                except MemcloudError as error:
                    call = plan.throw(error)
                else:
                    call = plan.send(decode(response))
        except StopIteration as done:
            return cast(T, done.value)

    # Episodes

    def store(self, task_id: str, state_embedding: Any = None, reward: float | None = None,
              **fields: Unpack[EpisodeFields]) -> str:
        """Store one episode; returns its id. `reward` is required; `state_embedding` may be left out
        when `text` is given and the server embeds it (else the server answers 400)."""
        return self._run(_api.store(task_id, state_embedding, reward, fields))

    def put(self, episode_id: str, task_id: str, state_embedding: Any, reward: float,
            **fields: Unpack[EpisodeFields]) -> bool:
        """Create or replace the whole episode `episode_id` in one step (readers see the old or the new
        one, never neither); True if it was created. Safe to retry."""
        return self._run(_api.put(episode_id, task_id, state_embedding, reward, fields))

    def store_batch(
        self, episodes: Iterable[Mapping[str, Any] | Episode], *, batch_size: int | None = None,
        concurrency: int = 2,
    ) -> list[str]:
        """Store many episodes in chunks of `batch_size` (default the client's); ids in input order.

        Up to `concurrency` chunks are in flight while the next one is encoded (a server's workers
        store them side by side). Each chunk is all-or-nothing, the whole is not: an error carries
        `stored_ids`, the ids of the chunks before the failed one (later chunks in flight may have
        been stored too; calling again with the same episodes, ids included, is safe)."""
        size = batch_size or self.batch_size
        if concurrency <= 1:
            return self._run(_api.store_batch(episodes, size))
        ids: list[str] = []
        in_flight: deque[Future[list[str]]] = deque()
        with ThreadPoolExecutor(concurrency, thread_name_prefix="memcloud-store") as pool:
            try:
                for call in _api.batch_calls(episodes, size):
                    if len(in_flight) == concurrency:
                        ids += in_flight.popleft().result()
                    in_flight.append(pool.submit(self._chunk, call))
                while in_flight:
                    ids += in_flight.popleft().result()
            except MemcloudError as error:
                error.stored_ids = ids  # type: ignore[attr-defined]
                raise
            finally:
                for future in in_flight:  # nothing keeps running once this returns or raises
                    future.cancel()
        return ids

    def _chunk(self, call: _api.Call) -> list[str]:
        return list(decode(self._transport.send(call))["ids"])

    def get(self, episode_id: str) -> Episode:
        return self._run(_api.get(episode_id))

    def delete(self, episode_id: str) -> int:
        return self._run(_api.delete(episode_id))

    def query(
        self, embedding: Any = None, top_k: int = 5, *, text: str | None = None, mode: str | None = None,
        rrf_k: int | None = None, vector_weight: float | None = None, keyword_weight: float | None = None,
        include_embedding: bool = False, **filters: Unpack[Filters],
    ) -> list[QueryHit]:
        """The `top_k` best episodes that pass every filter, best first: by similarity to `embedding`
        (mode "vector", the default), by BM25 over their text for `text` (mode "keyword"), or both
        fused (mode "hybrid": `embedding` and `text`, tuned by rrf_k and the weights)."""
        ranking = _api.Ranking(text=text, mode=mode, rrf_k=rrf_k, vector_weight=vector_weight,
                               keyword_weight=keyword_weight)
        return self._run(_api.query(embedding, top_k, include_embedding, filters, ranking))

    def list_episodes(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        include_embedding: bool = False,
        **filters: Unpack[Filters],
    ) -> Page:
        """One page, newest first; pass `page.next_cursor` back for the next one."""
        return self._run(_api.list_episodes(limit, cursor, include_embedding, filters))

    def iter_episodes(
        self, *, page_size: int = 100, include_embedding: bool = False, **filters: Unpack[Filters]
    ) -> Iterator[Episode]:
        """Every matching episode, newest first, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list_episodes(
                limit=page_size, cursor=cursor, include_embedding=include_embedding, **filters
            )
            yield from page.episodes
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def patch(self, episode_id: str, **changes: Unpack[Changes]) -> Episode:
        return self._run(_api.patch(episode_id, changes))

    def delete_many(self, ids: Sequence[str] | None = None, **filters: Unpack[Filters]) -> int:
        """Delete by ids, or every episode matching the filters (the server refuses an empty filter)."""
        return self._run(_api.delete_many(ids, filters))

    def prune_older_than(self, cutoff: Time) -> int:
        return self._run(_api.prune("older-than", {"timestamp_cutoff_ms": _api.millis(cutoff)}))

    def prune_keep_newest(self, n: int) -> int:
        return self._run(_api.prune("keep-newest", {"n": n}))

    def prune_keep_highest_reward(self, n: int) -> int:
        return self._run(_api.prune("keep-highest-reward", {"n": n}))

    # Snapshots and tenant

    def save(self, path: str) -> int:
        """Save a snapshot named `path`; returns the number of episodes in it."""
        return self._run(_api.save(path))

    def load(self, path: str) -> int:
        """Replace the tenant's episodes with snapshot `path`; returns how many there are now."""
        return self._run(_api.load(path))

    def list_snapshots(self) -> list[Snapshot]:
        return self._run(_api.list_snapshots())

    def checkpoint(self) -> int:
        return self._run(_api.checkpoint())

    def stats(self) -> Stats:
        return self._run(_api.stats())

    def health(self) -> bool:
        return self._run(_api.health())

    def ready(self) -> bool:
        return self._run(_api.ready())

    # Lifecycle

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> MemcloudClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
