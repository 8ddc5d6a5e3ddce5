"""The fast path of query validation (episodes/fastpath.py) against QueryInput, which it stands
in for: on every input it must either step aside (None) or return exactly what QueryInput returns."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from rest_framework.exceptions import ValidationError

from core.errors import first_message
from episodes.fastpath import fast_query
from episodes.serializers import QueryInput
from tests.episodes.test_fastpath import CHOICES as STORE_CHOICES
from tests.episodes.test_fastpath import MISSING, same

DIM = 4
MAX_TOP_K = 100
TEXTS = [MISSING, None, "", "p", "x" * 256, "x" * 257, "x" * 512, "x" * 513, 3, "a\x00", "\udc00", "ü", ["p"]]
TAGS = [MISSING, [], ["a", "a", "b"], "a", [1], [""], None, ["x" * 129], ["a\x00"], ["é", "\ud800"],
        [f"t{i}" for i in range(1001)], ["t"] * 1500 + ["u"]]
TIMES = [MISSING, None, 0, 5, 5.0, 5.5, -1, 2**63 - 1, 2**63, True, "5", float("inf")]
CHOICES = {
    "query_embedding": STORE_CHOICES["state_embedding"],
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
VALID = {"query_embedding": [1.0, 0.5, -2.0, 0.25]}


def tenant(metric: str) -> SimpleNamespace:
    return SimpleNamespace(dim=DIM, metric=metric)


def slow(body: object, metric: str):
    """What QueryInput answers without its fast path."""
    one = QueryInput(data=body, context={"tenant": tenant(metric)})
    try:
        return super(QueryInput, one).run_validation(body)
    except ValidationError as exc:
        return ValidationError(first_message(exc.detail))


def check(body: object, metric: str) -> bool:
    """Whether the fast path decided; asserts that it agrees with the serializer when it did."""
    reference = slow(body, metric)
    fast = fast_query(body, dim=DIM, nonzero=metric == "cosine", max_top_k=MAX_TOP_K,
                      check=QueryInput.cross_check)
    if isinstance(reference, ValidationError):
        assert fast is None, (body, reference)
    elif fast is not None:
        assert same(fast, reference, embedding="query_embedding"), (body, fast, reference)
    return fast is not None


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_every_field_value_alone_agrees_with_the_serializer(metric, settings):
    settings.AGENT_MEM_MAX_TOP_K = MAX_TOP_K
    for name, values in CHOICES.items():
        for value in values:
            body = {k: v for k, v in VALID.items() if k != name}
            if value is not MISSING:
                body[name] = value
            check(body, metric)
    for body in ([], None, "x", 5, [VALID]):
        assert not check(body, metric)


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_random_queries_agree_with_the_serializer(metric, settings):
    settings.AGENT_MEM_MAX_TOP_K = MAX_TOP_K
    rng = random.Random(3)
    decided = 0
    for _ in range(3000):
        body = dict(VALID)
        for name, values in CHOICES.items():
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
