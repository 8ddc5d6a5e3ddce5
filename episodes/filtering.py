"""The query filters (docs/api.md §4) as SQL, for listing and delete-by-filter.

Same meaning as the index's mask (memindex/columns.py): tags as JSON arrays, `task_id_prefix` case-sensitive
on every backend (SQLite's LIKE is not), expiry by the caller's clock.
"""

from __future__ import annotations

import orjson
from django.db.models import JSONField, Lookup, Q, QuerySet, Value
from django.db.models.functions import Left
from django.db.models.lookups import Exact

from memindex.columns import Filters


@JSONField.register_lookup
class HasTag(Lookup):
    """`tags__has_tag="x"`: the JSON array holds the string "x"."""

    lookup_name = "has_tag"
    prepare_rhs = False

    def as_sql(self, compiler, connection):  # SQLite (and any backend with json_each)
        lhs, params = self.process_lhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE json_each.value = %s)", [*params, self.rhs]

    def as_postgresql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"({lhs} @> %s::jsonb)", [*params, orjson.dumps([self.rhs]).decode()]


def not_expired(at_ms: int) -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=at_ms)


def is_empty(flt: Filters) -> bool:
    return flt == Filters()


def matching(queryset: QuerySet, flt: Filters) -> QuerySet:
    """`queryset` narrowed to the episodes that match every filter (AND)."""
    if flt.min_reward is not None:
        queryset = queryset.filter(reward__gte=flt.min_reward)
    if flt.time_after is not None:
        queryset = queryset.filter(timestamp__gte=flt.time_after)
    if flt.time_before is not None:
        queryset = queryset.filter(timestamp__lte=flt.time_before)
    if flt.source is not None:
        queryset = queryset.filter(source=flt.source)
    if flt.user_id is not None:
        queryset = queryset.filter(user_id=flt.user_id)
    if flt.task_id_prefix:
        queryset = queryset.filter(Exact(Left("task_id", len(flt.task_id_prefix)), Value(flt.task_id_prefix)))
    if flt.tags_any:
        any_tag = Q()
        for tag in flt.tags_any:
            any_tag |= Q(tags__has_tag=tag)
        queryset = queryset.filter(any_tag)
    for tag in flt.tags_all:
        queryset = queryset.filter(tags__has_tag=tag)
    return queryset
