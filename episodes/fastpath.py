"""The store fast path: episode bodies validated column-wise from the spec tables
(episodes/spec.py), without DRF field objects.

docs/design.md: building DRF's field machinery for each of a batch's episodes cost more than
parsing and storing them. This module accepts only what the serializer built from the same table
accepts and returns exactly what it returns; whenever an item is invalid (or merely unusual: a
duplicate id, huge numbers) it answers None and the caller runs the serializer, which raises the
error naming the field (or accepts). So every error message comes from the serializer, and this
module never words one. The embeddings of a whole batch are converted and checked by numpy at once.
"""

from __future__ import annotations

import binascii
import dataclasses
import math
import re
import uuid
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pybase64
from rest_framework.exceptions import ValidationError

from . import spec
from .fields import _JSON_NUL, base64_floats

_SURROGATE = re.compile("[\ud800-\udfff]")
_EXACT_INT = 2.0**53  # below this every integer is exact in float64, so int -> float32 rounds once
_SAFE_SQUARED_NORM = 1e36  # far below float32's max: no partial sum of the dot product can overflow
_MISSING = object()
_REFUSE = object()  # "let the serializer decide"


def _text(value: Any, field: spec.Field) -> Any:
    """StrictCharField: a non-empty string without NUL or lone surrogates, at most max_length
    characters and max_bytes bytes as UTF-8."""
    if type(value) is not str or not value or "\x00" in value:
        return _REFUSE
    if field.max_length is not None and len(value) > field.max_length:
        return _REFUSE
    if not value.isascii() and _SURROGATE.search(value) is not None:
        return _REFUSE
    if field.max_bytes is not None and len(value) * 4 > field.max_bytes and len(value.encode()) > field.max_bytes:
        return _REFUSE
    return value


def _choice(value: Any, field: spec.Field) -> Any:
    return value if type(value) is str and value in field.choices else _REFUSE


def _integer(value: Any, field: spec.Field) -> Any:
    """StrictIntegerField: an integral number (5 or 5.0, not true) within minimum..maximum."""
    if type(value) is float:
        if not (math.isfinite(value) and value.is_integer()):
            return _REFUSE
        value = int(value)
    elif type(value) is not int:
        return _REFUSE
    if (field.minimum is not None and value < field.minimum) or (field.maximum is not None and value > field.maximum):
        return _REFUSE
    return value


def _number(value: Any, field: spec.Field) -> Any:
    """StrictFloatField: a finite number as float64 (not a boolean)."""
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            return _REFUSE
    return value if type(value) is float and math.isfinite(value) else _REFUSE


def _boolean(value: Any, field: spec.Field) -> Any:
    return value if type(value) is bool else _REFUSE


def _uuid(value: Any, field: spec.Field) -> Any:
    if type(value) is not str:
        return _REFUSE
    try:
        return uuid.UUID(value)
    except ValueError:
        return _REFUSE


def _tags(value: Any, field: spec.Field) -> Any:
    """TagsField: duplicates dropped, first order kept."""
    if type(value) is not list or not all(type(t) is str for t in value):
        return _REFUSE
    tags = list(dict.fromkeys(value))
    if len(tags) > field.max_items or not all(0 < len(t) <= field.max_length and "\x00" not in t for t in tags):
        return _REFUSE
    return tags


def _json(kind: type) -> Callable[[Any, spec.Field], Any]:
    """JSONSizedField of `kind`: returned unchanged if it encodes within max_bytes, without NUL."""

    def check(value: Any, field: spec.Field) -> Any:
        if type(value) is not kind:
            return _REFUSE
        try:
            encoded = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            return _REFUSE
        if len(encoded) > field.max_bytes or (b"\\u0000" in encoded and _JSON_NUL.search(encoded)):
            return _REFUSE
        return value

    return check


_CHECKS: dict[str, Callable[[Any, spec.Field], Any]] = {
    "text": _text, "integer": _integer, "number": _number, "boolean": _boolean, "uuid": _uuid, "tags": _tags,
    "object": _json(dict), "array": _json(list), "choice": _choice,
}


# How to read items of one key order: (name, field, check) per field of the table, in its order;
# a field the items leave out but that has a default is (name, default, None).
Plan = tuple[tuple[str, Any, Callable[[Any, spec.Field], Any] | None], ...]


def _plan(keys: tuple, table: dict[str, spec.Field], dim: int) -> Plan | None:
    """How to read an item with these keys (None: the serializer must decide). A batch's items
    usually share their keys, so each batch works this out once, not once an item."""
    if not set(keys) <= table.keys():
        return None
    steps: list[tuple[str, Any, Callable[[Any, spec.Field], Any] | None]] = []
    for name, field in table.items():
        if name in keys:
            check = _embedding_shape(dim) if field.kind == "embedding" else _CHECKS[field.kind]
            if field.kind == "tags":
                check = _remembering(check)
            steps.append((name, field, check))
        elif field.required:
            return None
        elif field.default is not spec.NO_DEFAULT:
            steps.append((name, field.default, None))
    return tuple(steps)


def _embedding_shape(dim: int) -> Callable[[Any, spec.Field], Any]:
    """Only the shape: the embeddings of a whole batch are converted and checked at once."""
    def check(value: Any, field: spec.Field) -> Any:
        return value if (type(value) is list and len(value) == dim) or type(value) is str else _REFUSE

    return check


def _remembering(check: Callable[[Any, spec.Field], Any]) -> Callable[[Any, spec.Field], Any]:
    """_tags, skipping the checks of tags already passed in this batch (a batch repeats its tags).
    Only strings get remembered, and no string equals a number, so a set of them decides."""
    good: set[str] = set()

    def remembered(value: Any, field: spec.Field) -> Any:
        if type(value) is list:
            try:
                distinct = set(value)
            except TypeError:  # an unhashable tag: not a string
                return _REFUSE
            if distinct <= good and len(distinct) <= field.max_items:
                return list(value) if len(distinct) == len(value) else list(dict.fromkeys(value))
        tags = check(value, field)
        if tags is not _REFUSE:
            good.update(tags)
        return tags

    return remembered


def _fields(item: Any, table: dict[str, spec.Field], dim: int, plans: dict[tuple, Plan | None]) -> dict | None:
    """Every field of `table` as its serializer returns it, in the table's order (an embedding is
    only checked for shape here and left as the raw list or base64 string), or None if the
    serializer must decide. `plans`: the plans of the key orders seen so far in this request."""
    if type(item) is not dict:
        return None
    keys = tuple(item)
    plan = plans.get(keys, _MISSING)
    if plan is _MISSING:
        plan = plans[keys] = _plan(keys, table, dim)
    if plan is None:
        return None
    out: dict[str, Any] = {}
    for name, field, check in plan:
        if check is None:  # left out: the default
            out[name] = field
            continue
        value = item[name]
        if value is None:
            if not field.nullable:
                return None
        else:
            value = check(value, field)
            if value is _REFUSE:
                return None
        out[name] = value
    return out


def _embeddings(rows: list[list | str], dim: int, nonzero: bool) -> np.ndarray | None:
    """The rows (arrays of numbers or base64 strings) as one float32 matrix, exactly as
    fields.embedding_array converts each, or None."""
    binary = [i for i, row in enumerate(rows) if type(row) is str]
    if not binary:
        return _checked(_from_numbers(rows), nonzero)
    if len(binary) == len(rows):  # the SDK's case: one copy for the whole batch
        raw = _decoded(rows, dim)
        if raw is None:
            return None
        return _checked(np.frombuffer(raw, dtype="<f4").reshape(len(rows), dim).astype(np.float32), nonzero)
    matrix = np.empty((len(rows), dim), np.float32)
    for i in binary:
        vector = base64_floats(rows[i], dim=dim)
        if vector is None:
            return None
        matrix[i] = vector
    binary_set = set(binary)
    numbers = [i for i in range(len(rows)) if i not in binary_set]
    part = _from_numbers([rows[i] for i in numbers])
    if part is None:
        return None
    matrix[numbers] = part
    return _checked(matrix, nonzero)


def _decoded(rows: list[str], dim: int) -> bytes | None:
    """The float32 bytes of every row end to end, each decoded as fields.base64_floats decodes it,
    or None. When 4 * dim is a multiple of 3 no row carries padding, so the rows joined are the
    base64 of their bytes joined: one SIMD decode (pybase64, which refuses whatever binascii's strict
    mode refuses) instead of one binascii call a row, several times slower."""
    if set(map(len, rows)) != {4 * ((4 * dim + 2) // 3)}:
        return None
    try:
        if 4 * dim % 3 == 0:
            raw = pybase64.b64decode("".join(rows), validate=True)
            return raw if len(raw) == 4 * dim * len(rows) else None
        parts = [binascii.a2b_base64(row, strict_mode=True) for row in rows]
    except ValueError:  # binascii.Error is one; non-ASCII text too
        return None
    return b"".join(parts) if set(map(len, parts)) == {4 * dim} else None


def _from_numbers(rows: list[list]) -> np.ndarray | None:
    """Arrays of numbers as one float32 matrix, as fields.embedding_array converts each, or None."""
    try:
        wide = np.asarray(rows)  # float64, or int64 when every number is an integer
    except (ValueError, TypeError, OverflowError):
        return None
    if wide.dtype not in (np.float64, np.int64) or wide.ndim != 2:  # strings, null, nested lists...
        return None
    # numpy reads true and false as 1 and 0: only rows holding a 0 or a 1 need their types checked.
    suspects = np.flatnonzero(((wide == 0) | (wide == 1)).any(axis=1))
    if suspects.size and not set(map(type, chain.from_iterable(rows[i] for i in suspects))) <= {float, int}:
        return None
    if not ((wide > -_EXACT_INT) & (wide < _EXACT_INT)).all():  # such an integer may round differently alone
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return wide.astype(np.float32)


def _checked(matrix: np.ndarray | None, nonzero: bool) -> np.ndarray | None:
    """`matrix` if every row passes fields._checked, else None."""
    if matrix is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(matrix).all():
            return None
        if not (np.einsum("ij,ij->i", matrix, matrix) < _SAFE_SQUARED_NORM).all():
            return None
    if nonzero and not matrix.any(axis=1).all():
        return None
    return matrix


def fast_episodes(items: list, *, dim: int, nonzero: bool, check: Callable[[dict], None]) -> list[dict] | None:
    """Each item as EpisodeInput(context={"tenant": t}).run_validation(item) returns it, or None
    when any item is invalid, any id repeats, or anything is unusual enough to need the serializer.
    `check` is the serializer's rule between fields: it raises on an item the serializer refuses."""
    out, rows, seen, plans = [], [], set(), {}
    for item in items:
        episode = _fields(item, spec.EPISODE, dim, plans)
        if episode is None or "state_embedding" not in episode:  # text alone: the serializer's path
            return None
        try:
            check(episode)
        except ValidationError:  # the serializer words it
            return None
        if "id" in episode:
            if episode["id"] in seen:
                return None
            seen.add(episode["id"])
        out.append(episode)
        rows.append(episode["state_embedding"])
    matrix = _embeddings(rows, dim, nonzero) if rows else np.empty((0, dim), np.float32)
    if matrix is None:
        return None
    for episode, vector in zip(out, matrix, strict=True):
        episode["state_embedding"] = vector
    return out


def fast_query(data: Any, *, dim: int, nonzero: bool, max_top_k: int,
               check: Callable[[dict], None]) -> dict | None:
    """QueryInput(data=data, context={"tenant": t}).validated_data, or None to let it decide.
    `check` is the serializer's rule between fields."""
    table = _QUERY_TABLES.get(max_top_k)
    if table is None:
        top_k = dataclasses.replace(spec.QUERY["top_k"], maximum=max_top_k)  # the setting's maximum
        table = _QUERY_TABLES[max_top_k] = {**spec.FILTER, **spec.QUERY, "top_k": top_k}
    out = _fields(data, table, dim, {})
    if out is None:
        return None
    try:
        check(out)
    except ValidationError:  # the serializer words it
        return None
    if out.get("query_embedding") is not None:
        matrix = _embeddings([out["query_embedding"]], dim, nonzero)
        if matrix is None:
            return None
        out["query_embedding"] = matrix[0]
    return out


_QUERY_TABLES: dict[int, dict[str, spec.Field]] = {}
