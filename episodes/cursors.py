"""Opaque, signed list cursors (docs/api.md §8).

A cursor carries the last episode's keyset position (timestamp, seq) and is bound to the tenant,
to the filter set it was issued for and to the bound user of a user-bound key or token: a forged
one, another tenant's or user's, or one replayed with other filters is a 400, never a peek at
someone else's position.
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson
from django.core import signing

from core.errors import InvalidInput
from memindex.columns import Filters

SALT = "memcloud.episodes.list-cursor"


def filter_digest(flt: Filters, user: str | None = None) -> str:
    canon = dataclasses.asdict(flt)
    if user is not None:  # absent for a tenant-wide key: its cursors stay as they were
        canon["bound_user"] = user
    canon["tags_any"] = sorted(flt.tags_any)  # tags are sets
    canon["tags_all"] = sorted(flt.tags_all)
    return hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def make_cursor(*, tenant_slug: str, flt: Filters, timestamp: int, seq: int, user: str | None = None) -> str:
    return signing.dumps([tenant_slug, filter_digest(flt, user), timestamp, seq], salt=SALT)


def read_cursor(raw: str, *, tenant_slug: str, flt: Filters, user: str | None = None) -> tuple[int, int]:
    """The (timestamp, seq) position after which the next page starts."""
    try:
        slug, digest, timestamp, seq = signing.loads(raw, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidInput("cursor: not a cursor this service issued") from None
    if slug != tenant_slug:
        raise InvalidInput("cursor: issued to another tenant")
    if digest != filter_digest(flt, user):
        raise InvalidInput("cursor: issued for other filters: repeat the same filters on every page")
    if not (isinstance(timestamp, int) and isinstance(seq, int)):
        raise InvalidInput("cursor: not a cursor this service issued")
    return timestamp, seq
