"""Per-tenant in-memory index: exact filtered top-k over float32 rows, composed of three parts.

- storage.py: where the float32 rows live (in memory, or spilled to a row file beside the int8 copy);
- columns.py: the filter columns and the mask a query's filters become;
- search.py: the search strategy (float32 or int8 candidates, exact re-rank, top-k with ties);
- keyword.py: the rows' text as postings, scored by exact BM25 (ranking.py: keyword and hybrid).

Rows live in a prefix [0, n) of capacity-sized columns; the id map (idmap.py) holds n. A removal
moves the last row into the hole, so store order is kept in the `seq` column rather than in row
positions. `check()` states what holds between the parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from . import search as strategy
from .columns import FilterColumns, Filters, distinct
from .idmap import IdMap
from .keyword import KeywordColumn
from .quantized import MIN_ROWS
from .storage import InMemoryRows, RowStorage


class TenantIndex:
    def __init__(self, dim: int, metric: str = "cosine", capacity: int = 0, quantize_from: int = MIN_ROWS,
                 spill_dir: str | None = None) -> None:
        if metric not in ("cosine", "l2", "dot"):
            raise ValueError(f"unknown metric {metric!r}")
        self.dim = dim
        self.metric = metric
        self.quantize_from = quantize_from  # the row count from which a search builds the int8 copy
        self.spill_dir = spill_dir  # where a row file goes (None: the system's temp dir)
        capacity = max(capacity, 16)
        self.idmap = IdMap()  # row <-> episode id; its row count is the index's (idmap.py)
        self.idmap.grow(capacity)
        self.storage: RowStorage = InMemoryRows(dim, metric, capacity)
        self.columns = FilterColumns(capacity)
        self.keyword = KeywordColumn(capacity)
        self.capacity = capacity

    def check(self) -> None:
        """Raise AssertionError unless the parts agree: n rows within one capacity shared by the
        storage and every column, storage shaped as its kind (the int8 copy, the row file, the
        in-memory matrix and its squared norms come and go together: storage.py), and the filter
        columns consistent with themselves and the id map. For tests: O(n)."""
        n = self.n
        if not 0 <= n <= self.capacity or self.storage.capacity != self.capacity:
            raise AssertionError(f"{n} rows, capacity {self.capacity}, storage capacity {self.storage.capacity}")
        if len(self.idmap.all()) != n:
            raise AssertionError("the id map's ids disagree with its row count")
        self.storage.check(self.capacity)
        self.columns.check(self.capacity, n, self.idmap)
        if self.keyword.capacity != self.capacity:
            raise AssertionError(f"keyword column capacity {self.keyword.capacity}, index {self.capacity}")
        self.keyword.check(n)

    def _grow(self, capacity: int) -> None:
        n = self.n
        self.storage.grow(capacity, n)
        self.columns.grow(capacity, n)
        self.keyword.grow(capacity, n)
        self.idmap.grow(capacity)
        self.capacity = capacity

    def nbytes(self) -> int:
        """What the index holds in this worker's memory (a row file's rows are in the page cache)."""
        return self.storage.nbytes() + self.columns.nbytes() + self.idmap.nbytes() + self.keyword.nbytes()

    # ----- writes -----
    def add(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        seq: np.ndarray,
        timestamp: np.ndarray,
        reward: np.ndarray,
        expires_at: np.ndarray,
        task_id: Sequence[str],
        source: Sequence[str | None],
        user_id: Sequence[str | None],
        tags: Sequence[Sequence[str]],
        text: Sequence[str | None] | None = None,
    ) -> None:
        """Insert rows, or update the filter columns and text of ids already present (embeddings are
        immutable). `text`: each row's text for keyword search (None: no row has any)."""
        m = len(ids)
        if m == 0:
            return
        emb = np.asarray(embeddings, dtype=np.float32).reshape(m, self.dim)
        rows = self.idmap.find(ids)
        known = distinct(rows[rows >= 0])
        new_at = np.flatnonzero(rows < 0).tolist()  # positions of ids not in the index
        first: dict[str, int] = {}  # new id -> its first position in this call
        for i in new_at:
            first.setdefault(ids[i], i)
        first_new = self.n
        if self.n + len(first) > self.capacity:
            self._grow(max(self.n + len(first), int(self.capacity * 1.5) + 16))
        fresh = np.zeros(m, dtype=bool)
        for eid, i in first.items():
            fresh[i] = True
            first[eid] = self.idmap.append(eid)
        for i in new_at:  # repeats of a new id update its new row
            rows[i] = first[ids[i]]
        # Embeddings only for new rows (they never change), which are rows [first_new, n) in order.
        self.storage.set_vectors(first_new, emb[fresh])
        self.columns.write(rows, known, fresh, ids, seq, timestamp, reward, expires_at, task_id, source,
                           user_id, tags)
        self.keyword.write(rows, [None] * m if text is None else text)

    def remove(self, ids: Iterable[str]) -> int:
        removed = 0
        for eid in ids:
            row = self.idmap.get(eid)
            if row is None:
                continue
            self.idmap.discard(row)
            removed += 1
            last = self.n - 1
            self.storage.release(row)
            self.columns.remove(eid, row, last)
            self.keyword.remove(row, last)
            if row != last:
                self.storage.move(last, row)
                self.idmap.move(last, row)
            self.idmap.pop_last()
        return removed

    def ensure_quantized(self) -> None:
        """Build the int8 copy now (a search of a large tenant builds it on first use) and move the
        float32 rows out of memory into a row file. On an empty index: every later add streams."""
        if isinstance(self.storage, InMemoryRows):
            self.storage = self.storage.spill(self.n, self.spill_dir)

    # ----- reads -----
    @property
    def n(self) -> int:
        """Rows in the index: [0, n) of every column."""
        return self.idmap.n

    def __len__(self) -> int:
        return self.idmap.n

    def __contains__(self, eid: str) -> bool:
        return eid in self.idmap

    @property
    def ids(self) -> list[str]:
        """Every row's id, in row order (a new list: O(n))."""
        return self.idmap.all()

    def ids_at(self, rows: Iterable[int]) -> list[str]:
        return self.idmap.ids_at(rows)

    def prepare_query(self, query: np.ndarray) -> np.ndarray:
        """The query as the rows are stored: float32, normalised for cosine."""
        return strategy.prepare_query(query, self.dim, self.metric)

    def mask(self, flt: Filters, now_ms: int) -> np.ndarray | None:
        """One boolean mask for all filters; None when nothing filters (every row matches)."""
        return self.columns.mask(flt, now_ms, self.n, self.idmap)

    def search(self, query: np.ndarray, k: int, flt: Filters | None = None, now_ms: int = 0,
               among: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
        """Ids and scores of the k best matching rows, best first (ties: newer timestamp, later stored);
        with `among` (row positions), of those rows only."""
        n = self.n
        if n == 0 or k <= 0:
            return [], np.empty(0, dtype=np.float32)
        q = self.prepare_query(query)
        mask = self.mask(flt or Filters(), now_ms)
        if among is not None:
            only = np.zeros(n, dtype=bool)
            only[among] = True
            mask = only if mask is None else mask & only
        matches = n if mask is None else int(np.count_nonzero(mask))
        rows, scores = self.vector_rows(q, k, mask, matches)
        return self.idmap.ids_at(rows), scores

    def vector_rows(self, q: np.ndarray, k: int, mask: np.ndarray | None,
                    matches: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and exact scores of the k best of the `matches` rows of `mask` (every row when None)
        for a prepared query, best first (ties: newer timestamp, later stored)."""
        n = self.n
        if matches == 0 or k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if self.storage.quant is None and strategy.wants_int8(n, matches, self.quantize_from):
            self.ensure_quantized()
        rows, scores = strategy.best_rows(self.storage, q, k, mask, matches, n)
        best = strategy.top_k(scores, self.columns.timestamp[rows], self.columns.seq[rows], k)
        return rows[best], scores[best]

    def live(self, now_ms: int) -> np.ndarray | None:
        """Rows not expired at now_ms (None: none can expire)."""
        expires = self.columns.expires
        return None if expires is None or not self.columns.expiring else expires[: self.n] > now_ms
