"""Schema fuzzing: schemathesis generates requests from the live `/v1/openapi.json` for every operation,
valid (positive) and invalid (negative) by the schema, and each is sent with a valid key, with no key
and with a wrong key. Every answer must be non-5xx, every error `{"error": "..."}`, and every answer
must conform to the schema (status code documented, content type, body shape)."""

from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.tenants import auth, unique_slug

from .support import record

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 25
CONFORMANCE_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def key_modes(key: str) -> dict[str, dict[str, str]]:
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    return {"valid key": auth(key), "no key": {}, "wrong secret": auth(wrong),
            "unknown key": {"X-API-Key": "mc_zzzzzzzz_" + "x" * 43}}


def error_shape_problem(response) -> str | None:
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]  # lowercase keys, list values
    if not content_type.startswith("application/json"):
        return f"error answer is not JSON: {content_type!r}"
    try:
        body = response.json()
    except ValueError:
        return "error answer is not valid JSON"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)):
        return f"error body is not {{'error': ...}}: {str(body)[:200]}"
    return None


@pytest.fixture(scope="module")
def fuzz_schema(memcloud_server):
    response = httpx.get(f"{memcloud_server.url}/v1/openapi.json", timeout=30)
    assert response.status_code == 200
    return schemathesis.openapi.from_dict(yaml.safe_load(response.text))  # JSON is YAML too


def run_fuzz(memcloud_server, fuzz_schema, key: str) -> tuple[collections.Counter, dict]:
    """Fuzz every operation; returns (figures, distinct problems keyed by (operation, mode, kind))."""
    figures: collections.Counter = collections.Counter()
    problems: dict[tuple[str, str, str], str] = {}
    modes = key_modes(key)

    def note(where: str, how: str, kind: str, detail: str) -> None:
        problems.setdefault((where, how, kind), detail[:600])

    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert operations, "the schema lists no operation"
    for operation in operations:
        figures["operations"] += 1
        for generation in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=generation))
            def one(case) -> None:
                where = f"{case.operation.method.upper()} {case.operation.path} ({case.meta.generation.mode.value})"
                for how, headers in modes.items():
                    response = case.call(base_url=memcloud_server.url, headers=headers, timeout=30)
                    figures["requests"] += 1
                    if response.status_code >= 500:
                        figures["server_errors"] += 1
                        note(where, how, "5xx", f"{response.status_code} {response.text[:300]}")
                    shape = error_shape_problem(response)
                    if shape:
                        figures["bad_error_bodies"] += 1
                        note(where, how, "error shape", shape)
                    try:
                        case.validate_response(response, checks=CONFORMANCE_CHECKS, headers=headers)
                    except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis: a group of failures
                        figures["nonconforming"] += 1
                        note(where, how, "schema", str(exc))

            try:
                one()
            except Unsatisfiable:  # nothing to negate (e.g. no body and no parameters)
                figures["unsatisfiable"] += 1
    return figures, problems


@pytest.fixture(scope="module")
def fuzz_results(memcloud_server, fuzz_schema):
    key = memcloud_server.create_tenant(unique_slug("fuzz"), "--dim", "4")
    figures, problems = run_fuzz(memcloud_server, fuzz_schema, key)
    record("schema_fuzz", requests=figures["requests"], server_errors=figures["server_errors"],
           bad_error_bodies=figures["bad_error_bodies"], nonconforming=figures["nonconforming"],
           operations=figures["operations"], examples_per_operation_and_mode=EXAMPLES_PER_OPERATION,
           key_modes=len(key_modes(key)), distinct_problems=sorted(" / ".join(k) for k in problems),
           command="pytest tests/reliability/test_schema_fuzz.py")
    return figures, problems


def test_fuzzed_requests_never_get_5xx_and_errors_are_json(fuzz_results):
    figures, problems = fuzz_results
    assert figures["requests"] > 0
    found = {k: v for k, v in problems.items() if k[2] != "schema"}
    assert not found, "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))


def test_answers_conform_to_the_schema(fuzz_results, fuzz_schema):
    documented = {code for path in fuzz_schema.raw_schema["paths"].values() for op in path.values()
                  if isinstance(op, dict) for code in op.get("responses", {})}
    if "401" not in documented:
        pytest.skip("the schema documents no error answers yet: every 4xx would count as undocumented")
    _, problems = fuzz_results
    found = {k: v for k, v in problems.items() if k[2] == "schema"}
    assert not found, "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))
