"""LangGraph's matching rules, applied on the client: value filters and namespace conditions.

Filters compare the way LangGraph's stores do: `{"field": v}` is equality (nested objects and
lists compare part by part), `{"field": {"$op": v}}` applies $eq, $ne, $gt, $gte, $lt, $lte. An
ordering operator on a value that is not a number never matches (LangGraph's in-memory store
raises there; its PostgreSQL store does not match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import MatchCondition

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")


def value_matches(value: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    return not flt or all(_compare(value.get(key), wanted) for key, wanted in flt.items())


def _compare(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_operator(actual, op, operand) for op, operand in wanted.items())
        return isinstance(actual, dict) and all(_compare(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list | tuple):
        return (isinstance(actual, list | tuple) and len(actual) == len(wanted)
                and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True)))
    return actual == wanted


def _operator(actual: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return actual == operand
    if op == "$ne":
        return actual != operand
    if op not in OPERATORS:
        raise ValueError(f"unsupported filter operator {op!r}: use one of {', '.join(OPERATORS)}")
    try:
        a, b = float(actual), float(operand)
    except (TypeError, ValueError):
        return False
    return {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]


def namespace_matches(namespace: tuple[str, ...], conditions: Sequence[MatchCondition] | None) -> bool:
    """A namespace passes every condition; a label `*` in a condition matches any one label."""
    for condition in conditions or ():
        path = tuple(condition.path)
        if len(namespace) < len(path):
            return False
        if condition.match_type == "prefix":
            pairs = zip(namespace, path, strict=False)
        elif condition.match_type == "suffix":
            pairs = zip(reversed(namespace), reversed(path), strict=False)
        else:
            raise ValueError(f"unsupported match type {condition.match_type!r}")
        if any(p != "*" and label != p for label, p in pairs):
            return False
    return True


def literal_prefix(conditions: Sequence[MatchCondition] | None) -> tuple[str, ...]:
    """The labels every matching namespace starts with: a prefix condition's, up to its first `*`."""
    for condition in conditions or ():
        if condition.match_type == "prefix":
            path = tuple(condition.path)
            return path[: path.index("*")] if "*" in path else path
    return ()
