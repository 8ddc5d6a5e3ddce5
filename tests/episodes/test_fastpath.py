"""The fast paths of store and query validation (episodes/fastpath.py) against the serializers they
stand in for: on every input each must either step aside (None) or return exactly what EpisodeInput
(or QueryInput) returns, and a batch must answer exactly what the item-by-item path answers."""

from __future__ import annotations

import math
import random
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from rest_framework.exceptions import ValidationError

from core.errors import first_message
from episodes.fastpath import fast_episodes, fast_query
from episodes.serializers import EpisodeBatchInput, EpisodeInput, QueryInput

DIM = 4
MISSING = object()
U = str(uuid.UUID(int=7))


def b64(*values: float, dtype: str = "<f4") -> str:
    import base64

    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


# Embeddings as base64 of little-endian float32 (docs/api.md §3), good and bad.
BASE64 = [b64(1.0, 0.5, -2.0, 0.25), b64(1e-45, -0.0, 0, 0), b64(0, -0.0, 0, 0), b64(1, 2, 3), b64(1, 2, 3, 4, 5),
          b64(float("nan"), 1, 1, 1), b64(float("inf"), 0, 0, 0), b64(3e38, 3e38, 0, 0), b64(1, 2, 3, 4, dtype="<f8"),
          b64(1, 2, 3, 4)[:-1], b64(1, 2, 3, 4)[:-2] + "!!", " " + b64(1, 2, 3, 4), b64(1, 2, 3, 4) + "==",
          "é" * 24, "", "AAAAAAAAAAAAAAAAAAAAAA=="]

CHOICES = {
    "id": [MISSING, U, U.upper(), U.replace("-", ""), "{" + U + "}", "urn:uuid:" + U, "not-a-uuid", "", None, 12,
           True],
    "task_id": ["t", "", "x" * 512, "x" * 513, 5, None, "a\x00b", "é", "\ud800", " ", MISSING, ["t"]],
    "state_embedding": [
        [1.0, 0.5, -2.0, 0.25], [1, 0, 0, 0], [1, 0.5, 0, 2], [0.0, 0.0, 0.0, 0.0], [-0.0, 0.0, 0, 0],
        [True, 1.0, 0.0, 0.0], ["1", 0.0, 0.0, 0.0], [None, 1.0, 1.0, 1.0], [[1.0], 1.0, 1.0, 1.0],
        [1.0, 2.0, 3.0], [1.0] * 5, [1e39, 0.0, 0.0, 0.0], [3e38, 3e38, 0.0, 0.0], [1e19, 1e19, 0.0, 1.0],
        [2**60 + 1, 0, 0, 0], [2**60 + 1, 0.5, 0, 0], [2**54 + 2**30 + 1, 0, 0, 0], [2**54 + 2**30 + 1, 1, 0, 0], [-2**63, 0, 0, 1], [-2**63, 1.0, 0, 0], [2**70, 1, 1, 1], [10**400, 1.0, 1, 1],
        [float("nan"), 1.0, 1.0, 1.0], [float("inf"), 1.0, 1.0, 1.0], [1e-45, 0.0, 0.0, 0.0],
        [1.0000000001, 3.14159265358979, 1e-30, 7e37], "1,2,3,4", None, MISSING, {"a": 1}, [], *BASE64,
    ],
    "text": [MISSING, None, "", "ERR_4700 failed", "x" * 16384, "x" * 16385, "é" * 8192, "é" * 8193, "日" * 5462,
             "日" * 5461 + "é", 5, ["t"], "a\x00", "\ud800"],
    "reward": [1.0, 1, -3, True, "1", None, 1e308, 10**400, float("inf"), float("nan"), MISSING, 2**80],
    "metadata": [MISSING, {}, {"a": 1}, [1], None, {"x": "y" * 70000}, {"a": "\x00"}, {"a": "\\u0000"}, "x"],
    "timestamp": [MISSING, 0, 5, 5.0, 5.5, -1, 2**63 - 1, 2**63, float(2**63), True, None, "5",
                  float("inf"), 1e20],
    "tags": [MISSING, [], ["a", "a", "b"], "a", [1], [""], None, [f"t{i}" for i in range(65)],
             ["t"] * 70 + ["u"], ["x" * 129], ["a\x00"], ["é", "\ud800"]],
    "source": [MISSING, None, "", "s", "s" * 256, "s" * 257, 3, "a\x00", "\udc00", "ü"],
    "user_id": [MISSING, None, "", "u", "u" * 257, False],
    "steps": [MISSING, None, [], [1, {"a": [2]}], {"a": 1}, "x", [0] * 400000, ["\x00"]],
    "expires_at": [MISSING, None, 5, -1, 5.0, True, 2**63, "5"],
    "ttl_secs": [MISSING, None, 1, 0, 60.0, 100 * 365 * 86400 + 1, True, 1.5],
    "rewrad": [MISSING] * 12 + [1.0],
}
VALID = {"task_id": "t", "state_embedding": [1.0, 0.5, -2.0, 0.25], "reward": 1.0}


def tenant(metric: str) -> SimpleNamespace:
    return SimpleNamespace(dim=DIM, metric=metric)


def random_item(rng: random.Random, wild: float) -> object:
    """A valid episode with each field, with probability `wild`, drawn from CHOICES."""
    if rng.random() < 0.01:
        return rng.choice([[], None, "x", 5])
    item = dict(VALID)
    for name, values in CHOICES.items():
        if rng.random() < wild:
            value = rng.choice(values)
            if value is MISSING:
                item.pop(name, None)
            else:
                item[name] = value
    return item


def slow(item: object, metric: str):
    """What EpisodeInput answers without its fast path."""
    one = EpisodeInput(context={"tenant": tenant(metric)})
    try:
        return super(EpisodeInput, one).run_validation(item)
    except ValidationError as exc:
        return ValidationError(first_message(exc.detail))


def same(fast: dict, reference: dict, embedding: str = "state_embedding") -> bool:
    """The same keys in the same order, values of the same types, embeddings to the bit."""
    if list(fast) != list(reference):
        return False
    for name, value in reference.items():
        got = fast[name]
        if name == embedding:
            if not (got.dtype == value.dtype == np.float32 and got.tobytes() == value.tobytes()):
                return False
        elif (type(got) is not type(value) or got != value) and not (isinstance(value, float) and math.isnan(value)):
            return False
    return True


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_every_field_value_alone_agrees_with_the_serializer(metric):
    for name, values in CHOICES.items():
        for value in values:
            item = {k: v for k, v in VALID.items() if k != name}
            if value is not MISSING:
                item[name] = value
            reference = slow(item, metric)
            fast = fast_episodes([item], dim=DIM, nonzero=metric == "cosine", check=EpisodeInput.cross_check)
            if isinstance(reference, ValidationError):
                assert fast is None, (name, value, reference)
            else:
                assert fast is None or same(fast[0], reference), (name, value)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_random_episodes_agree_with_the_serializer(metric):
    rng = random.Random(1)
    accepted = 0
    for _ in range(3000):
        item = random_item(rng, wild=0.15)
        reference = slow(item, metric)
        fast = fast_episodes([item], dim=DIM, nonzero=metric == "cosine", check=EpisodeInput.cross_check)
        if isinstance(reference, ValidationError):
            assert fast is None, (item, reference)
        else:
            assert fast is not None or _unusual(item), item  # the fast path decides every ordinary episode
            if fast is not None:
                accepted += 1
                assert same(fast[0], reference), item
    assert accepted > 500


def _unusual(item: dict) -> bool:
    """Valid inputs the fast path leaves to the serializer on purpose."""
    emb = item.get("state_embedding")
    return any(isinstance(x, int) and abs(x) >= 2**53 for x in emb) or max(abs(x) for x in emb) > 1e17


def test_batches_answer_exactly_what_the_item_by_item_path_answers(settings):
    rng = random.Random(2)
    context = {"tenant": tenant("cosine")}
    for round_ in range(300):
        size = rng.choice([1, 2, 5, 20])
        wild = rng.choice([0.0, 0.02, 0.1])
        items = [random_item(rng, wild) for _ in range(size)]
        if round_ % 7 == 0 and size > 1:  # repeated ids
            items[-1] = {**items[0], "id": U} if isinstance(items[0], dict) else items[-1]
            items[0] = {**items[0], "id": U} if isinstance(items[0], dict) else items[0]
        body = {"episodes": items}
        new = EpisodeBatchInput(data=body, context=context)
        reference = EpisodeBatchInput(context=context)
        try:
            expected = super(EpisodeBatchInput, reference).run_validation(body)
        except ValidationError as exc:
            assert not new.is_valid() and first_message(new.errors) == first_message(exc.detail), items
            continue
        assert new.is_valid(), (items, new.errors)
        got = new.validated_data["episodes"]
        assert len(got) == len(expected["episodes"])
        assert all(same(g, e) for g, e in zip(got, expected["episodes"], strict=True)), items


def test_a_bad_item_after_good_ones_is_named_by_its_index():
    context = {"tenant": tenant("cosine")}
    good = dict(VALID)
    cases = [
        ([good, good, {**good, "reward": "1"}], "episodes[2].reward"),
        ([good, {**good, "state_embedding": [0.0] * DIM}, {**good, "reward": "1"}], "episodes[1].state_embedding"),
        ([{**good, "id": U}, good, {**good, "id": U}], "episodes[2].id"),
        ([{**good, "tags": ["x"] * 3}, {**good, "topk": 1}], "episodes[1].topk"),
    ]
    for items, where in cases:
        data = EpisodeBatchInput(data={"episodes": items}, context=context)
        assert not data.is_valid()
        assert first_message(data.errors).startswith(where + ":"), first_message(data.errors)


# ----- the query's fast path (fast_query, against QueryInput) -----
MAX_TOP_K = 100
TEXTS = [MISSING, None, "", "p", "x" * 256, "x" * 257, "x" * 512, "x" * 513, 3, "a\x00", "\udc00", "ü", ["p"]]
TAGS = [MISSING, [], ["a", "a", "b"], "a", [1], [""], None, ["x" * 129], ["a\x00"], ["é", "\ud800"],
        [f"t{i}" for i in range(1001)], ["t"] * 1500 + ["u"]]
TIMES = [MISSING, None, 0, 5, 5.0, 5.5, -1, 2**63 - 1, 2**63, True, "5", float("inf")]
QUERY_CHOICES = {
    "query_embedding": CHOICES["state_embedding"],
    "top_k": [MISSING, 1, 5, 5.0, 0, -1, 100, 101, 2**70, None, True, "5", 2.5, float("nan")],
    "include_embedding": [MISSING, True, False, None, 1, 0, "true", "false"],
    "min_reward": [MISSING, None, 0, 0.5, -3, True, "1", 1e308, 10**400, float("inf"), float("nan")],
    "tags_any": TAGS,
    "tags_all": TAGS,
    "task_id_prefix": TEXTS,
    "source": TEXTS,
    "user_id": TEXTS,
    "time_after": TIMES,
    "time_before": TIMES,
    "query_text": [MISSING, None, "", "err_4700", "é" * 4096, "é" * 8192, "é" * 8193, "x" * 16385, 3, "a\x00",
                   "\udc00"],
    "mode": [MISSING, "vector", "keyword", "hybrid", "VECTOR", "", None, 1],
    "rrf_k": [MISSING, None, 1, 60, 60.0, 0, -1, 1.5, 10**6, 10**6 + 1, True, "60"],
    "vector_weight": [MISSING, None, 1.0, 0.5, 0, 0.0, -1.0, 2, True, "1", float("inf")],
    "keyword_weight": [MISSING, None, 1.0, 0, 0.0, -0.5, 3, False, "1", float("nan")],
    "topk": [MISSING] * 12 + [5],
}
QUERY_VALID = {"query_embedding": [1.0, 0.5, -2.0, 0.25]}


def slow_query(body: object, metric: str):
    """What QueryInput answers without its fast path."""
    one = QueryInput(data=body, context={"tenant": tenant(metric)})
    try:
        return super(QueryInput, one).run_validation(body)
    except ValidationError as exc:
        return ValidationError(first_message(exc.detail))


def check(body: object, metric: str) -> bool:
    """Whether the fast path decided; asserts that it agrees with the serializer when it did."""
    reference = slow_query(body, metric)
    fast = fast_query(body, dim=DIM, nonzero=metric == "cosine", max_top_k=MAX_TOP_K,
                      check=QueryInput.cross_check)
    if isinstance(reference, ValidationError):
        assert fast is None, (body, reference)
    elif fast is not None:
        assert same(fast, reference, embedding="query_embedding"), (body, fast, reference)
    return fast is not None


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_every_query_field_value_alone_agrees_with_the_serializer(metric, settings):
    settings.AGENT_MEM_MAX_TOP_K = MAX_TOP_K
    for name, values in QUERY_CHOICES.items():
        for value in values:
            body = {k: v for k, v in QUERY_VALID.items() if k != name}
            if value is not MISSING:
                body[name] = value
            check(body, metric)
    for body in ([], None, "x", 5, [QUERY_VALID]):
        assert not check(body, metric)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_random_queries_agree_with_the_serializer(metric, settings):
    settings.AGENT_MEM_MAX_TOP_K = MAX_TOP_K
    rng = random.Random(3)
    decided = 0
    for _ in range(3000):
        body = dict(QUERY_VALID)
        for name, values in QUERY_CHOICES.items():
            if rng.random() < 0.15:
                value = rng.choice(values)
                if value is MISSING:
                    body.pop(name, None)
                else:
                    body[name] = value
        decided += check(body, metric)
    assert decided > 500


def test_an_ordinary_query_takes_the_fast_path(settings):
    settings.AGENT_MEM_MAX_TOP_K = MAX_TOP_K
    body = {"query_embedding": [0.1, 0.2, 0.3, 0.4], "top_k": 10, "tags_any": ["a"], "min_reward": 0.5,
            "time_after": 1, "source": "s", "include_embedding": True}
    assert check(body, "cosine")
    for body in ({"mode": "keyword", "query_text": "err_4700 failed", "top_k": 3, "source": "s"},
                 {"mode": "hybrid", "query_text": "x", "query_embedding": [0.1, 0.2, 0.3, 0.4], "rrf_k": 10,
                  "vector_weight": 2.0, "keyword_weight": 0}):
        assert check(body, "cosine")


def test_a_batch_of_base64_rows_decoded_at_once_agrees_with_the_serializer():
    """With 4 * dim a multiple of 3 no row has padding, and the fast path decodes the rows joined
    in one call: any bad row, wherever it stands, still makes it step aside (or agree)."""
    dim, context = 3, {"tenant": SimpleNamespace(dim=3, metric="cosine")}
    good = [b64(1.0, 0.5, -2.0), b64(0.25, 1, 2), b64(1e-45, 3, -0.0)]
    bad = [b64(1, 2), b64(1, 2, 3, 4), b64(1, 2, 3)[:-1] + "=", "=" + b64(1, 2, 3)[1:], b64(1, 2, 3)[:-2] + "!!",
           b64(1, 2, 3)[:8] + " " * 8, "é" * 16, "\ud800" + b64(1, 2, 3)[1:], b64(0, 0, 0), b64(float("nan"), 1, 1),
           b64(1, 2, 3).replace("A", "-"), b64(3e38, 3e38, 0), b64(1, 2, 3)[:4] + "====" + b64(1, 2, 3)[8:]]
    for row in good + bad:
        for at in range(3):
            embeddings = [*good[:at], row, *good[at:]]
            items = [{"task_id": "t", "reward": 1.0, "state_embedding": e} for e in embeddings]
            fast = fast_episodes(items, dim=dim, nonzero=True, check=EpisodeInput.cross_check)
            reference = EpisodeBatchInput(context=context)
            try:
                expected = super(EpisodeBatchInput, reference).run_validation({"episodes": items})["episodes"]
            except ValidationError:
                assert fast is None, (row, at)
                continue
            assert fast is not None and all(same(f, e) for f, e in zip(fast, expected, strict=True)), (row, at)


def test_tags_seen_earlier_in_a_batch_are_still_checked_as_a_list():
    """The fast path remembers the tags a batch has passed; a later list of them is still deduplicated,
    counted and refused for any other element."""
    context = {"tenant": tenant("cosine")}
    first = {**VALID, "tags": ["a", "b", "x" * 128] + [f"t{i}" for i in range(61)]}
    later = [["a", "b"], ["b", "a", "b"], ["a"] * 100, ["a", 1], ["a", ["b"]], ["a", None], "a", ["a", ""],
             ["x" * 128, "x" * 129], [*first["tags"], "new"], [*first["tags"], "a"], [1.0, "a"], [True]]
    for tags in later:
        items = [first, {**VALID, "tags": tags}]
        fast = fast_episodes(items, dim=DIM, nonzero=True, check=EpisodeInput.cross_check)
        try:
            expected = super(EpisodeBatchInput, EpisodeBatchInput(context=context)).run_validation(
                {"episodes": items})["episodes"]
        except ValidationError:
            assert fast is None, tags
            continue
        assert fast is not None and all(same(f, e) for f, e in zip(fast, expected, strict=True)), tags
