"""Every index on the per-row tables earns its writes: none repeats the leading columns of another
(each store of a row updates every index of its table)."""

from __future__ import annotations

import pytest
from django.db import connection

from episodes.models import Episode, Tombstone

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [Episode, Tombstone])
def test_no_index_is_a_prefix_of_another(model):
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    indexes = {name: tuple(c["columns"]) for name, c in found.items()
               if c["index"] or c["unique"] or c["primary_key"]}
    repeated = [(a, b) for a, cols in indexes.items() for b, other in indexes.items()
                if a != b and not found[a]["unique"] and not found[a]["primary_key"]
                and other[: len(cols)] == cols]
    assert not repeated, repeated


def test_every_episode_index_starts_with_the_tenant():
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, Episode._meta.db_table)
    leading = {c["columns"][0] for c in found.values() if (c["index"] or c["unique"]) and not c["primary_key"]}
    assert leading == {"tenant_id"}
