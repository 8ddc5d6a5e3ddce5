"""Model-based test: random store / batch / delete / prune / query / list / patch / save / load sequences over three tenants on a
real 3-worker gunicorn, checked after every step against a plain-Python model (tests/reliability/model.py).
Beside each tenant's tenant-wide key act two end users: u1 through a user-bound key, u2 through a
tenant-signed token (docs/api.md §2); they must only ever see and change their own episodes.

Embeddings are integer vectors of dim 4 with entries in [-2, 2], rewards and timestamps come from
tiny ranges: ties in score, reward and timestamp are frequent, so the tie-break of docs/api.md §9.4 is exercised.
Every request uses a new connection, so consecutive steps land on different workers.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from memcloud_client import mint_user_token

from tests.support.tenants import fresh_client, unique_slug

from .model import TenantModel, check_query
from .support import error_message, record

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DIM = 4
METRICS = ("cosine", "dot", "l2")
TIMESTAMPS = (1_000, 1_001, 1_002, 1_003)
USERS = ("u1", "u2")  # u1: a user-bound key; u2: a tenant-signed token

vector = st.lists(st.integers(-2, 2), min_size=DIM, max_size=DIM).filter(any)
episode_body = st.fixed_dictionaries(
    {"task_id": st.sampled_from(["task_a", "task_b", "other"]), "state_embedding": vector,
     "reward": st.integers(-1, 2), "timestamp": st.sampled_from(TIMESTAMPS)},
    optional={"tags": st.lists(st.sampled_from("abc"), max_size=3),
              "source": st.sampled_from(["s1", "s2"]), "user_id": st.just("u1"),
              "metadata": st.fixed_dictionaries({"n": st.integers(0, 3)})},
)
query_filters = st.fixed_dictionaries(
    {},
    optional={"min_reward": st.integers(-1, 2), "tags_any": st.lists(st.sampled_from("abcd"), max_size=2),
              "tags_all": st.lists(st.sampled_from("abc"), max_size=2),
              "task_id_prefix": st.sampled_from(["task_", "o", "task_a", "x"]),
              "source": st.sampled_from(["s1", "s2"]), "user_id": st.sampled_from(["u1", "u2"]),
              "time_after": st.sampled_from(TIMESTAMPS), "time_before": st.sampled_from(TIMESTAMPS)},
)


class Tally:
    requests = 0
    server_errors = 0
    leaks = 0
    lost = 0
    lenient = 0
    steps = 0


class MemcloudMachine(RuleBasedStateMachine):
    clients: list[httpx.Client] = []
    user_clients: list[dict[str, httpx.Client]] = []  # per tenant: user -> the user's bound client
    slugs: list[str] = []

    def __init__(self) -> None:
        super().__init__()
        self.models = [TenantModel(slug=slug, metric=metric) for slug, metric in zip(self.slugs, METRICS, strict=True)]
        self.saved: list[dict[str, list]] = [{} for _ in self.models]  # per tenant: snapshot name -> episodes

    # ----- plumbing -----
    def every_page(self, t: int, params: dict, limit: int, user: str | None = None) -> list[str]:
        """The ids of every page of GET /v1/episodes with `params`, following next_cursor."""
        seen, cursor = [], None
        for _ in range(100):
            page = self.call(t, "GET", "/v1/episodes", params={**params, "limit": limit,
                                                                **({"cursor": cursor} if cursor else {})}, user=user)
            assert page.status_code == 200, page.text
            seen += [e["id"] for e in page.json()["episodes"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        return seen

    def call(self, t: int, method: str, path: str, body: Any = None, params: dict | None = None,
             user: str | None = None) -> httpx.Response:
        client = self.clients[t] if user is None else self.user_clients[t][user]
        response = client.request(method, path, json=body, params=params)
        Tally.requests += 1
        if response.status_code >= 500:
            Tally.server_errors += 1
        assert response.status_code < 500, (method, path, response.status_code, response.text[:500])
        if response.status_code >= 400:
            error_message(response)
        return response

    def pick(self, t: int, i: int) -> str | None:
        ids = sorted(self.models[t].episodes)
        return ids[i % len(ids)] if ids else None

    def learn_timestamp(self, t: int, episode_id: str, body: dict) -> int:
        if "timestamp" in body:
            return body["timestamp"]
        return self.call(t, "GET", f"/v1/episodes/{episode_id}").json()["timestamp"]

    # ----- rules -----
    @initialize()
    def empty_every_tenant(self) -> None:
        for t in range(len(self.models)):
            self.call(t, "POST", "/v1/prune/keep-newest", {"n": 0})

    @rule(t=st.integers(0, 2), body=episode_body, client_id=st.booleans())
    def store(self, t: int, body: dict, client_id: bool) -> None:
        if client_id:
            body = {**body, "id": str(uuid.uuid4())}
        r = self.call(t, "POST", "/v1/episodes", body)
        assert r.status_code == 201, r.text
        episode_id = r.json()["id"]
        self.models[t].add(episode_id, body, self.learn_timestamp(t, episode_id, body))

    @rule(t=st.integers(0, 2), body=episode_body)
    def store_at_server_time(self, t: int, body: dict) -> None:
        self.store(t, {k: v for k, v in body.items() if k != "timestamp"}, client_id=False)

    @rule(t=st.integers(0, 2), bodies=st.lists(episode_body, min_size=1, max_size=6))
    def batch(self, t: int, bodies: list[dict]) -> None:
        r = self.call(t, "POST", "/v1/episodes/batch", {"episodes": bodies})
        assert r.status_code == 201, r.text
        ids = r.json()["ids"]
        assert len(ids) == len(bodies) == len(set(ids))
        for episode_id, body in zip(ids, bodies, strict=True):
            self.models[t].add(episode_id, body, self.learn_timestamp(t, episode_id, body))

    @rule(t=st.integers(0, 2), bodies=st.lists(episode_body, min_size=1, max_size=4), bad=st.integers(0, 3))
    def batch_with_one_bad_episode(self, t: int, bodies: list[dict], bad: int) -> None:
        bad %= len(bodies)
        bodies = [*bodies[:bad], {**bodies[bad], "reward": "high"}, *bodies[bad + 1:]]
        r = self.call(t, "POST", "/v1/episodes/batch", {"episodes": bodies})
        assert r.status_code == 400 and f"episodes[{bad}].reward" in r.json()["error"], r.text

    @rule(t=st.integers(0, 2), i=st.integers(0, 10**6), same=st.booleans())
    def retry_store(self, t: int, i: int, same: bool) -> None:
        episode_id = self.pick(t, i)
        if episode_id is None:
            return
        if self.models[t].episodes[episode_id].patched:
            return  # a PATCH changed what a retry of the original body would be compared with
        body = {**self.models[t].episodes[episode_id].body, "id": episode_id}
        if not same:
            body["reward"] = body["reward"] + 10
        r = self.call(t, "POST", "/v1/episodes", body)
        if same:
            assert r.status_code == 200 and r.json() == {"id": episode_id}, r.text
        else:
            assert r.status_code == 409, r.text

    @rule(t=st.integers(0, 2), i=st.integers(0, 10**6))
    def delete(self, t: int, i: int) -> None:
        episode_id = self.pick(t, i)
        if episode_id is None:
            return
        r = self.call(t, "DELETE", f"/v1/episodes/{episode_id}")
        assert r.status_code == 200 and r.json() == {"removed": 1}, r.text
        del self.models[t].episodes[episode_id]

    @rule(t=st.integers(0, 2), other=st.integers(1, 2), i=st.integers(0, 10**6), verb=st.sampled_from(["GET", "DELETE"]))
    def touch_another_tenants_episode(self, t: int, other: int, i: int, verb: str) -> None:
        episode_id = self.pick((t + other) % 3, i) or str(uuid.uuid4())
        r = self.call(t, verb, f"/v1/episodes/{episode_id}")
        if r.status_code != 404:
            Tally.leaks += 1
        assert r.status_code == 404, r.text

    @rule(t=st.integers(0, 2), i=st.integers(0, 10**6))
    def get_own(self, t: int, i: int) -> None:
        episode_id = self.pick(t, i)
        if episode_id is None:
            return
        r = self.call(t, "GET", f"/v1/episodes/{episode_id}")
        e = self.models[t].episodes[episode_id]
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["id"], got["state_embedding"], got["reward"], got["timestamp"]) == (
            e.id, [float(x) for x in e.emb], e.reward, e.timestamp)

    # ----- listing, PATCH and delete by ids or filter (docs/api.md §8) -----
    @rule(t=st.integers(0, 2), limit=st.integers(1, 4), flt=query_filters)
    def list_every_page(self, t: int, limit: int, flt: dict) -> None:
        params = {k: ",".join(v) if isinstance(v, list) else v for k, v in flt.items()}
        seen = self.every_page(t, params, limit)
        model = self.models[t]
        expected = [e.id for e in model.newest_first() if model.matches(e, flt)]
        Tally.leaks += len(set(seen) - set(model.episodes))
        assert seen == expected, (flt, limit)

    @rule(t=st.integers(0, 2), i=st.integers(0, 10**6), changes=st.fixed_dictionaries({}, optional={
        "reward": st.integers(-1, 2), "tags": st.lists(st.sampled_from("abc"), max_size=3),
        "task_id": st.sampled_from(["task_a", "other"]), "source": st.sampled_from([None, "s1", "s2"]),
        "user_id": st.sampled_from([None, "u1"])}).filter(bool))
    def patch(self, t: int, i: int, changes: dict) -> None:
        episode_id = self.pick(t, i)
        if episode_id is None:
            return
        r = self.call(t, "PATCH", f"/v1/episodes/{episode_id}", changes)
        assert r.status_code == 200, r.text
        self.models[t].patch(episode_id, changes)
        got = r.json()
        for name, value in changes.items():
            assert got[name] == (list(dict.fromkeys(value)) if name == "tags" else value), (name, got)

    @rule(t=st.integers(0, 2), picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
          foreign=st.booleans())
    def delete_by_ids(self, t: int, picks: list[int], foreign: bool) -> None:
        ids = [i for i in (self.pick(t, p) for p in picks) if i is not None]
        if foreign:
            ids += [i for i in (self.pick((t + 1) % 3, p) for p in picks) if i is not None] + [str(uuid.uuid4())]
        if not ids:
            return
        r = self.call(t, "POST", "/v1/episodes/delete", {"ids": ids})
        assert r.json() == {"removed": self.models[t].delete_ids(ids)}, r.text

    @rule(t=st.integers(0, 2), flt=query_filters.filter(bool))
    def delete_by_filter(self, t: int, flt: dict) -> None:
        r = self.call(t, "POST", "/v1/episodes/delete", {"filter": flt})
        if not any(v not in (None, [], "") for v in flt.values()):
            assert r.status_code == 400
            return
        assert r.json() == {"removed": self.models[t].delete_matching(flt)}, (flt, r.text)

    # ----- snapshots (docs/api.md §4) -----
    @rule(t=st.integers(0, 2))
    def save(self, t: int) -> None:
        name = f"mb-{uuid.uuid4().hex[:10]}"
        r = self.call(t, "POST", "/v1/save", {"path": name})
        assert r.json() == {"ok": True, "path": name, "episodes": len(self.models[t].episodes)}, r.text
        self.saved[t][name] = self.models[t].snapshot()

    @rule(t=st.integers(0, 2), i=st.integers(0, 10**6))
    def load(self, t: int, i: int) -> None:
        if not self.saved[t]:
            return
        name = sorted(self.saved[t])[i % len(self.saved[t])]
        r = self.call(t, "POST", "/v1/load", {"path": name})
        assert r.json() == {"ok": True, "episodes": len(self.saved[t][name])}, r.text
        self.models[t].load(self.saved[t][name])

    @rule(t=st.integers(0, 2), other=st.integers(1, 2), i=st.integers(0, 10**6))
    def load_another_tenants_snapshot(self, t: int, other: int, i: int) -> None:
        names = sorted(self.saved[(t + other) % 3])
        if not names:
            return
        r = self.call(t, "POST", "/v1/load", {"path": names[i % len(names)]})
        Tally.leaks += r.status_code != 404
        assert r.status_code == 404, r.text

    @rule(t=st.integers(0, 2), cutoff=st.sampled_from((*TIMESTAMPS, 1_004)))
    def prune_older_than(self, t: int, cutoff: int) -> None:
        r = self.call(t, "POST", "/v1/prune/older-than", {"timestamp_cutoff_ms": cutoff})
        assert r.json() == {"removed": self.models[t].prune_older_than(cutoff)}

    @rule(t=st.integers(0, 2), n=st.integers(0, 6))
    def prune_keep_newest(self, t: int, n: int) -> None:
        r = self.call(t, "POST", "/v1/prune/keep-newest", {"n": n})
        assert r.json() == {"removed": self.models[t].prune_keep_newest(n)}

    @rule(t=st.integers(0, 2), n=st.integers(0, 6))
    def prune_keep_highest_reward(self, t: int, n: int) -> None:
        r = self.call(t, "POST", "/v1/prune/keep-highest-reward", {"n": n})
        assert r.json() == {"removed": self.models[t].prune_keep_highest_reward(n)}

    @rule(t=st.integers(0, 2), q=vector, top_k=st.integers(1, 8), flt=query_filters)
    def query(self, t: int, q: list[int], top_k: int, flt: dict) -> None:
        r = self.call(t, "POST", "/v1/query", {"query_embedding": q, "top_k": top_k, **flt})
        assert r.status_code == 200, r.text
        answer = r.json()["episodes"]
        if any(hit["id"] not in self.models[t].episodes for hit in answer):
            Tally.leaks += 1
        Tally.lenient += check_query(self.models[t], tuple(q), flt, top_k, answer)

    # ----- end users: a user-bound key (u1) and a token (u2) beside the tenant key -----
    def refused(self, r: httpx.Response, status: int, field: str | None = None) -> None:
        Tally.leaks += r.status_code < 400
        assert r.status_code == status, (r.status_code, r.text)
        if field is not None:
            assert error_message(r).startswith(f"{field}: "), r.text

    def pick_own(self, t: int, user: str, i: int, *, own: bool = True) -> str | None:
        ids = sorted(e.id for e in self.models[t].episodes.values() if (e.user_id == user) == own)
        return ids[i % len(ids)] if ids else None

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), bodies=st.lists(episode_body, min_size=1, max_size=4))
    def store_as_user(self, t: int, user: str, bodies: list[dict]) -> None:
        one = len(bodies) == 1
        r = (self.call(t, "POST", "/v1/episodes", bodies[0], user=user) if one
             else self.call(t, "POST", "/v1/episodes/batch", {"episodes": bodies}, user=user))
        bad = [i for i, b in enumerate(bodies) if b.get("user_id", user) != user]
        if bad:
            self.refused(r, 403, "user_id" if one else f"episodes[{bad[0]}].user_id")
            return
        assert r.status_code == 201, r.text
        for episode_id, body in zip([r.json()["id"]] if one else r.json()["ids"], bodies, strict=True):
            self.models[t].add(episode_id, {**body, "user_id": user}, self.learn_timestamp(t, episode_id, body))

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), i=st.integers(0, 10**6),
          verb=st.sampled_from(["GET", "DELETE", "PATCH"]))
    def touch_another_users_episode(self, t: int, user: str, i: int, verb: str) -> None:
        episode_id = self.pick_own(t, user, i, own=False) or str(uuid.uuid4())
        r = self.call(t, verb, f"/v1/episodes/{episode_id}", {"reward": 2} if verb == "PATCH" else None, user=user)
        self.refused(r, 404)

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), i=st.integers(0, 10**6),
          changes=st.fixed_dictionaries({}, optional={"reward": st.integers(-1, 2),
                                                      "user_id": st.sampled_from([None, *USERS])}).filter(bool))
    def patch_as_user(self, t: int, user: str, i: int, changes: dict) -> None:
        episode_id = self.pick_own(t, user, i)
        if episode_id is None:
            return
        r = self.call(t, "PATCH", f"/v1/episodes/{episode_id}", changes, user=user)
        if changes.get("user_id", user) != user:
            self.refused(r, 403, "user_id")
            return
        assert r.status_code == 200 and r.json()["user_id"] == user, r.text
        self.models[t].patch(episode_id, changes)

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), limit=st.integers(1, 4), flt=query_filters)
    def list_as_user(self, t: int, user: str, limit: int, flt: dict) -> None:
        params = {k: ",".join(v) if isinstance(v, list) else v for k, v in flt.items()}
        if flt.get("user_id", user) != user:
            self.refused(self.call(t, "GET", "/v1/episodes", params=params, user=user), 403, "user_id")
            return
        seen = self.every_page(t, params, limit, user=user)
        model = self.models[t]
        Tally.leaks += len([i for i in seen if i not in model.episodes or not model.owns(user, i)])
        assert seen == [e.id for e in model.newest_first(user) if model.matches(e, flt)], (user, flt, limit)

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), q=vector, top_k=st.integers(1, 8), flt=query_filters)
    def query_as_user(self, t: int, user: str, q: list[int], top_k: int, flt: dict) -> None:
        r = self.call(t, "POST", "/v1/query", {"query_embedding": q, "top_k": top_k, **flt}, user=user)
        if flt.get("user_id", user) != user:
            self.refused(r, 403, "user_id")
            return
        assert r.status_code == 200, r.text
        answer = r.json()["episodes"]
        Tally.leaks += len([h for h in answer if h["user_id"] != user])
        Tally.lenient += check_query(self.models[t], tuple(q), {**flt, "user_id": user}, top_k, answer)

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), picks=st.lists(st.integers(0, 10**6), min_size=1,
                                                                             max_size=4))
    def delete_by_ids_as_user(self, t: int, user: str, picks: list[int]) -> None:
        ids = [i for i in (self.pick(t, p) for p in picks) if i is not None]  # any user's
        if not ids:
            return
        r = self.call(t, "POST", "/v1/episodes/delete", {"ids": ids}, user=user)
        assert r.json() == {"removed": self.models[t].delete_ids(ids, user)}, r.text

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), flt=query_filters.filter(bool))
    def delete_by_filter_as_user(self, t: int, user: str, flt: dict) -> None:
        r = self.call(t, "POST", "/v1/episodes/delete", {"filter": flt}, user=user)
        if not any(v not in (None, [], "") for v in flt.values()):
            assert r.status_code == 400
        elif flt.get("user_id", user) != user:
            self.refused(r, 403, "filter.user_id")
        else:
            assert r.json() == {"removed": self.models[t].delete_matching({**flt, "user_id": user})}, (flt, r.text)

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS), n=st.integers(0, 3),
          cutoff=st.sampled_from((*TIMESTAMPS, 1_004)), op=st.sampled_from(["older-than", "keep-newest",
                                                                            "keep-highest-reward"]))
    def prune_as_user(self, t: int, user: str, n: int, cutoff: int, op: str) -> None:
        body = {"timestamp_cutoff_ms": cutoff} if op == "older-than" else {"n": n}
        r = self.call(t, "POST", f"/v1/prune/{op}", body, user=user)
        model = self.models[t]
        expected = (model.prune_older_than(cutoff, user) if op == "older-than"
                    else model.prune_keep_newest(n, user) if op == "keep-newest"
                    else model.prune_keep_highest_reward(n, user))
        assert r.json() == {"removed": expected}, r.text

    @rule(t=st.integers(0, 2), user=st.sampled_from(USERS))
    def tenant_wide_refused_to_users(self, t: int, user: str) -> None:
        self.refused(self.call(t, "POST", "/v1/save", {"path": f"mb-{uuid.uuid4().hex[:10]}"}, user=user), 403)
        names = sorted(self.saved[t])
        if names:
            self.refused(self.call(t, "POST", "/v1/load", {"path": names[0]}, user=user), 403)

    # ----- after every step -----
    @invariant()
    def every_tenant_holds_exactly_its_model(self) -> None:
        Tally.steps += 1
        for t, model in enumerate(self.models):
            assert self.call(t, "GET", "/v1/stats").json()["episodes"] == len(model.episodes)
            r = self.call(t, "POST", "/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 1000})
            seen = {hit["id"] for hit in r.json()["episodes"]}
            Tally.leaks += len(seen - set(model.episodes))
            Tally.lost += len(set(model.episodes) - seen)
            assert seen == set(model.episodes), (model.slug, seen ^ set(model.episodes))
            Tally.lenient += check_query(model, (1, 0, 0, 0), {}, 1000, r.json()["episodes"])
            for user in USERS:
                assert self.call(t, "GET", "/v1/stats", user=user).json()["episodes"] == len(model.of(user)), user


def test_api_matches_the_model(memcloud_server):
    slugs = [unique_slug(f"mb-{metric}") for metric in METRICS]
    keys = [memcloud_server.create_tenant(slug, "--dim", str(DIM), "--metric", metric)
            for slug, metric in zip(slugs, METRICS, strict=True)]
    clients = [fresh_client(memcloud_server.url, key) for key in keys]
    user_clients = [{"u1": fresh_client(memcloud_server.url, memcloud_server.manage("issuekey", slug, "--user-id", "u1")),
                     "u2": fresh_client(memcloud_server.url, mint_user_token(
                         memcloud_server.manage("signingkey", slug), slug, "u2", "write", 6 * 3600))}
                    for slug in slugs]
    MemcloudMachine.clients, MemcloudMachine.slugs, MemcloudMachine.user_clients = clients, slugs, user_clients
    try:
        run_state_machine_as_test(MemcloudMachine, settings=settings(
            max_examples=16, stateful_step_count=25, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        for client in [*clients, *(c for users in user_clients for c in users.values())]:
            client.close()
        record("model_based", requests=Tally.requests, server_errors=Tally.server_errors, leaks=Tally.leaks,
               episodes_lost=Tally.lost, steps=Tally.steps, float_lenient_positions=Tally.lenient,
               command="pytest tests/reliability/test_model_based.py")
