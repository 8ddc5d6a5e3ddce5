"""episodes/views.py: the /v1 episode endpoints in process, their answers and their 400s, and no 5xx for
anything a client sends (DRF test client, real database)."""

from __future__ import annotations

import uuid

import pytest

from episodes.models import Episode
from tests.episodes.bodies import DIM, ep, vec
from tests.episodes.helpers import store
from tests.support.tenants import RIVAL_TASK_ID

pytestmark = pytest.mark.django_db(transaction=True)


def count(tenant) -> int:
    return Episode.objects.filter(tenant=tenant).count()


def test_store_get_query_delete_round_trip(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    r = client.post("/v1/episodes", ep(tags=["x", "y", "x"], metadata={"a": 1}, timestamp=10, source="s",
                                       user_id="u", steps=[{"n": 1}]), format="json")
    assert r.status_code == 201, r.content
    eid = r.json()["id"]
    got = client.get(f"/v1/episodes/{eid}").json()
    assert got["tags"] == ["x", "y"] and got["metadata"] == {"a": 1} and got["timestamp"] == 10
    assert got["state_embedding"] == vec(1.0) and got["steps"] == [{"n": 1}]
    hits = client.post("/v1/query", {"query_embedding": vec(1.0, 0.1)}, format="json").json()["episodes"]
    assert [h["id"] for h in hits] == [eid] and "state_embedding" not in hits[0] and hits[0]["score"] > 0.99
    assert client.delete(f"/v1/episodes/{eid}").json() == {"removed": 1}
    assert client.get(f"/v1/episodes/{eid}").status_code == 404
    assert client.delete(f"/v1/episodes/{eid}").status_code == 404
    assert client.post("/v1/query", {"query_embedding": vec(1.0)}, format="json").json() == {"episodes": []}


def test_query_filters_and_include_embedding(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes/batch", {"episodes": [
        ep(task_id="task_a", reward=-1.0, tags=["neg"], timestamp=1),
        ep(task_id="task_b", reward=0.5, tags=["mid", "x"], timestamp=2, source="agent-a", user_id="u1"),
        ep(task_id="other", reward=2.0, tags=["high", "x"], timestamp=3),
    ]}, format="json")

    def ids(**flt):
        r = client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 10, **flt}, format="json")
        assert r.status_code == 200, r.content
        return sorted(h["task_id"] for h in r.json()["episodes"])

    assert ids() == ["other", "task_a", "task_b"]  # no min_reward: negative rewards included
    assert ids(min_reward=0.5) == ["other", "task_b"]
    assert ids(tags_any=["neg", "high"]) == ["other", "task_a"]
    assert ids(tags_all=["x", "mid"]) == ["task_b"]
    assert ids(tags_any=[], tags_all=[]) == ["other", "task_a", "task_b"]
    assert ids(task_id_prefix="task_") == ["task_a", "task_b"]
    assert ids(source="agent-a", user_id="u1") == ["task_b"]
    assert ids(time_after=2, time_before=3) == ["other", "task_b"]
    assert ids(time_after=2, time_before=2) == ["task_b"]
    hit = client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 1, "include_embedding": True},
                      format="json").json()["episodes"][0]
    assert hit["state_embedding"] == vec(1.0)


def test_ties_prefer_newer_timestamp_then_later_store(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    first = client.post("/v1/episodes", ep(timestamp=5), format="json").json()["id"]
    second = client.post("/v1/episodes", ep(timestamp=5), format="json").json()["id"]
    newest = client.post("/v1/episodes", ep(timestamp=9), format="json").json()["id"]
    hits = client.post("/v1/query", {"query_embedding": vec(1.0), "top_k": 3}, format="json").json()["episodes"]
    assert [h["id"] for h in hits] == [newest, second, first]


def test_idempotent_store_and_conflict(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    eid = str(uuid.uuid4())
    assert client.post("/v1/episodes", ep(id=eid, tags=["a", "b"]), format="json").status_code == 201
    again = client.post("/v1/episodes", ep(id=eid, tags=["b", "a"]), format="json")
    assert again.status_code == 200 and again.json() == {"id": eid}
    conflict = client.post("/v1/episodes", ep(id=eid, reward=2.0), format="json")
    assert conflict.status_code == 409 and "id" in conflict.json()["error"]
    assert count(t) == 1
    batch = client.post("/v1/episodes/batch", {"episodes": [ep(id=eid, tags=["a", "b"]), ep()]}, format="json")
    assert batch.status_code == 201 and batch.json()["ids"][0] == eid and count(t) == 2
    retry = client.post("/v1/episodes/batch", {"episodes": [ep(id=eid, tags=["a", "b"])]}, format="json")
    assert retry.status_code == 200
    bad = client.post("/v1/episodes/batch", {"episodes": [ep(), ep(id=eid, reward=9.0)]}, format="json")
    assert bad.status_code == 409 and "episodes[1]" in bad.json()["error"] and count(t) == 2
    dup = client.post("/v1/episodes/batch", {"episodes": [ep(id=str(uuid.uuid4()))] * 2}, format="json")
    assert dup.status_code == 400 and "episodes[1].id" in dup.json()["error"] and count(t) == 2


BAD_EPISODES = [
    ({"state_embedding": vec(1.0)[:-1]}, "state_embedding"),
    ({"state_embedding": [0.0] * DIM}, "state_embedding"),
    ({"state_embedding": vec(1e39)}, "state_embedding"),
    ({"state_embedding": ["1"] * DIM}, "state_embedding"),
    ({"state_embedding": [[1.0]] * DIM}, "state_embedding"),
    ({"state_embedding": None}, "state_embedding"),
    ({"reward": "1"}, "reward"),
    ({"reward": True}, "reward"),
    ({"reward": 1e400}, "malformed JSON"),
    ({"task_id": ""}, "task_id"),
    ({"task_id": "x" * 513}, "task_id"),
    ({"task_id": 5}, "task_id"),
    ({"tags": ["t"] * 10 + [f"t{i}" for i in range(64)]}, "tags"),
    ({"tags": ["x" * 129]}, "tags"),
    ({"tags": [""]}, "tags"),
    ({"tags": "a"}, "tags"),
    ({"metadata": {"x": "y" * 70000}}, "metadata"),
    ({"metadata": [1]}, "metadata"),
    ({"steps": {"a": 1}}, "steps"),
    ({"timestamp": -1}, "timestamp"),
    ({"timestamp": 2**63}, "timestamp"),
    ({"timestamp": 1.5}, "timestamp"),
    ({"timestamp": "5"}, "timestamp"),
    ({"source": "s" * 257}, "source"),
    ({"user_id": 3}, "user_id"),
    ({"id": "not-a-uuid"}, "id"),
    ({"id": 12}, "id"),
    ({"rewrad": 1.0}, "rewrad"),
]


@pytest.mark.parametrize(("change", "field"), BAD_EPISODES)
def test_bad_episode_is_a_400_naming_the_field_and_stores_nothing(api, tenant, change, field):
    t, key = tenant
    client = api.as_key(key)
    body = ep(**change)
    if field == "malformed JSON":
        raw = b'{"task_id": "a", "state_embedding": [1,0,0,0,0,0,0,0], "reward": 1e400}'
        r = client.generic("POST", "/v1/episodes", raw, content_type="application/json")
    else:
        r = client.post("/v1/episodes", body, format="json")
    assert r.status_code == 400, r.content
    assert field in r.json()["error"]
    if field != "malformed JSON":
        batch = client.post("/v1/episodes/batch", {"episodes": [ep(), ep(), body]}, format="json")
        assert batch.status_code == 400 and batch.json()["error"].startswith("episodes[2]"), batch.json()
    assert count(t) == 0


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'{"task_id": NaN}', b"\xff\xfe", b'"x"'])
def test_malformed_bodies_are_400_json(api, tenant, raw):
    _, key = tenant
    r = api.as_key(key).generic("POST", "/v1/episodes", raw, content_type="application/json")
    assert r.status_code == 400 and "error" in r.json()


def test_required_fields_and_wrong_content_type(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    for missing in ("task_id", "state_embedding", "reward"):
        body = ep()
        del body[missing]
        r = client.post("/v1/episodes", body, format="json")
        assert r.status_code == 400 and missing in r.json()["error"]
    r = client.generic("POST", "/v1/episodes", b"task_id=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and "error" in r.json()


@pytest.mark.parametrize(("body", "field"), [
    ({"top_k": 0}, "top_k"), ({"top_k": 1001}, "top_k"), ({"top_k": -1}, "top_k"), ({"top_k": "5"}, "top_k"),
    ({"top_k": 2.5}, "top_k"), ({"topk": 5}, "topk"), ({"min_reward": "x"}, "min_reward"),
    ({"time_after": -5}, "time_after"), ({"time_before": 2**64}, "time_before"),
    ({"tags_any": "x"}, "tags_any"), ({"include_embedding": "yes"}, "include_embedding"),
    ({"query_embedding": [1.0]}, "query_embedding"),
])
def test_bad_query_is_a_400_naming_the_field(api, tenant, body, field):
    _, key = tenant
    payload = {"query_embedding": vec(1.0), **body}
    r = api.as_key(key).post("/v1/query", payload, format="json")
    assert r.status_code == 400 and field in r.json()["error"], r.content


def test_integral_floats_are_accepted_as_integers(api, tenant):
    _, key = tenant
    r = api.as_key(key).post("/v1/query", {"query_embedding": vec(1.0), "top_k": 5.0}, format="json")
    assert r.status_code == 200


def test_batch_over_the_limit_is_refused(api, tenant, settings):
    t, key = tenant
    settings.AGENT_MEM_MAX_BATCH = 3
    r = api.as_key(key).post("/v1/episodes/batch", {"episodes": [ep()] * 4}, format="json")
    assert r.status_code == 400 and "episodes" in r.json()["error"] and count(t) == 0


def test_prunes(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes/batch", {"episodes": [ep(timestamp=i, reward=float(i % 3)) for i in range(10)]},
                format="json")
    assert client.post("/v1/prune/older-than", {"timestamp_cutoff_ms": 2}, format="json").json() == {"removed": 2}
    assert client.post("/v1/prune/keep-newest", {"n": 6}, format="json").json() == {"removed": 2}
    assert sorted(Episode.objects.filter(tenant=t).values_list("timestamp", flat=True)) == [4, 5, 6, 7, 8, 9]
    assert client.post("/v1/prune/keep-highest-reward", {"n": 3}, format="json").json() == {"removed": 3}
    # rewards: 4->1, 5->2, 6->0, 7->1, 8->2, 9->0: keep 8, 5 (reward 2) then 7 (reward 1, newer than 4)
    assert sorted(Episode.objects.filter(tenant=t).values_list("timestamp", flat=True)) == [5, 7, 8]
    assert client.post("/v1/prune/keep-newest", {"n": 0}, format="json").json() == {"removed": 3}
    assert client.post("/v1/prune/keep-newest", {"n": 0}, format="json").json() == {"removed": 0}
    for path, body in [("older-than", {"timestamp_cutoff_ms": -1}), ("keep-newest", {"n": -1}),
                       ("keep-highest-reward", {"n": "3"}), ("keep-newest", {}), ("keep-newest", {"n": 1, "m": 2})]:
        r = client.post(f"/v1/prune/{path}", body, format="json")
        assert r.status_code == 400 and "error" in r.json()


def test_keep_newest_ties_keep_the_later_stored(api, tenant):
    t, key = tenant
    client = api.as_key(key)
    ids = client.post("/v1/episodes/batch", {"episodes": [ep(timestamp=7) for _ in range(3)]},
                      format="json").json()["ids"]
    client.post("/v1/prune/keep-newest", {"n": 1}, format="json")
    assert [str(i) for i in Episode.objects.filter(tenant=t).values_list("id", flat=True)] == [ids[2]]


def test_stats(api, tenant):
    _, key = tenant
    client = api.as_key(key)
    client.post("/v1/episodes", ep(), format="json")
    assert client.get("/v1/stats").json() == {"tenant": "acme", "dim": DIM, "metric": "cosine", "episodes": 1,
                                              "rate_limit": None, "max_episodes": None, "embedder": None}


def test_quota_refuses_a_store_that_would_exceed_it(api, make_tenant):
    t, key = make_tenant("small", max_episodes=3)
    client = api.as_key(key)
    assert client.post("/v1/episodes/batch", {"episodes": [ep(), ep()]}, format="json").status_code == 201
    r = client.post("/v1/episodes/batch", {"episodes": [ep(), ep()]}, format="json")
    assert r.status_code == 403 and "max_episodes" in r.json()["error"] and count(t) == 2
    assert client.post("/v1/episodes", ep(), format="json").status_code == 201
    assert client.post("/v1/episodes", ep(), format="json").status_code == 403 and count(t) == 3


@pytest.mark.parametrize("metric", ["l2", "dot"])
def test_other_metrics_accept_zero_vectors_and_score_higher_is_better(api, make_tenant, metric):
    _, key = make_tenant(f"m-{metric}", metric=metric)
    client = api.as_key(key)
    near = client.post("/v1/episodes", ep(state_embedding=vec(1.0)), format="json").json()["id"]
    client.post("/v1/episodes", ep(state_embedding=[0.0] * DIM), format="json")
    hits = client.post("/v1/query", {"query_embedding": vec(2.0)}, format="json").json()["episodes"]
    assert hits[0]["id"] == near
    expected = -1.0 if metric == "l2" else 2.0
    assert hits[0]["score"] == pytest.approx(expected)


def test_tenants_are_isolated(api, tenant, other_tenant):
    _, key_a = tenant
    t_b, key_b = other_tenant
    a = api.as_key(key_a)
    eid = a.post("/v1/episodes", ep(), format="json").json()["id"]
    b = api.as_key(key_b)
    assert b.get(f"/v1/episodes/{eid}").status_code == 404
    assert b.delete(f"/v1/episodes/{eid}").status_code == 404
    hits = b.post("/v1/query", {"query_embedding": vec(1.0)}, format="json").json()["episodes"]
    assert [h["task_id"] for h in hits] == [RIVAL_TASK_ID]  # its own episode only
    assert b.post("/v1/prune/keep-newest", {"n": 0}, format="json").json() == {"removed": 1}  # its own
    assert b.get("/v1/stats").json()["episodes"] == 0
    # The same client-chosen id in another tenant is a different episode.
    assert b.post("/v1/episodes", ep(id=eid, reward=3.0), format="json").status_code == 201
    a = api.as_key(key_a)
    assert a.get(f"/v1/episodes/{eid}").json()["reward"] == 1.0
    assert api.as_key(key_b).get(f"/v1/episodes/{eid}").json()["reward"] == 3.0


# ----- GET /v1/episodes parameters, NUL in JSON on store -----
@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


@pytest.mark.usefixtures("no_sweep_from_requests")
@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"), ("limit=1.5", "limit"),
    ("limit=", "limit"), ("limit=5&limit=6", "limit"), ("min_reward=abc", "min_reward"),
    ("min_reward=nan", "min_reward"), ("min_reward=1e999", "min_reward"), ("time_after=-1", "time_after"),
    ("time_before=9223372036854775808", "time_before"), ("time_after=x", "time_after"),
    ("tags_any=a,,b", "tags_any"), ("include_embedding=yes", "include_embedding"),
    ("topk=5", "topk"), ("bogus=1&limit=5&zzz=2", "bogus, zzz"), ("cursor=abc", "cursor"),
    ("source=a&source=b", "source"),
])
def test_bad_list_parameters_are_a_400_naming_them(client, query, field):
    r = client.get(f"/v1/episodes?{query}")
    assert r.status_code == 400, r.content
    assert r.json()["error"].startswith(f"{field}:"), r.json()


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_limit_bounds_are_accepted(client):
    store(client, ep())
    assert client.get("/v1/episodes?limit=1").status_code == 200
    assert client.get("/v1/episodes?limit=1000").status_code == 200
    assert client.get("/v1/episodes?limit=5&cursor=").status_code == 200  # empty cursor: first page


@pytest.mark.usefixtures("no_sweep_from_requests")
def test_nul_in_json_fields_is_a_400_on_store(client):
    for body in (ep(metadata={"a": "\u0000"}), ep(steps=[{"s": "x\u0000"}])):
        r = client.post("/v1/episodes", body, format="json")
        assert r.status_code == 400 and "NUL" in r.json()["error"], r.content
    r = client.post("/v1/episodes", ep(metadata={"a": "\\u0000 is text"}), format="json")
    assert r.status_code == 201  # a backslash followed by u0000 is ordinary text
    assert client.get(f"/v1/episodes/{r.json()['id']}").json()["metadata"] == {"a": "\\u0000 is text"}



# ----- no 5xx for anything a client sends -----
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PARAM_NAMES = ["limit", "cursor", "include_embedding", "min_reward", "tags_any", "tags_all", "task_id_prefix",
               "source", "user_id", "time_after", "time_before", "bogus"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)

FUZZ = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])



@pytest.mark.usefixtures("no_sweep_from_requests")
@FUZZ
@given(params=st.dictionaries(st.sampled_from(PARAM_NAMES), st.text(max_size=30), max_size=5))
def test_fuzzed_list_parameters_never_5xx(client, params):
    r = client.get("/v1/episodes", params)
    assert r.status_code in (200, 400), (params, r.content)
    assert set(r.json()) == ({"episodes", "next_cursor"} if r.status_code == 200 else {"error"})


@pytest.mark.usefixtures("no_sweep_from_requests")
@FUZZ
@given(body=st.dictionaries(st.sampled_from(["metadata", "metadata_merge", "tags", "reward", "task_id", "source",
                                             "user_id", "expires_at", "state_embedding", "x"]),
                            json_values, max_size=3))
def test_fuzzed_patch_never_5xx(client, body):
    eid = client.post("/v1/episodes", ep(), format="json").json()["id"]
    r = client.patch(f"/v1/episodes/{eid}", body, format="json")
    assert r.status_code in (200, 400), (body, r.content)


@pytest.mark.usefixtures("no_sweep_from_requests")
@FUZZ
@given(body=st.dictionaries(st.sampled_from(["ids", "filter", "x"]), json_values, max_size=2)
       | st.fixed_dictionaries({"filter": st.dictionaries(st.sampled_from(PARAM_NAMES[3:]), json_values,
                                                          max_size=3)}))
def test_fuzzed_delete_never_5xx(client, body):
    r = client.post("/v1/episodes/delete", body, format="json")
    assert r.status_code in (200, 400), (body, r.content)

