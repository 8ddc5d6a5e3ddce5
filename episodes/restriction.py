"""The one place a user-bound key or token is confined to its end user (docs/api.md §2).

Every selector and service takes `user`: None for a tenant-wide key, else the user id of the key
or token. Reads and removals narrow to that user's episodes, filters naming another user are
refused, and writes are stamped with the user. The views only pass `user` along."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from django.db.models import QuerySet

from core.errors import Forbidden
from memindex.columns import Filters


def refused(field: str) -> Forbidden:
    return Forbidden(f"{field}: this key or token is bound to one user and cannot name another")


def own(queryset: QuerySet, user: str | None) -> QuerySet:
    """`queryset` narrowed to the bound user's episodes (unchanged for a tenant-wide key)."""
    return queryset if user is None else queryset.filter(user_id=user)


def narrowed(flt: Filters, user: str | None, *, field: str = "user_id") -> Filters:
    """The filters with user_id set to the bound user; a filter naming another user is a 403."""
    if user is None:
        return flt
    if flt.user_id is not None and flt.user_id != user:
        raise refused(field)
    return dataclasses.replace(flt, user_id=user)


def stamped(episodes: Sequence[dict], user: str | None) -> Sequence[dict]:
    """New episodes with user_id set to the bound user; one naming another user is a 403."""
    if user is None:
        return episodes
    out = []
    for index, episode in enumerate(episodes):
        given = episode.get("user_id")
        if given is not None and given != user:
            raise refused(f"episodes[{index}].user_id" if len(episodes) > 1 else "user_id")
        out.append(episode if given == user else {**episode, "user_id": user})
    return out


def patchable(changes: dict, user: str | None) -> None:
    """A PATCH by a bound user cannot move the episode to another user (or to none)."""
    if user is not None and "user_id" in changes and changes["user_id"] != user:
        raise refused("user_id")
