"""Strict DRF fields for docs/api.md §9: JSON types exactly, no silent coercion of "5" or true."""

from __future__ import annotations

import binascii
import math
import re
from typing import Any

import numpy as np
import orjson
from rest_framework import serializers

# An escaped U+0000 in encoded JSON: "\u0000" after an even number of backslashes.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class StrictIntegerField(serializers.IntegerField):
    """Integral JSON numbers (5 or 5.0); strings, booleans and fractions are refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        if isinstance(data, float):
            if not math.isfinite(data) or not data.is_integer():
                self.fail("invalid")
            data = int(data)
        return int(data)


class StrictFloatField(serializers.FloatField):
    """A finite JSON number (float64), not a string or a boolean."""

    default_error_messages = {"invalid": "must be a finite number"}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        try:
            value = float(data)
        except OverflowError:
            self.fail("invalid")
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF's CharField would turn 5 into "5"); `max_bytes`: at most that many
    bytes as UTF-8."""

    default_error_messages = {"invalid": "must be a string"}

    def __init__(self, *, max_bytes: int | None = None, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if "\x00" in data:
            raise serializers.ValidationError("must not contain NUL characters")
        value = super().to_internal_value(data)
        if self.max_bytes is not None and len(value.encode("utf-8", "surrogatepass")) > self.max_bytes:
            raise serializers.ValidationError(f"at most {self.max_bytes} bytes as UTF-8")
        return value


class TagsField(serializers.Field):
    """A set of tags: a list of 1 to max_length character strings, duplicates dropped, first order kept."""

    def __init__(self, *, max_tags: int, max_length: int, **kwargs: Any) -> None:
        self.max_tags, self.max_length = max_tags, max_length
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[str]:
        if not isinstance(data, list):
            raise serializers.ValidationError("must be a list of strings")
        tags = list(dict.fromkeys(data)) if all(isinstance(t, str) for t in data) else None
        if tags is None:
            raise serializers.ValidationError("must be a list of strings")
        if len(tags) > self.max_tags:
            raise serializers.ValidationError(f"at most {self.max_tags} tags")
        for tag in tags:
            if not 1 <= len(tag) <= self.max_length:
                raise serializers.ValidationError(f"each tag must be 1 to {self.max_length} characters")
            if "\x00" in tag:
                raise serializers.ValidationError("tags must not contain NUL characters")
        return tags

    def to_representation(self, value: Any) -> list[str]:
        return list(value)


class JSONSizedField(serializers.Field):
    """Any JSON value of the given kind, at most `max_bytes` once encoded."""

    def __init__(self, *, max_bytes: int, kind: type | tuple[type, ...], kind_name: str, **kwargs: Any):
        self.max_bytes, self.kind, self.kind_name = max_bytes, kind, kind_name
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, self.kind):
            raise serializers.ValidationError(f"must be {self.kind_name}")
        try:
            encoded = orjson.dumps(data)
        except (TypeError, orjson.JSONEncodeError) as exc:  # e.g. nesting deeper than orjson allows
            raise serializers.ValidationError(f"cannot be encoded: {exc}") from None
        if len(encoded) > self.max_bytes:
            raise serializers.ValidationError(f"at most {self.max_bytes} bytes as JSON")
        if b"\\u0000" in encoded and _JSON_NUL.search(encoded):
            # PostgreSQL's jsonb cannot hold U+0000: refuse it here rather than fail in the database.
            raise serializers.ValidationError("must not contain NUL characters (\\u0000)")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


_NUMBER_TYPES = {int, float}


class StrictChoiceField(serializers.ChoiceField):
    """One of the given strings, as a JSON string (DRF's ChoiceField would match 5 to "5")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


def base64_floats(value: str, *, dim: int) -> np.ndarray | None:
    """`value` decoded as `dim` little-endian float32 (standard base64, padding included), or None
    when it is not exactly that. binascii decodes in C: no Python loop over the numbers."""
    if len(value) != 4 * ((4 * dim + 2) // 3):
        return None
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        return None
    return np.frombuffer(raw, dtype="<f4").astype(np.float32) if len(raw) == 4 * dim else None


def embedding_base64(value: str, *, dim: int) -> np.ndarray:
    """A base64 embedding (docs/api.md §3) as float32, or a 400 saying what is wrong with it."""
    vector = base64_floats(value, dim=dim)
    if vector is not None:
        return vector
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise serializers.ValidationError("must be an array of numbers or base64 of little-endian float32 "
                                          "(the base64 is malformed)") from None
    raise serializers.ValidationError(f"base64 must hold exactly {dim} float32 ({4 * dim} bytes, the tenant's "
                                      f"dim), got {len(raw)} bytes")


def embedding_array(value: Any, *, dim: int, nonzero: bool) -> np.ndarray:
    """Validate an embedding with numpy (docs/design.md: never element by element in Python)."""
    if isinstance(value, str):
        return _checked(embedding_base64(value, dim=dim), nonzero=nonzero)
    if not isinstance(value, list):
        raise serializers.ValidationError("must be an array of numbers or a base64 string")
    if len(value) != dim:
        raise serializers.ValidationError(f"must have exactly {dim} numbers (the tenant's dim), got {len(value)}")
    if not set(map(type, value)) <= _NUMBER_TYPES:  # C-speed scan; numpy would read true as 1
        raise serializers.ValidationError("must be an array of numbers")
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        raise serializers.ValidationError("must be an array of numbers") from None
    if raw.ndim != 1 or raw.dtype.kind not in "fiu":
        raise serializers.ValidationError("must be an array of numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        vector = raw.astype(np.float32)
    return _checked(vector, nonzero=nonzero)


def _checked(vector: np.ndarray, *, nonzero: bool) -> np.ndarray:
    """The float32 rules of docs/api.md §9.2: every number finite, the squared norm too, and not
    all zero for a cosine tenant."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(vector).all():
            raise serializers.ValidationError("every number must be finite as float32")
        if not np.isfinite(np.dot(vector, vector)):
            raise serializers.ValidationError("numbers too large: the squared norm overflows float32")
    if nonzero and not vector.any():
        raise serializers.ValidationError("must not be all zeros (cosine similarity is undefined)")
    return vector
