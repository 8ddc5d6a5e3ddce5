"""Tenant isolation attacks on a real server: foreign ids, forged and dead keys, header tricks.
The wrong-secret versus unknown-prefix timing comparison is a report (build/reliability/auth_timing.json,
quoted in docs/reliability.md), not an assertion."""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import math
import socket
import statistics
import time
import uuid
import zlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support.tenants import auth, unique_slug

from .support import assert_client_error, error_message, record

pytestmark = pytest.mark.e2e

DIM = 4
TALLY: collections.Counter = collections.Counter()


def episode(**fields) -> dict:
    return {"task_id": "secret-task", "state_embedding": [1, 2, 3, 4], "reward": 1.0, **fields}


@pytest.fixture(scope="module")
def two_tenants(memcloud_server) -> Iterator[dict]:
    slug_a, slug_b = unique_slug("iso-a"), unique_slug("iso-b")
    key_a = memcloud_server.create_tenant(slug_a, "--dim", str(DIM))
    key_b = memcloud_server.create_tenant(slug_b, "--dim", str(DIM))
    with httpx.Client(base_url=memcloud_server.url, headers=auth(key_a), timeout=30) as a:
        ids_a = a.post("/v1/episodes/batch", json={"episodes": [episode() for _ in range(4)]}).json()["ids"]
    yield {"url": memcloud_server.url, "server": memcloud_server, "slug_a": slug_a, "slug_b": slug_b,
           "key_a": key_a, "key_b": key_b, "ids_a": ids_a}
    record("isolation", requests=TALLY["requests"], server_errors=TALLY["server_errors"], leaks=TALLY["leaks"],
           command="pytest tests/reliability/test_isolation.py")


def call(url: str, method: str, path: str, headers: dict[str, str], **kwargs) -> httpx.Response:
    response = httpx.request(method, url + path, headers=headers, timeout=30, **kwargs)
    TALLY["requests"] += 1
    TALLY["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, response.text
    return response


def a_still_has_everything(t: dict) -> None:
    response = call(t["url"], "GET", "/v1/stats", auth(t["key_a"]))
    assert response.json()["episodes"] == len(t["ids_a"])
    for eid in t["ids_a"]:
        assert call(t["url"], "GET", f"/v1/episodes/{eid}", auth(t["key_a"])).status_code == 200


def test_another_tenants_episode_ids_are_404(two_tenants):
    t = two_tenants
    for eid in t["ids_a"]:
        for method in ("GET", "DELETE"):
            response = call(t["url"], method, f"/v1/episodes/{eid}", auth(t["key_b"]))
            TALLY["leaks"] += response.status_code != 404 or "secret-task" in response.text
            assert response.status_code == 404 and "secret-task" not in response.text
            error_message(response)
    hits = call(t["url"], "POST", "/v1/query", auth(t["key_b"]),
                json={"query_embedding": [1, 2, 3, 4], "top_k": 1000}).json()["episodes"]
    TALLY["leaks"] += len(hits)
    assert hits == []
    # Storing with A's ids under B makes B's own episodes; A's stay A's and unchanged.
    stored = call(t["url"], "POST", "/v1/episodes", auth(t["key_b"]), json=episode(id=t["ids_a"][0], reward=-5.0))
    assert stored.status_code in (201, 409), stored.text
    if stored.status_code == 201:
        assert call(t["url"], "DELETE", f"/v1/episodes/{t['ids_a'][0]}", auth(t["key_b"])).status_code == 200
    assert call(t["url"], "GET", f"/v1/episodes/{t['ids_a'][0]}", auth(t["key_a"])).json()["reward"] == 1.0
    for path, body in [("/v1/prune/keep-newest", {"n": 0}), ("/v1/prune/keep-highest-reward", {"n": 0}),
                       ("/v1/prune/older-than", {"timestamp_cutoff_ms": 2**62})]:
        assert call(t["url"], "POST", path, auth(t["key_b"]), json=body).status_code == 200
    a_still_has_everything(t)


def forged_keys(key_a: str, key_b: str) -> dict[str, str]:
    prefix_a, secret_a = key_a[3:11], key_a[12:]
    prefix_b, secret_b = key_b[3:11], key_b[12:]
    return {
        "valid prefix, wrong secret": f"mc_{prefix_a}_{secret_a[:-1]}{'A' if secret_a[-1] != 'A' else 'B'}",
        "valid prefix, other tenant's secret": f"mc_{prefix_a}_{secret_b}",
        "other tenant's prefix, own secret": f"mc_{prefix_b}_{secret_a}",
        "valid prefix, empty secret": f"mc_{prefix_a}_",
        "valid prefix, huge secret": f"mc_{prefix_a}_{'x' * 4000}",
        "unknown prefix": f"mc_zzzzzzzz_{secret_a}",
        "prefix only": f"mc_{prefix_a}",
        "key with trailing junk": key_a + "x",
        "key truncated": key_a[:-1],
        "upper-cased key": key_a.upper(),
        "non-ascii key": key_a[:-1] + "é",
    }


def test_forged_keys_are_401(two_tenants):
    t = two_tenants
    for name, forged in forged_keys(t["key_a"], t["key_b"]).items():
        for headers in (auth(forged), {"X-API-Key": forged}):
            try:
                response = call(t["url"], "GET", "/v1/stats", headers)
            except UnicodeEncodeError:  # httpx refuses non-latin-1 header values: send the UTF-8 bytes
                response = call(t["url"], "GET", "/v1/stats", {k: v.encode() for k, v in headers.items()})
            assert response.status_code == 401, (name, response.status_code, response.text)
            error_message(response)
            TALLY["leaks"] += t["slug_a"] in response.text
            assert t["slug_a"] not in response.text


def test_revoked_and_expired_keys_are_401(two_tenants):
    t = two_tenants
    server = t["server"]
    revoked = server.manage("issuekey", t["slug_a"])
    expiring = server.manage("issuekey", t["slug_a"], "--expires-days", "0.00001")  # about a second
    assert call(t["url"], "GET", "/v1/stats", auth(revoked)).status_code == 200
    server.manage("revokekey", revoked[3:11])
    time.sleep(1.2)
    for dead in (revoked, expiring):
        for headers in (auth(dead), {"X-API-Key": dead}):
            assert_client_error(call(t["url"], "GET", "/v1/stats", headers), status=401)
            assert_client_error(call(t["url"], "POST", "/v1/episodes", headers, json=episode()), status=401)
    a_still_has_everything(t)


def test_read_scope_cannot_write(two_tenants):
    t = two_tenants
    reader = t["server"].manage("issuekey", t["slug_a"], "--scope", "read")
    assert call(t["url"], "GET", "/v1/stats", auth(reader)).status_code == 200
    for method, path, body in [("POST", "/v1/episodes", episode()), ("DELETE", f"/v1/episodes/{t['ids_a'][0]}", None),
                               ("POST", "/v1/prune/keep-newest", {"n": 0})]:
        message = assert_client_error(call(t["url"], method, path, auth(reader), json=body), status=403)
        assert "write" in message
    a_still_has_everything(t)


def test_both_auth_headers(two_tenants):
    t = two_tenants
    same = call(t["url"], "GET", "/v1/stats", {**auth(t["key_a"]), "X-API-Key": t["key_a"]})
    assert same.status_code == 200 and same.json()["tenant"] == t["slug_a"]
    for headers in ({**auth(t["key_a"]), "X-API-Key": t["key_b"]}, {**auth(t["key_b"]), "X-API-Key": t["key_a"]},
                    {**auth(t["key_a"]), "X-API-Key": "mc_zzzzzzzz_nope"},
                    {"Authorization": "Bearer mc_zzzzzzzz_nope", "X-API-Key": t["key_a"]},
                    {"Authorization": "Basic Zm9vOmJhcg==", "X-API-Key": t["key_a"]}):
        assert_client_error(call(t["url"], "GET", "/v1/stats", headers), status=401)


def raw_request(url: str, head: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    TALLY["requests"] += 1
    return answer


def status_and_body(answer: bytes) -> tuple[int, bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


def test_header_injection_and_duplicates(two_tenants):
    t = two_tenants
    key_a, key_b = t["key_a"].encode(), t["key_b"].encode()
    attempts = {
        "two Authorization headers, different keys": [b"Authorization: Bearer " + key_b, b"Authorization: Bearer " + key_a],
        "two Authorization headers, same key": [b"Authorization: Bearer " + key_a, b"Authorization: Bearer " + key_a],
        "two X-API-Key headers": [b"X-API-Key: " + key_b, b"X-API-Key: " + key_a],
        "bare LF inside the value": [b"Authorization: Bearer " + key_b + b"\nX-API-Key: " + key_a],
        "bare CR inside the value": [b"Authorization: Bearer " + key_b + b"\rX-API-Key: " + key_a],
        "NUL inside the value": [b"Authorization: Bearer " + key_a + b"\x00" + key_b],
        "obsolete line folding": [b"Authorization: Bearer", b" " + key_a],
        "space before the colon": [b"Authorization : Bearer " + key_a],
        "underscore header name": [b"X_API_KEY: " + key_a],
        "very long header": [b"Authorization: Bearer " + key_a + b"x" * 20_000],
        "many headers": [b"X-Pad-%d: x" % i for i in range(200)] + [b"Authorization: Bearer " + key_a],
    }
    outcomes = {}
    for name, lines in attempts.items():
        head = b"\r\n".join([b"GET /v1/stats HTTP/1.1", b"Host: 127.0.0.1", *lines, b"Connection: close"]) + b"\r\n\r\n"
        status, head_bytes, body = status_and_body(raw_request(t["url"], head))
        outcomes[name] = status
        TALLY["server_errors"] += status >= 500
        assert status < 500, (name, status, body)
        assert b"application/json" in head_bytes.lower(), (name, head_bytes)
        if status == 200:  # only ever the one tenant the request unambiguously names
            TALLY["leaks"] += t["slug_b"].encode() in body
            assert t["slug_a"].encode() in body, (name, body)
            assert name in ("two Authorization headers, same key", "space before the colon"), (name, body)
    assert outcomes["two Authorization headers, different keys"] == 401
    assert outcomes["two X-API-Key headers"] == 401
    assert outcomes["bare LF inside the value"] in (400, 401)
    assert outcomes["very long header"] in (400, 431)


# ----- timing: wrong secret of a known prefix vs an unknown prefix -----
def mann_whitney_u(x: list[float], y: list[float]) -> tuple[float, float]:
    """U statistic of x and its two-sided p-value (normal approximation with tie correction)."""
    ranked = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    ranks = [0.0] * len(ranked)
    i, ties = 0, 0.0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    n1, n2 = len(x), len(y)
    r1 = sum(r for r, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = (u - n1 * n2 / 2) / sigma if sigma else 0.0
    return u, math.erfc(abs(z) / math.sqrt(2))


@pytest.mark.slow
def test_wrong_secret_and_unknown_prefix_timing_report(two_tenants):
    t = two_tenants
    forged = forged_keys(t["key_a"], t["key_b"])
    kinds = {"wrong secret": forged["valid prefix, wrong secret"], "unknown prefix": forged["unknown prefix"]}
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    rounds = 300
    with httpx.Client(base_url=t["url"], timeout=30) as client:  # keep-alive: measure the server, not connects
        for i in range(rounds * 2 + 40):
            kind = list(kinds)[i % 2]
            started = time.perf_counter()
            response = client.get("/v1/stats", headers=auth(kinds[kind]))
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 401
            if i >= 40:  # warm-up
                samples[kind].append(elapsed)
    u, p = mann_whitney_u(samples["wrong secret"], samples["unknown prefix"])
    summary = {kind: {"n": len(v), "median_ms": round(statistics.median(v), 3),
                      "p90_ms": round(statistics.quantiles(v, n=10)[-1], 3)} for kind, v in samples.items()}
    record("auth_timing", **summary, mann_whitney_u=u, p_value=round(p, 4),
           command="pytest tests/reliability/test_isolation.py -k timing")
    assert all(len(v) == rounds for v in samples.values())


def test_mann_whitney_u_on_known_samples():
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0 and p < 0.02
    u, p = mann_whitney_u([1, 3, 5, 7], [2, 4, 6, 8])
    assert u == 6 and p > 0.5


def test_unknown_episode_ids_are_404_whatever_their_shape(two_tenants):
    t = two_tenants
    for raw in (str(uuid.uuid4()), "not-a-uuid", "0" * 32, t["ids_a"][0].upper(), t["ids_a"][0].replace("-", "")):
        response = call(t["url"], "GET", f"/v1/episodes/{raw}", auth(t["key_b"]))
        assert response.status_code == 404, (raw, response.status_code)


# ----- every route and method: the attacker's key on the victim's ids, names, cursors -----
MATRIX: collections.Counter = collections.Counter()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forged_cursors(victim_cursor: str, victim_slug: str, attacker_slug: str) -> dict[str, str]:
    """The victim's cursor replayed as is, and rewritten: its payload edited under the old signature
    (tenant swapped, position moved), unsigned, re-signed with a guessed key, truncated."""
    payload, stamp, signature = victim_cursor.split(":")
    compressed = payload.startswith(".")
    raw = _b64decode(payload.lstrip("."))
    if compressed:
        raw = zlib.decompress(raw)
    slug, digest, timestamp, seq = json.loads(raw)
    assert slug == victim_slug  # the cursor's layout is what this test forges

    def encode(fields: list) -> str:
        return _b64encode(json.dumps(fields, separators=(",", ":")).encode())

    swapped = encode([attacker_slug, digest, timestamp, seq])
    guessed_key = hmac.new(b"django-insecure-guess", f"{swapped}:{stamp}".encode(), hashlib.sha256).digest()
    return {
        "replayed": victim_cursor,
        "tenant swapped, old signature": f"{swapped}:{stamp}:{signature}",
        "position moved, old signature": f"{encode([victim_slug, digest, 0, 0])}:{stamp}:{signature}",
        "tenant swapped, unsigned": swapped,
        "tenant swapped, signed with a guessed key": f"{swapped}:{stamp}:{_b64encode(guessed_key)}",
        "signature stripped": f"{payload}:{stamp}:",
        "truncated": victim_cursor[:-3],
    }


@pytest.fixture(scope="module")
def victim(memcloud_server) -> Iterator[dict]:
    """Tenant V (the victim) with episodes, a snapshot and a listing cursor; tenant X (the attacker)
    with episodes of its own, so that an answer of X's always has something to leak into."""
    slug_v, slug_x = unique_slug("victim"), unique_slug("attacker")
    key_v = memcloud_server.create_tenant(slug_v, "--dim", str(DIM))
    key_x = memcloud_server.create_tenant(slug_x, "--dim", str(DIM))
    url = memcloud_server.url
    with httpx.Client(base_url=url, headers=auth(key_v), timeout=30) as v:
        mine = [episode(task_id="victim-secret", tags=["victim-tag"], source="victim-src", user_id="victim-user")
                for _ in range(6)]
        ids_v = v.post("/v1/episodes/batch", json={"episodes": mine}).json()["ids"]
        snapshot = f"victim-snap-{uuid.uuid4().hex[:8]}"
        assert v.post("/v1/save", json={"path": snapshot}).json()["episodes"] == len(ids_v)
        page = v.get("/v1/episodes", params={"limit": 2}).json()
        filtered = v.get("/v1/episodes", params={"limit": 2, "tags_any": "victim-tag"}).json()
    with httpx.Client(base_url=url, headers=auth(key_x), timeout=30) as x:
        ids_x = x.post("/v1/episodes/batch", json={"episodes": [episode(task_id="attacker-own") for _ in range(3)]}
                       ).json()["ids"]
    yield {"url": url, "slug_v": slug_v, "slug_x": slug_x, "key_v": key_v, "key_x": key_x, "ids_v": ids_v,
           "ids_x": ids_x, "snapshot": snapshot, "cursor": page["next_cursor"], "filtered_cursor":
           filtered["next_cursor"]}
    record("isolation_matrix", requests=MATRIX["requests"], server_errors=MATRIX["server_errors"],
           leaks=MATRIX["leaks"], routes=MATRIX["routes"], route_methods=MATRIX["route_methods"],
           forged_cursors=MATRIX["cursors"], command="pytest tests/reliability/test_isolation.py -k every_route")


def attack(t: dict, method: str, path: str, **kwargs) -> httpx.Response:
    """X's key on the request; the answer must be < 500 and hold none of V's ids or strings."""
    response = httpx.request(method, t["url"] + path, headers=auth(t["key_x"]), timeout=30, **kwargs)
    MATRIX["requests"] += 1
    MATRIX["server_errors"] += response.status_code >= 500
    assert response.status_code < 500, (method, path, response.text[:300])
    if response.status_code >= 400:
        error_message(response)
    text = response.text
    leaked = [s for s in (*t["ids_v"], t["slug_v"], "victim-secret", "victim-tag", "victim-src", "victim-user",
                          t["snapshot"]) if s in text and not _echoed(s, method, path, kwargs)]
    MATRIX["leaks"] += bool(leaked)
    assert not leaked, (method, path, response.status_code, leaked, text[:300])
    return response


def _echoed(value: str, method: str, path: str, kwargs: dict) -> bool:
    """A value the attacker sent itself may come back in its own answer (its own snapshot's name, an
    error naming its own input); that is no leak."""
    return value in path or value in json.dumps(kwargs.get("json")) or value in json.dumps(kwargs.get("params"))


def victim_is_intact(t: dict) -> None:
    with httpx.Client(base_url=t["url"], headers=auth(t["key_v"]), timeout=30) as v:
        assert v.get("/v1/stats").json()["episodes"] == len(t["ids_v"])
        for eid in t["ids_v"]:
            got = v.get(f"/v1/episodes/{eid}").json()
            assert (got["task_id"], got["reward"], got["tags"]) == ("victim-secret", 1.0, ["victim-tag"]), got
        snaps = [s["path"] for s in v.get("/v1/snapshots").json()["snapshots"]]
        assert t["snapshot"] in snaps
        page = v.get("/v1/episodes", params={"limit": 2, "cursor": t["cursor"]})
        assert page.status_code == 200 and len(page.json()["episodes"]) == 2  # V's own cursor still works


def _cases(t: dict) -> dict[tuple[str, str], list[dict]]:
    """Per (method, route template) the attacker's requests, each naming V's ids, names or cursors."""
    v_id, v_ids = t["ids_v"][0], t["ids_v"]
    v_filters = [{"tags_any": ["victim-tag"]}, {"task_id_prefix": "victim"}, {"source": "victim-src"},
                 {"user_id": "victim-user"}]
    cursors = {**forged_cursors(t["cursor"], t["slug_v"], t["slug_x"]),
               "replayed with its own filters": t["filtered_cursor"]}
    MATRIX["cursors"] = len(cursors)
    listing = [{"params": {"limit": 2, "cursor": c}, "expect": (400,)} for c in cursors.values()]
    listing[-1]["params"]["tags_any"] = "victim-tag"
    listing += [{"params": {"limit": 1000, **{k: v[0] if isinstance(v, list) else v for k, v in f.items()}},
                 "expect": (200,), "empty": "episodes"} for f in v_filters]
    query = [{"json": {"query_embedding": [1, 2, 3, 4], "top_k": 1000, **f}, "expect": (200,), "empty": "episodes"}
             for f in v_filters]
    own_episode = {"task_id": "attacker-own", "state_embedding": [1, 2, 3, 4], "reward": -7.0}
    return {
        ("GET", "/v1/episodes"): listing,
        ("GET", "/v1/episodes/{episode_id}"): [{"id": i, "expect": (404,)} for i in v_ids],
        ("PATCH", "/v1/episodes/{episode_id}"): [{"id": v_id, "json": body, "expect": (404,)} for body in
                                                 ({"reward": -9.0}, {"tags": ["pwned"]}, {"task_id": "pwned"},
                                                  {"metadata": {"owned": True}})],
        ("DELETE", "/v1/episodes/{episode_id}"): [{"id": i, "expect": (404,)} for i in v_ids],
        ("POST", "/v1/episodes/delete"): [{"json": {"ids": v_ids}, "expect": (200,), "removed": 0}]
        + [{"json": {"filter": f}, "expect": (200,), "removed": 0} for f in v_filters],
        ("POST", "/v1/query"): query,
        ("POST", "/v1/prune/older-than"): [{"json": {"timestamp_cutoff_ms": 1}, "expect": (200,)}],
        ("POST", "/v1/prune/keep-newest"): [{"json": {"n": 10**6}, "expect": (200,), "removed": 0}],
        ("POST", "/v1/prune/keep-highest-reward"): [{"json": {"n": 10**6}, "expect": (200,), "removed": 0}],
        # Ids are per tenant: X storing under V's ids makes X's own episodes (after the reads above,
        # which would otherwise find them), and V's stay V's.
        ("POST", "/v1/episodes"): [{"json": {**own_episode, "id": v_id}, "expect": (201, 409)}],
        ("POST", "/v1/episodes/batch"): [{"json": {"episodes": [{**own_episode, "id": i} for i in v_ids[1:3]]},
                                          "expect": (201, 409)}],
        # A whole replace under V's id creates or replaces X's own episode of that id, never V's.
        ("PUT", "/v1/episodes/{episode_id}"): [{"id": v_id, "json": own_episode, "expect": (200, 201)}],
        ("GET", "/v1/stats"): [{"expect": (200,)}],
        ("GET", "/v1/snapshots"): [{"expect": (200,)}],
        # Load first: X has no snapshot of that name, so 404; then X saves its own under V's name.
        ("POST", "/v1/load"): [{"json": {"path": t["snapshot"]}, "expect": (404,)}]
        + [{"json": {"path": p}, "expect": (400,)} for p in (f"../{t['slug_v']}/snapshots/{t['snapshot']}",
                                                             f"../../{t['slug_v']}/{t['snapshot']}")],
        ("POST", "/v1/save"): [{"json": {"path": t["snapshot"]}, "expect": (200,)}],
        ("POST", "/v1/checkpoint"): [{"json": {}, "expect": (200,)}],
    }


def test_every_route_and_method_with_the_victims_ids_names_and_cursors(victim):
    """Every operation the served schema lists gets the attacker's key with the victim's identifiers;
    an operation without attack cases here fails the test, so a new route cannot slip past."""
    t = victim
    schema = httpx.get(f"{t['url']}/v1/openapi.json", timeout=30).json()
    served = {(method.upper(), route) for route, item in schema["paths"].items()
              for method in item if method in {"get", "post", "put", "patch", "delete"}}
    cases = _cases(t)
    assert served - {("GET", "/v1/openapi.json")} <= set(cases), f"no attack cases for {served - set(cases)}"
    MATRIX["routes"] = len({route for _, route in cases})
    MATRIX["route_methods"] = len(cases)
    for (method, route), requests in cases.items():
        for case in requests:
            path = route.replace("{episode_id}", case.get("id", ""))
            kwargs = {k: case[k] for k in ("json", "params") if k in case}
            response = attack(t, method, path, **kwargs)
            assert response.status_code in case["expect"], (method, path, kwargs, response.status_code, response.text)
            if response.status_code == 200 and "empty" in case:
                assert response.json()[case["empty"]] == [], (method, path, kwargs)
            if "removed" in case:
                assert response.json()["removed"] == case["removed"], (method, path, kwargs, response.text)
            if method == "GET" and route == "/v1/episodes" and response.status_code == 400:
                assert "cursor" in error_message(response)
        victim_is_intact(t)
    # What X now holds is X's alone: its listing, stats and the snapshot it saved under V's name.
    with httpx.Client(base_url=t["url"], headers=auth(t["key_x"]), timeout=30) as x:
        held = x.get("/v1/episodes", params={"limit": 1000}).json()["episodes"]
        assert all(e["task_id"] == "attacker-own" for e in held)
        for eid in t["ids_v"][:3]:  # the ids X stored under: X's own episodes
            got = x.get(f"/v1/episodes/{eid}")
            assert got.status_code == 404 or (got.json()["task_id"], got.json()["reward"]) == ("attacker-own", -7.0)
        assert x.post("/v1/load", json={"path": t["snapshot"]}).json()["episodes"] == len(held)
    victim_is_intact(t)
