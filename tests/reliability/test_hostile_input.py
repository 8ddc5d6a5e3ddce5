"""Hostile input against a real server: every answer is a 4xx JSON error naming what is wrong, and the
tenant's episode count is unchanged afterwards."""

from __future__ import annotations

import collections
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.server import LiveServer
from tests.support.tenants import auth, unique_slug

from .support import assert_client_error, error_message, record

pytestmark = pytest.mark.e2e

DIM = 4
SMALL_LIMIT = 4096
TALLY: collections.Counter = collections.Counter()


def good_episode(**fields) -> dict:
    return {"task_id": "task_1", "state_embedding": [1.0, 0.5, 0.0, -1.0], "reward": 1.0, **fields}


@pytest.fixture(scope="module")
def hostile(memcloud_server) -> Iterator[httpx.Client]:
    key = memcloud_server.create_tenant(unique_slug("hostile"), "--dim", str(DIM))
    with httpx.Client(base_url=memcloud_server.url, headers=auth(key), timeout=30) as client:
        assert client.post("/v1/episodes/batch", json={"episodes": [good_episode() for _ in range(3)]}).status_code == 201
        yield client
    record("hostile_input", requests=TALLY["requests"], server_errors=TALLY["server_errors"],
           count_changes=TALLY["count_changes"], command="pytest tests/reliability/test_hostile_input.py")


def count(client: httpx.Client) -> int:
    return client.get("/v1/stats").json()["episodes"]


def send(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    """One hostile request; the tenant's count must not move."""
    before = count(client)
    response = client.request(method, path, **kwargs)
    TALLY["requests"] += 1
    TALLY["server_errors"] += response.status_code >= 500
    after = count(client)
    TALLY["count_changes"] += before != after
    assert before == after, (method, path, response.status_code, response.text[:300])
    return response


def rejected(client: httpx.Client, path: str, body: bytes | str, field: str | None,
             headers: dict[str, str] | None = None, status: int | tuple[int, ...] = 400) -> str:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    response = send(client, "POST", path, content=raw,
                    headers={"Content-Type": "application/json", **(headers or {})})
    return assert_client_error(response, field=field, status=status)


def json_text(value) -> str:
    import json

    return json.dumps(value, allow_nan=True)


# ----- malformed bodies and content types -----
@pytest.mark.parametrize("body", [b"", b"{", b"{\"task_id\": }", b"[1, 2", b"\xff\xfe{}", b"null", b"[]", b"42",
                                  b"\"text\"", b"{\"a\": 1} trailing", b"{'task_id': 'x'}"])
def test_malformed_json_is_a_400(hostile, body):
    rejected(hostile, "/v1/episodes", body, None)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml", ""])
def test_wrong_content_types_are_refused(hostile, content_type):
    response = send(hostile, "POST", "/v1/episodes", content=json_text(good_episode()).encode(),
                    headers={"Content-Type": content_type})
    assert_client_error(response, status=(400, 415))


# ----- sizes -----
@pytest.fixture(scope="module")
def small_limit_server(server_db_env) -> Iterator[tuple[LiveServer, str]]:
    server = LiveServer(workers=2, env={**server_db_env, "AGENT_MEM_MAX_BODY_BYTES": str(SMALL_LIMIT)})
    key = server.create_tenant(unique_slug("limit"), "--dim", str(DIM))
    with server:
        yield server, key


def raw_exchange(server: LiveServer, head: bytes, body_parts: Iterator[bytes]) -> bytes:
    """Send a request over a plain socket, stop sending as soon as the server answers, return the answer.
    A server that waited for the whole declared body would never answer (the socket times out)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                continue
        sock.setblocking(True)
        sock.settimeout(20)
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            answer += sock.recv(65536) if b"\"error\"" not in answer else b""
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


def test_declared_length_over_the_limit_is_413_before_the_body_is_read(small_limit_server):
    server, key = small_limit_server
    declared = 50 * 1024 * 1024
    head = (f"POST /v1/episodes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n").encode()
    answer = raw_exchange(server, head, iter([b"{\"task_id\": \""] + [b"x" * 1024] * 8))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"\"error\"" in answer and b"too large" in answer, answer


def test_chunked_body_over_the_limit_is_413(small_limit_server):
    server, key = small_limit_server
    head = (f"POST /v1/episodes HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()

    def chunks() -> Iterator[bytes]:
        yield b"d\r\n{\"task_id\": \"\r\n"
        for _ in range(64):  # 64 KiB, sixteen times the limit
            yield b"400\r\n" + b"x" * 1024 + b"\r\n"
        yield b"0\r\n\r\n"

    answer = raw_exchange(server, head, chunks())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"\"error\"" in answer, answer


def test_chunked_body_under_the_limit_is_read(small_limit_server):
    server, key = small_limit_server
    body = json_text(good_episode()).encode()

    def chunked() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as client:
        before = client.get("/v1/stats").json()["episodes"]
        response = client.post("/v1/episodes", content=chunked(), headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text
        assert client.get("/v1/stats").json()["episodes"] == before + 1


def test_body_just_over_the_limit_is_413(small_limit_server):
    server, key = small_limit_server
    with httpx.Client(base_url=server.url, headers=auth(key), timeout=30) as client:
        body = json_text(good_episode(metadata={"pad": "x" * SMALL_LIMIT})).encode()
        assert_client_error(client.post("/v1/episodes", content=body, headers={"Content-Type": "application/json"}),
                            status=413)


def test_ten_thousand_dimension_embedding(hostile):
    rejected(hostile, "/v1/episodes", json_text(good_episode(state_embedding=[0.5] * 10_000)), "state_embedding")
    rejected(hostile, "/v1/query", json_text({"query_embedding": [0.5] * 10_000}), "query_embedding")


@pytest.mark.parametrize("depth", [300, 2_000, 10_000])
def test_deeply_nested_metadata(hostile, depth):
    body = '{"task_id": "t", "state_embedding": [1, 0, 0, 0], "reward": 1, "metadata": ' + \
           '{"a": ' * depth + "1" + "}" * depth + "}"
    message = rejected(hostile, "/v1/episodes", body, None)
    assert "metadata" in message or "JSON" in message, message


def test_moderately_nested_metadata_round_trips(hostile):
    nested: dict = {"leaf": 1}
    for _ in range(100):
        nested = {"a": nested}
    r = hostile.post("/v1/episodes", json=good_episode(metadata=nested))
    assert r.status_code == 201, r.text
    got = hostile.get(f"/v1/episodes/{r.json()['id']}")
    assert got.json()["metadata"] == nested
    assert hostile.delete(f"/v1/episodes/{r.json()['id']}").status_code == 200


# ----- numbers -----
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]
EPISODE_NUMBERS = ["reward", "state_embedding", "timestamp", "expires_at", "ttl_secs"]
QUERY_NUMBERS = ["query_embedding", "top_k", "min_reward", "time_after", "time_before"]


def with_number(template: dict, field: str, literal: str) -> str:
    """The template as JSON with `field` (or its first element) replaced by the raw literal."""
    marker = "__NUMBER__"
    body = dict(template)
    body[field] = [marker, 0, 0, 1] if field in ("state_embedding", "query_embedding") else marker
    return json_text(body).replace(f'"{marker}"', literal)


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", EPISODE_NUMBERS)
def test_non_finite_numbers_in_an_episode(hostile, field, literal):
    message = rejected(hostile, "/v1/episodes", with_number(good_episode(), field, literal), None)
    assert field in message or "JSON" in message, message


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", QUERY_NUMBERS)
def test_non_finite_numbers_in_a_query(hostile, field, literal):
    message = rejected(hostile, "/v1/query", with_number({"query_embedding": [1, 0, 0, 0]}, field, literal), None)
    assert field in message or "JSON" in message, message


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize(("path", "field"), [("/v1/prune/keep-newest", "n"), ("/v1/prune/keep-highest-reward", "n"),
                                             ("/v1/prune/older-than", "timestamp_cutoff_ms")])
def test_non_finite_numbers_in_a_prune(hostile, path, field, literal):
    message = rejected(hostile, path, with_number({}, field, literal), None)
    assert field in message or "JSON" in message, message


def test_finite_float32_overflow_in_an_embedding_names_the_field(hostile):
    rejected(hostile, "/v1/episodes", json_text(good_episode(state_embedding=[1e39, 0, 0, 0])), "state_embedding")
    rejected(hostile, "/v1/query", json_text({"query_embedding": [3e38, 3e38, 3e38, 3e38]}), "query_embedding")


@pytest.mark.parametrize("value", [0, -1, -(2**63), 1001, 10**6, 2**63, 2**64, 10**30, 1.5, True, "5"])
def test_bad_top_k(hostile, value):
    rejected(hostile, "/v1/query", json_text({"query_embedding": [1, 0, 0, 0], "top_k": value}), "top_k")


@pytest.mark.parametrize("value", [-1, -(2**63), 2**63, 2**64, 10**30, 0.5, False, "3", None])
@pytest.mark.parametrize("path", ["/v1/prune/keep-newest", "/v1/prune/keep-highest-reward"])
def test_bad_prune_n(hostile, path, value):
    rejected(hostile, path, json_text({"n": value}), "n")


@pytest.mark.parametrize("value", [-1, 2**63, 2**64, 10**30, 2**70 + 1, -(2**64)])
@pytest.mark.parametrize("field", ["timestamp", "expires_at"])
def test_timestamps_beyond_int64_in_an_episode(hostile, field, value):
    rejected(hostile, "/v1/episodes", json_text(good_episode(**{field: value})), field)


@pytest.mark.parametrize("value", [-1, 2**63, 2**64, 10**30])
def test_timestamps_beyond_int64_elsewhere(hostile, value):
    for field in ("time_after", "time_before"):
        rejected(hostile, "/v1/query", json_text({"query_embedding": [1, 0, 0, 0], field: value}), field)
    rejected(hostile, "/v1/prune/older-than", json_text({"timestamp_cutoff_ms": value}), "timestamp_cutoff_ms")


def test_integers_beyond_64_bits_in_reward_are_finite_numbers(hostile):
    """2**70 is a finite float64: a valid reward, stored as the float it is."""
    r = hostile.post("/v1/episodes", json=good_episode(reward=2**70))
    assert r.status_code == 201, r.text
    assert hostile.get(f"/v1/episodes/{r.json()['id']}").json()["reward"] == float(2**70)
    assert hostile.delete(f"/v1/episodes/{r.json()['id']}").status_code == 200


# ----- strings -----
STRING_FIELDS = ["task_id", "source", "user_id"]
HOSTILE_STRINGS = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"x\\udfffy"',
    "NUL": '"a\\u0000b"',
}
FRIENDLY_STRINGS = ["مرحبا بالعالم", "\u202eevil\u202c", "🧠💾🚀", "e\u0301", "\ufeffbom", "日本語"]


@pytest.mark.parametrize("kind", list(HOSTILE_STRINGS))
@pytest.mark.parametrize("field", [*STRING_FIELDS, "tags", "metadata value", "metadata key", "steps", "id"])
def test_hostile_strings_in_an_episode(hostile, field, kind):
    literal = HOSTILE_STRINGS[kind]
    body = good_episode()
    marker = '"__S__"'
    if field == "tags":
        body["tags"] = ["__S__"]
    elif field == "metadata value":
        body["metadata"] = {"k": "__S__"}
    elif field == "metadata key":
        body["metadata"] = {"__S__": 1}
    elif field == "steps":
        body["steps"] = [{"action": "__S__"}]
    else:
        body[field] = "__S__"
    name = field.split()[0]
    message = rejected(hostile, "/v1/episodes", json_text(body).replace(marker, literal), None)
    assert name in message or "JSON" in message, message


@pytest.mark.parametrize("kind", list(HOSTILE_STRINGS))
@pytest.mark.parametrize("field", ["task_id_prefix", "source", "user_id", "tags_any", "tags_all"])
def test_hostile_strings_in_a_query(hostile, field, kind):
    body = {"query_embedding": [1, 0, 0, 0], field: ["__S__"] if field.startswith("tags") else "__S__"}
    message = rejected(hostile, "/v1/query", json_text(body).replace('"__S__"', HOSTILE_STRINGS[kind]), None)
    assert field in message or "JSON" in message, message


@pytest.mark.parametrize("text", FRIENDLY_STRINGS)
def test_unicode_round_trips_in_every_string(hostile, text):
    body = good_episode(task_id=text, source=text, user_id=text, tags=[text], metadata={text: text},
                        steps=[{"say": text}])
    r = hostile.post("/v1/episodes", json=body)
    assert r.status_code == 201, r.text
    got = hostile.get(f"/v1/episodes/{r.json()['id']}").json()
    assert (got["task_id"], got["source"], got["user_id"], got["tags"], got["metadata"], got["steps"]) == (
        text, text, text, [text], {text: text}, [{"say": text}])
    hits = hostile.post("/v1/query", json={"query_embedding": [1, 0, 0, 0], "task_id_prefix": text,
                                           "source": text, "user_id": text, "tags_all": [text]}).json()["episodes"]
    assert [h["id"] for h in hits] == [r.json()["id"]]
    assert hostile.delete(f"/v1/episodes/{r.json()['id']}").status_code == 200


def test_unicode_in_the_path_and_headers(hostile):
    for path in ("/v1/episodes/%F0%9F%A7%A0", "/v1/episodes/%ED%A0%80", "/v1/episodes/%00", "/v1/episodes/" + "a" * 5000):
        response = send(hostile, "GET", path)
        assert response.status_code in (400, 404, 414), (path, response.status_code)
        error_message(response)


# ----- batches -----
def test_duplicate_ids_in_one_batch(hostile):
    same = str(uuid.uuid4())
    episodes = [good_episode(id=str(uuid.uuid4())), good_episode(id=same), good_episode(id=same)]
    message = rejected(hostile, "/v1/episodes/batch", json_text({"episodes": episodes}), "episodes[2].id")
    assert "duplicate" in message
    assert hostile.get(f"/v1/episodes/{same}").status_code == 404


def test_one_bad_episode_rejects_the_whole_batch(hostile):
    episodes = [good_episode() for _ in range(5)]
    episodes[3]["reward"] = "lots"
    rejected(hostile, "/v1/episodes/batch", json_text({"episodes": episodes}), "episodes[3].reward")


def test_batch_over_the_maximum(hostile):
    rejected(hostile, "/v1/episodes/batch", json_text({"episodes": [good_episode()] * 1001}), "episodes")


def test_wrong_types_everywhere(hostile):
    for field, value in [("task_id", 5), ("task_id", ""), ("reward", "1"), ("reward", None), ("tags", "a"),
                         ("tags", [1]), ("metadata", []), ("steps", {}), ("id", "not-a-uuid"), ("id", 5),
                         ("state_embedding", "1,2,3,4"), ("state_embedding", [[1, 2], [3, 4]]),
                         ("state_embedding", [0, 0, 0, 0]), ("state_embedding", [True, 0, 0, 1]),
                         ("timestamp", "2024-01-01"), ("topk", 5)]:
        rejected(hostile, "/v1/episodes", json_text(good_episode(**{field: value})), field)


# ----- methods -----
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "HEAD"])
@pytest.mark.parametrize("path", ["/v1/episodes/batch", "/v1/query", "/v1/stats", "/v1/prune/keep-newest",
                                  "/v1/nowhere", "/health", "/ready"])
def test_unexpected_methods(hostile, method, path):
    response = send(hostile, method, path)
    assert response.status_code < 500, (method, path, response.status_code)
    if response.status_code >= 400 and method != "HEAD":
        error_message(response)


def test_expired_on_arrival_is_never_visible(hostile):
    before = count(hostile)
    r = hostile.post("/v1/episodes", json=good_episode(expires_at=1, task_id="expired-on-arrival"))
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    assert count(hostile) == before
    assert hostile.get(f"/v1/episodes/{eid}").status_code == 404
    hits = hostile.post("/v1/query", json={"query_embedding": [1, 0, 0, 0], "top_k": 1000,
                                           "task_id_prefix": "expired-on-arrival"}).json()["episodes"]
    assert hits == []


# ----- base64 embeddings (docs/api.md §3) -----
def b64(*values: float, dtype: str = "<f4") -> str:
    import base64

    import numpy as np

    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


GOOD_B64 = b64(1.0, 0.5, 0.0, -1.0)
BAD_BASE64 = [
    pytest.param(GOOD_B64[:-4], id="three-floats"),
    pytest.param(b64(1, 0, 0, 0, 1), id="five-floats"),
    pytest.param(b64(1, 0, 0, 1, dtype="<f8"), id="float64-bytes"),
    pytest.param(GOOD_B64[:-1], id="truncated"),
    pytest.param(GOOD_B64[:-2] + "!!", id="bad-alphabet"),
    pytest.param(GOOD_B64.replace("A", "-").replace("/", "_"), id="urlsafe-alphabet"),
    pytest.param(" " + GOOD_B64, id="whitespace"),
    pytest.param(GOOD_B64[:8] + "\n" + GOOD_B64[8:], id="newline"),
    pytest.param(GOOD_B64 + "====", id="extra-padding"),
    pytest.param("é" * len(GOOD_B64), id="not-ascii"),
    pytest.param("", id="empty"),
    pytest.param(b64(float("nan"), 0, 0, 1), id="nan"),
    pytest.param(b64(float("inf"), 0, 0, 1), id="infinity"),
    pytest.param(b64(float("-inf"), 0, 0, 1), id="minus-infinity"),
    pytest.param(b64(3e38, 3e38, 3e38, 3e38), id="norm-overflows"),
]


@pytest.mark.parametrize("value", BAD_BASE64)
def test_bad_base64_embeddings_are_400s_naming_the_field(hostile, value):
    rejected(hostile, "/v1/episodes", json_text(good_episode(state_embedding=value)), "state_embedding")
    rejected(hostile, "/v1/query", json_text({"query_embedding": value}), "query_embedding")
    # One bad item among good ones, binary and not: the whole batch is refused, the item named.
    episodes = [good_episode(state_embedding=GOOD_B64), good_episode(), good_episode(state_embedding=value)]
    rejected(hostile, "/v1/episodes/batch", json_text({"episodes": episodes}), "episodes[2].state_embedding")
    rejected(hostile, "/v1/episodes/batch", json_text({"episodes": episodes[::2]}), "episodes[1].state_embedding")


def test_an_all_zero_base64_embedding_is_refused_for_cosine(hostile):
    rejected(hostile, "/v1/episodes", json_text(good_episode(state_embedding=b64(0, -0.0, 0, 0))), "state_embedding")


@pytest.mark.parametrize("value", ["base32", "", "FLOAT", 1, True, None, ["base64"]])
def test_bad_embedding_formats_are_400s(hostile, value):
    rejected(hostile, "/v1/query", json_text({"query_embedding": [1, 0, 0, 0], "include_embedding": True,
                                             "embedding_format": value}), "embedding_format")
    params = {"include_embedding": "true", "embedding_format": str(value)}
    assert_client_error(send(hostile, "GET", "/v1/episodes", params=params), field="embedding_format")
    stored = hostile.get("/v1/episodes", params={"limit": 1}).json()["episodes"][0]["id"]
    assert_client_error(send(hostile, "GET", f"/v1/episodes/{stored}", params={"embedding_format": str(value)}),
                        field="embedding_format")
