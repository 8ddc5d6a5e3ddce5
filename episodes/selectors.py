"""Reads on episodes: get, list, similarity query, stats."""

from __future__ import annotations

import binascii
import dataclasses
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q

from core import db, usage
from core.audit import audit
from core.errors import NotFound
from memindex.columns import Filters
from memindex.index import TenantIndex
from memindex.ranking import hybrid_search, keyword_search
from tenants import key_memo
from tenants.models import Tenant, TenantState

from . import spec
from .cache import cache
from .changes import uuid_str
from .cursors import make_cursor, read_cursor
from .embedding import text_vector
from .filtering import matching
from .models import Episode
from .restriction import narrowed, own
from .services import now_ms

OUTPUT_FIELDS = ("id", "task_id", "reward", "metadata", "timestamp", "tags", "source", "user_id", "steps",
                 "expires_at", "text", "seq")
MAX_RACE_RETRIES = 3


def live(queryset, at_ms: int):
    """Episodes that have not expired (the sweep removes expired ones later)."""
    return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at_ms))


def embedding_json(stored: bytes, embedding_format: str = "float") -> list[float] | str:
    """The stored float32 little-endian bytes as the answer carries them (docs/api.md §3): a list
    of numbers, or those very bytes in base64 ("base64", bit for bit, no number formatting)."""
    if embedding_format == "base64":
        return binascii.b2a_base64(stored, newline=False).decode("ascii")
    return np.frombuffer(bytes(stored), dtype="<f4").tolist()


def episode_json(row: dict[str, Any], *, embedding: bytes | None = None,
                 embedding_format: str = "float") -> dict[str, Any]:
    out = {k: row[k] for k in OUTPUT_FIELDS if k != "seq"}
    out["id"] = str(row["id"])
    if embedding is not None:
        out["state_embedding"] = embedding_json(embedding, embedding_format)
    return out


def episode_get(*, tenant: Tenant, episode_id: uuid.UUID, user: str | None = None,
                embedding_format: str = "float") -> dict[str, Any]:
    """One live episode; another user's (for a bound `user`) is as absent as a missing one."""
    row = live(own(Episode.objects.filter(tenant=tenant, id=episode_id), user), now_ms()).values(
        *OUTPUT_FIELDS, "embedding").first()
    if row is None:
        raise NotFound(f"episode {episode_id} not found")
    return episode_json(row, embedding=row["embedding"], embedding_format=embedding_format)


def episodes_list(*, tenant: Tenant, filters: Filters, limit: int, cursor: str | None = None,
                  include_embedding: bool = False, user: str | None = None,
                  embedding_format: str = "float") -> dict[str, Any]:
    """One page, newest first, by keyset on (timestamp, seq) straight from the database.

    (timestamp, seq) is unique per tenant and never changes for a stored episode, so pages never
    overlap, and an episode that exists for the whole walk sits at one fixed place in the order:
    whatever others store or delete meanwhile, it is on exactly one page. A bound `user` lists only
    their episodes, with cursors bound to them."""
    filters = narrowed(filters, user)
    rows = matching(live(Episode.objects.filter(tenant=tenant), now_ms()), filters)
    if cursor:
        timestamp, seq = read_cursor(cursor, tenant_slug=tenant.slug, flt=filters, user=user)
        # The redundant bound lets the (tenant, timestamp, seq) index start the scan at the cursor.
        rows = rows.filter(Q(timestamp__lt=timestamp) | Q(timestamp=timestamp, seq__lt=seq),
                           timestamp__lte=timestamp)
    fields = (*OUTPUT_FIELDS, "embedding") if include_embedding else OUTPUT_FIELDS
    page = list(rows.order_by("-timestamp", "-seq").values(*fields)[: limit + 1])
    next_cursor = None
    if len(page) > limit:
        page = page[:limit]
        last = page[-1]
        next_cursor = make_cursor(tenant_slug=tenant.slug, flt=filters, timestamp=last["timestamp"],
                                  seq=last["seq"], user=user)
    return {
        "episodes": [episode_json(r, embedding=r["embedding"] if include_embedding else None,
                                  embedding_format=embedding_format) for r in page],
        "next_cursor": next_cursor,
    }


@dataclass(frozen=True)
class Ranking:
    """How a query ranks (docs/api.md §4): the mode and what it needs. `query_embedding` may be
    filled by the caller (e.g. from query_text) before the query runs."""

    mode: str = "vector"
    query_embedding: np.ndarray | None = None
    query_text: str | None = None
    rrf_k: int = spec.DEFAULT_RRF_K
    vector_weight: float = 1.0
    keyword_weight: float = 1.0

    @property
    def needs_embedder(self) -> bool:
        """The query's vector is to come from query_text, through the tenant's embedder."""
        return self.mode != "keyword" and self.query_embedding is None


def _ranked(index: TenantIndex, ranking: Ranking, top_k: int, filters: Filters,
            at: int) -> tuple[list[str], list[float], list[dict[str, Any]] | None]:
    """Ids, scores and (hybrid) each part's rank of the top_k, from the worker's index."""
    if ranking.mode == "vector":
        ids, scores = index.search(ranking.query_embedding, top_k, filters, at)
        return ids, scores.tolist(), None
    if ranking.mode == "keyword":
        hits = keyword_search(index, ranking.query_text, top_k, filters, at)
        return index.ids_at(hits.rows), hits.scores.tolist(), None
    hits = hybrid_search(index, ranking.query_embedding, ranking.query_text, top_k, filters, at,
                         rrf_k=float(ranking.rrf_k), vector_weight=ranking.vector_weight,
                         keyword_weight=ranking.keyword_weight)
    ranks = [{"vector_rank": int(v), "keyword_rank": int(k) or None}
             for v, k in zip(hits.vector_rank.tolist(), hits.keyword_rank.tolist(), strict=True)]
    return index.ids_at(hits.rows), hits.scores.tolist(), ranks


def episodes_query(*, tenant: Tenant, state: TenantState | None, query_embedding: np.ndarray | None = None,
                   top_k: int, filters: Filters, include_embedding: bool = False, key_prefix: str | None = None,
                   ranking: Ranking | None = None, user: str | None = None, embedding_format: str = "float",
                   key_check: key_memo.Verified | None = None) -> list[dict[str, Any]]:
    """Exact filtered top-k from the worker's index (by vector, keyword or both: `ranking`; a bare
    query_embedding is a vector query), then the winners' fields from the database. A bound `user`
    is one more exact filter of the index (user_id), so the top k are all theirs.

    With `key_check` (a key this worker verified lately, tenants/key_memo.py), `state` is None, not
    read yet: the search runs on the index as the worker holds it, and the winners' statement checks
    the key and reads the tenant's counters; where the index was behind them, the next round catches
    it up and searches again. key_memo.Unconfirmed, raised before anything is answered or counted,
    says the key or tenant did not check out (or the worker holds no index of the tenant yet)."""
    ranking = ranking or Ranking(query_embedding=query_embedding)
    filters = narrowed(filters, user)
    if ranking.needs_embedder:
        ranking = dataclasses.replace(ranking, query_embedding=text_vector(tenant=tenant, text=ranking.query_text))
    at = now_ms()
    shape = {"include_embedding": include_embedding, "embedding_format": embedding_format}
    for _ in range(MAX_RACE_RETRIES):
        cached = cache.current(tenant, state) if key_check is None else cache.peek(tenant.pk)
        if cached is None:
            raise key_memo.Unconfirmed("no index of this tenant in the worker yet")
        with cached.lock:
            ids, scores, ranks = _ranked(cached.index, ranking, top_k, filters, at)
            searched = (cached.generation, cached.version)
        if key_check is None:
            rows = _winners(tenant_pk=tenant.pk, ids=ids, **shape)
        else:
            rows, state = _winners_checking_key(key_check, ids=ids, **shape)
            key_check = None  # checked and counted: another round is an ordinary one
            if searched != (state.generation, state.version):
                continue  # the index was behind the counters the check read
        if len(rows) == len(ids):
            break
        # A concurrent delete removed a winner between catch-up and fetch: look again at the newer state.
        state = TenantState.objects.get(pk=tenant.pk)
    hits = []
    for i, (episode_id, score) in enumerate(zip(ids, scores, strict=True)):
        hit = rows.get(episode_id)
        if hit is not None:
            hit["score"] = score
            if ranks is not None:
                hit.update(ranks[i])
            hits.append(hit)
    audit("query", tenant_id=tenant.slug, key_prefix=key_prefix, episode_count=len(hits), user_id=user)
    return hits


# The winners' fields, fetched with one statement written once and prepared (memcloud/db.py): the
# ORM would compile the query and decode every JSON column on each request. JSON columns come back
# as text and are spliced into the answer unparsed (orjson.Fragment): a large `steps` costs a copy,
# not a parse and a dump.
_JSON_FIELDS = ("metadata", "tags", "steps")
_WINNER_FIELDS = tuple(f for f in OUTPUT_FIELDS if f != "seq")


@lru_cache(maxsize=4096)
def _winners_sql(vendor: str, count: int, include_embedding: bool) -> str:
    """`count` matters only where ids are spelled out one placeholder each (not PostgreSQL)."""
    q = connection.ops.quote_name
    # On PostgreSQL the id and the JSON columns come back as text: no uuid.UUID to build per row,
    # no JSON to parse.
    as_text = {"id", *_JSON_FIELDS} if vendor == "postgresql" else set()
    columns = [f"{q(c)}::text" if c in as_text else q(c) for c in _WINNER_FIELDS]
    if include_embedding:
        columns.append(q("embedding"))
    table = q(Episode._meta.db_table)
    # PostgreSQL takes the ids as one uuid[] parameter (one prepared statement for every k), sent
    # as one array literal: a list would make psycopg build and dump a uuid.UUID per id.
    ids = "= ANY(%s::uuid[])" if vendor == "postgresql" else f"IN ({', '.join(['%s'] * count)})"
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {q('tenant_id')} = %s AND {q('id')} {ids}"


def _fetch_counting_usage(sql: str, params: list, tenant_pk: int) -> list[tuple]:
    """The rows of `sql`, with this request's usage counted by the same statement where it can be
    (one round trip fewer per query); a failure of the usage part never fails the query."""
    combined = usage.with_usage(sql, params, tenant_id=tenant_pk)
    if combined is None:
        return db.fetch_all(sql, params)
    try:
        with db.contained():
            rows = db.fetch_all(*combined)
    except DatabaseError as exc:
        usage.warn_not_recorded(exc)
        return db.fetch_all(sql, params)
    usage.counted_as_query()
    return rows


def _winner_fields(row: tuple, *, postgres: bool, include_embedding: bool,
                   embedding_format: str = "float") -> dict[str, Any]:
    # The columns are the answer's fields, in its order (OUTPUT_FIELDS less seq), then the embedding.
    fields = dict(zip(_WINNER_FIELDS, row, strict=False))
    if not postgres:
        fields["id"] = uuid_str(fields["id"])
    for name in _JSON_FIELDS:
        if fields[name] is not None:
            fields[name] = orjson.Fragment(fields[name])
    if include_embedding:
        fields["state_embedding"] = embedding_json(row[len(_WINNER_FIELDS)], embedding_format)
    return fields


def _winners_statement(tenant_pk: int, ids: list[str], include_embedding: bool) -> tuple[str | None, list]:
    """The statement fetching the winners' fields and its parameters; None when there are no ids."""
    if not ids:
        return None, []
    vendor = connection.vendor
    if vendor == "postgresql":
        return _winners_sql(vendor, 0, include_embedding), [tenant_pk, _uuid_array(ids)]
    # Where there is no uuid type, Django stores a UUIDField as 32 hex digits.
    return _winners_sql(vendor, len(ids), include_embedding), [tenant_pk, *(uuid.UUID(i).hex for i in ids)]


def _by_id(found: list[tuple], *, include_embedding: bool, embedding_format: str) -> dict[str, dict[str, Any]]:
    postgres = connection.vendor == "postgresql"
    out = {}
    for row in found:
        fields = _winner_fields(row, postgres=postgres, include_embedding=include_embedding,
                                embedding_format=embedding_format)
        out[fields["id"]] = fields
    return out


def _winners(*, tenant_pk: int, ids: list[str], include_embedding: bool,
             embedding_format: str = "float") -> dict[str, dict[str, Any]]:
    """The answer's fields of each of `ids` that still exists, keyed by id (str)."""
    sql, params = _winners_statement(tenant_pk, ids, include_embedding)
    found = [] if sql is None else _fetch_counting_usage(sql, params, tenant_pk)
    return _by_id(found, include_embedding=include_embedding, embedding_format=embedding_format)


def _winners_checking_key(check: key_memo.Verified, *, ids: list[str], include_embedding: bool,
                          embedding_format: str = "float") -> tuple[dict[str, dict[str, Any]], TenantState]:
    """_winners(), read by the statement that checks the key again (key_memo.checked), and the
    tenant's counters that statement read."""
    sql, params = _winners_statement(check.tenant.pk, ids, include_embedding)
    state, found = key_memo.checked(check, sql, params)
    return _by_id(found, include_embedding=include_embedding, embedding_format=embedding_format), state


def _uuid_array(ids: list[str]) -> str:
    """One uuid[] literal: the index's ids are canonical UUID strings, nothing in them to escape."""
    return "{" + ",".join(ids) + "}"


def tenant_stats(*, tenant: Tenant, user: str | None = None) -> dict[str, Any]:
    """The tenant's settings and its live episodes; for a bound `user`, their live episodes only
    (a count of their rows: the tenant's stored counter counts everyone's)."""
    rate_limit = tenant.rate_limit or settings.AGENT_MEM_RATE_LIMIT
    episodes = (live_count(tenant=tenant) if user is None
                else live(Episode.objects.filter(tenant=tenant, user_id=user), now_ms()).count())
    return {
        "tenant": tenant.slug,
        "dim": tenant.dim,
        "metric": tenant.metric,
        "episodes": episodes,
        "rate_limit": rate_limit,
        "max_episodes": tenant.max_episodes,
        "embedder": tenant.embedder or None,
    }


@lru_cache(maxsize=1)
def _live_count_sql() -> str:
    q = connection.ops.quote_name
    return (f"SELECT {q('episode_count')} - (SELECT COUNT(*) FROM {q(Episode._meta.db_table)} "
            f"WHERE {q('tenant_id')} = %s AND {q('expires_at')} <= %s) "
            f"FROM {q(TenantState._meta.db_table)} WHERE {q('tenant_id')} = %s")


def live_count(*, tenant: Tenant) -> int:
    """Episodes that have not expired: the stored count less those expired but not yet swept (on
    the expiry index, not a count of every episode), both read by one statement, so consistently."""
    row = db.fetch_one(_live_count_sql(), [tenant.pk, now_ms(), tenant.pk])
    if row is None:  # no state row yet
        return live(Episode.objects.filter(tenant=tenant), now_ms()).count()
    return int(row[0])
