"""User-bound keys and tokens (docs/api.md §2), probed as an attacker would: alice's key and alice's
token aimed at bob's episodes over every route and method. Zero leaks and zero writes: after every
probe, bob's episodes (and the episodes of no user) are exactly as they were."""

from __future__ import annotations

import uuid

import pytest

from .user_world import DIM, SLUG, body, client, command, make_world

pytestmark = pytest.mark.django_db
KINDS = ("key", "token")


@pytest.fixture
def world(make_tenant):
    return make_world(make_tenant)


@pytest.fixture(params=KINDS)
def alice(request, world):
    return client(world.credential(request.param, "alice"))


def untouched(world, before: dict) -> None:
    """Nothing but alice's episodes changed."""
    after = world.snapshot()
    others = {i for i, e in before.items() if e["user_id"] != "alice"}
    assert {i: after.get(i) for i in others} == {i: before[i] for i in others}
    assert all(e["user_id"] == "alice" for i, e in after.items() if i not in others)


def error(r, status: int, field: str | None = None) -> str:
    assert r.status_code == status, (r.status_code, r.content)
    message = r.json()["error"]
    if field is not None:
        assert message.startswith(f"{field}: "), message
    return message


def test_every_read_sees_only_the_bound_user(world, alice):
    before = world.snapshot()
    for other in (*world.ids["bob"], *world.ids[None]):
        error(alice.get(f"/v1/episodes/{other}"), 404)
        assert alice.head(f"/v1/episodes/{other}").status_code == 404
    for own in world.ids["alice"]:
        assert alice.get(f"/v1/episodes/{own}").json()["user_id"] == "alice"
    listed = alice.get("/v1/episodes", {"limit": 1000}).json()
    assert sorted(e["id"] for e in listed["episodes"]) == sorted(world.ids["alice"])
    assert [e["id"] for e in alice.get("/v1/episodes", {"user_id": "alice"}).json()["episodes"]] == \
        [e["id"] for e in listed["episodes"]]
    error(alice.get("/v1/episodes", {"user_id": "bob"}), 403, "user_id")
    hits = alice.post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 100}, format="json").json()
    assert sorted(h["id"] for h in hits["episodes"]) == sorted(world.ids["alice"])
    for mode in ({"user_id": "bob"}, {"user_id": "bob", "tags_any": ["t"]}):
        r = alice.post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 100, **mode}, format="json")
        error(r, 403, "user_id")
    hits = alice.post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 100, "user_id": "alice",
                                    "include_embedding": True, "min_reward": 1}, format="json").json()
    assert {h["user_id"] for h in hits["episodes"]} == {"alice"}
    stats = alice.get("/v1/stats").json()
    assert stats["episodes"] == len(world.ids["alice"]) and stats["tenant"] == SLUG
    untouched(world, before)


def test_cursors_are_bound_to_the_user(world, alice):
    own_page = alice.get("/v1/episodes", {"limit": 1}).json()
    assert alice.get("/v1/episodes", {"limit": 1, "cursor": own_page["next_cursor"]}).status_code == 200
    foreign = [
        client(world.keys["bob"]).get("/v1/episodes", {"limit": 1}).json()["next_cursor"],
        client(world.credential("token", "bob")).get("/v1/episodes", {"limit": 1}).json()["next_cursor"],
        world.admin.get("/v1/episodes", {"limit": 1}).json()["next_cursor"],
        world.admin.get("/v1/episodes", {"limit": 1, "user_id": "alice"}).json()["next_cursor"],
    ]
    for cursor in foreign:
        assert cursor is not None
        error(alice.get("/v1/episodes", {"limit": 1, "cursor": cursor}), 400, "cursor")
    # And the other way round: alice's cursor is nobody else's.
    error(client(world.keys["bob"]).get("/v1/episodes", {"limit": 1, "cursor": own_page["next_cursor"]}),
          400, "cursor")
    error(world.admin.get("/v1/episodes", {"limit": 1, "cursor": own_page["next_cursor"], "user_id": "alice"}),
          400, "cursor")


def test_writes_are_stamped_and_never_name_another_user(world, alice):
    before = world.snapshot()
    r = alice.post("/v1/episodes", body(50), format="json")
    assert r.status_code == 201
    assert world.admin.get(f"/v1/episodes/{r.json()['id']}").json()["user_id"] == "alice"
    assert alice.post("/v1/episodes", body(51, user_id="alice"), format="json").status_code == 201
    assert alice.post("/v1/episodes", body(52, user_id=None), format="json").status_code == 201
    error(alice.post("/v1/episodes", body(53, user_id="bob"), format="json"), 403, "user_id")
    batch = {"episodes": [body(54), body(55, user_id="bob"), body(56)]}
    error(alice.post("/v1/episodes/batch", batch, format="json"), 403, "episodes[1].user_id")
    ids = alice.post("/v1/episodes/batch", {"episodes": [body(57), body(58, user_id="alice")]},
                     format="json").json()["ids"]
    assert {world.admin.get(f"/v1/episodes/{i}").json()["user_id"] for i in ids} == {"alice"}
    # Reusing bob's id: a conflict (ids are unique in the tenant), bob's episode unchanged.
    bobs = world.ids["bob"][0]
    r = alice.post("/v1/episodes", {**body(0), "id": bobs}, format="json")
    assert r.status_code == 409 and "bob" not in r.json()["error"]
    after = world.snapshot()
    assert len(after) == len(before) + 5
    untouched(world, before)


def test_put_replaces_only_the_users_own_episodes(world, alice):
    before = world.snapshot()
    for other in (*world.ids["bob"], *world.ids[None]):
        r = alice.put(f"/v1/episodes/{other}", body(60), format="json")
        assert r.status_code == 409 and "bob" not in r.json()["error"], (r.status_code, r.content)
    fresh = str(uuid.uuid4())
    assert alice.put(f"/v1/episodes/{fresh}", body(61), format="json").status_code == 201
    assert world.admin.get(f"/v1/episodes/{fresh}").json()["user_id"] == "alice"
    error(alice.put(f"/v1/episodes/{fresh}", body(62, user_id="bob"), format="json"), 403, "user_id")
    own = world.ids["alice"][0]
    r = alice.put(f"/v1/episodes/{own}", body(63), format="json")
    assert r.status_code == 200 and world.admin.get(f"/v1/episodes/{own}").json()["task_id"] == "task_63"
    untouched(world, before)


def test_patch_cannot_reach_or_move_to_another_user(world, alice):
    before = world.snapshot()
    for other in (*world.ids["bob"], *world.ids[None]):
        error(alice.patch(f"/v1/episodes/{other}", {"reward": 9}, format="json"), 404)
        error(alice.patch(f"/v1/episodes/{other}", {"user_id": "alice"}, format="json"), 404)
    own = world.ids["alice"][0]
    error(alice.patch(f"/v1/episodes/{own}", {"user_id": "bob"}, format="json"), 403, "user_id")
    error(alice.patch(f"/v1/episodes/{own}", {"user_id": None, "reward": 3}, format="json"), 403, "user_id")
    assert world.admin.get(f"/v1/episodes/{own}").json() == before[own] | {"state_embedding":
                                                                            before[own]["state_embedding"]}
    r = alice.patch(f"/v1/episodes/{own}", {"user_id": "alice", "reward": 7}, format="json")
    assert r.status_code == 200 and r.json()["reward"] == 7 and r.json()["user_id"] == "alice"
    untouched(world, before)


def test_deletes_and_prunes_remove_only_the_users_episodes(world, alice):
    before = world.snapshot()
    for other in (*world.ids["bob"], *world.ids[None]):
        error(alice.delete(f"/v1/episodes/{other}"), 404)
    mixed = [*world.ids["bob"], *world.ids[None], world.ids["alice"][0], str(uuid.uuid4())]
    assert alice.post("/v1/episodes/delete", {"ids": mixed}, format="json").json() == {"removed": 1}
    error(alice.post("/v1/episodes/delete", {"filter": {"user_id": "bob"}}, format="json"), 403, "filter.user_id")
    error(alice.post("/v1/episodes/delete", {"filter": {}}, format="json"), 400, "filter")
    assert alice.post("/v1/episodes/delete", {"filter": {"tags_any": ["t"], "min_reward": 3}},
                      format="json").json() == {"removed": 1}  # alice's reward-3 episode
    assert alice.post("/v1/prune/keep-highest-reward", {"n": 1}, format="json").json() == {"removed": 1}
    assert alice.post("/v1/prune/keep-newest", {"n": 1}, format="json").json() == {"removed": 0}
    assert alice.post("/v1/prune/older-than", {"timestamp_cutoff_ms": 2**62}, format="json").json() == {"removed": 1}
    assert alice.post("/v1/prune/keep-newest", {"n": 0}, format="json").json() == {"removed": 0}
    assert alice.get("/v1/stats").json()["episodes"] == 0
    after = world.snapshot()
    assert set(after) == set(before) - set(world.ids["alice"])
    untouched(world, before)
    assert world.admin.get("/v1/stats").json()["episodes"] == len(world.ids["bob"]) + len(world.ids[None])


def test_tenant_wide_endpoints_are_refused(world, alice):
    before = world.snapshot()
    assert world.admin.post("/v1/save", {"path": "snap-1"}, format="json").status_code == 200
    for method, path, data in (("post", "/v1/save", {"path": "snap-2"}), ("post", "/v1/load", {"path": "snap-1"}),
                               ("get", "/v1/snapshots", None), ("post", "/v1/checkpoint", {})):
        r = getattr(alice, method)(path, data, format="json") if data is not None else alice.get(path)
        assert "whole tenant" in error(r, 403)
    untouched(world, before)


@pytest.mark.parametrize("kind", KINDS)
def test_read_scope_reads_its_user_and_writes_nothing(world, kind):
    before = world.snapshot()
    reader = client(world.credential(kind, "alice", scope="read"))
    assert reader.get("/v1/stats").json()["episodes"] == len(world.ids["alice"])
    error(reader.post("/v1/episodes", body(70), format="json"), 403)
    error(reader.delete(f"/v1/episodes/{world.ids['alice'][0]}"), 403)
    error(reader.post("/v1/prune/keep-newest", {"n": 0}, format="json"), 403)
    assert world.snapshot() == before


def test_bound_users_stay_apart_under_interleaved_writes(world):
    """Each of bob's credentials and alice's works on its own user while the other writes."""
    alice_token = client(world.credential("token", "alice"))
    bob_key = client(world.keys["bob"])
    alice_token.post("/v1/episodes", body(80), format="json")
    bob_key.post("/v1/episodes", body(81), format="json")
    for who, user in ((alice_token, "alice"), (bob_key, "bob")):
        hits = who.post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 100}, format="json").json()
        assert {h["user_id"] for h in hits["episodes"]} == {user}
        assert len(hits["episodes"]) == len(world.ids[user]) + 1 == who.get("/v1/stats").json()["episodes"]


def test_issuekey_binds_a_user_and_refuses_an_admin_binding(make_tenant):
    from django.core.management.base import CommandError

    from tenants.models import ApiKey
    from tenants.services import key_roll

    make_tenant(SLUG, dim=DIM)
    raw = command("issuekey", SLUG, "--user-id", "carol", "--scope", "read")
    key = ApiKey.objects.get(prefix=raw[3:11])
    assert (key.user_id, key.scope) == ("carol", "read")
    with pytest.raises(CommandError, match="admin"):
        command("issuekey", SLUG, "--user-id", "carol", "--scope", "admin")
    with pytest.raises(CommandError, match="user_id"):
        command("issuekey", SLUG, "--user-id", "x" * 257)
    new, _ = key_roll(prefix=key.prefix)
    assert (new.user_id, new.scope) == ("carol", "read")  # a rolled key keeps its binding


def test_usage_is_recorded_per_user_within_the_tenant(world):
    from django.db.models import Sum

    from core.models import UsageMinute

    def requests_of(user: str) -> int:
        return UsageMinute.objects.filter(user_id=user).aggregate(n=Sum("requests"))["n"] or 0

    before = {u: requests_of(u) for u in ("alice", "bob", "")}
    for kind in KINDS:
        alice = client(world.credential(kind, "alice"))
        alice.get("/v1/stats")
        alice.post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 3}, format="json")
    world.admin.get("/v1/stats")
    assert requests_of("alice") - before["alice"] == 4
    assert requests_of("bob") == before["bob"]
    assert requests_of("") - before[""] == 1
    # Rate limits and quotas stay per tenant: one tenant row set, whoever the user.
    assert set(UsageMinute.objects.values_list("tenant__slug", flat=True)) == {SLUG}


def test_audit_lines_name_the_user_and_the_credential(world, settings, tmp_path):
    import orjson

    settings.AGENT_MEM_AUDIT_LOG = str(tmp_path / "audit.jsonl")
    kid = world.signing_key.split(".")[0]
    client(world.keys["alice"]).post("/v1/episodes", body(60), format="json")
    client(world.credential("token", "bob")).post("/v1/query", {"query_embedding": [1, 0, 0, 0], "top_k": 2},
                                                  format="json")
    world.admin.get(f"/v1/episodes/{world.ids['alice'][0]}")
    world.admin.post("/v1/prune/older-than", {"timestamp_cutoff_ms": 0}, format="json")
    lines = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    by_op = {line["op"]: line for line in lines}
    assert by_op["store_episode"]["user_id"] == "alice"
    assert by_op["store_episode"]["key_prefix"] == world.keys["alice"][3:11]
    assert by_op["query"]["user_id"] == "bob" and by_op["query"]["key_prefix"] == kid
    assert "user_id" not in by_op["prune_older_than"]  # a tenant-wide key
    assert world.signing_key.split(".")[1].encode() not in (tmp_path / "audit.jsonl").read_bytes()


def test_the_admin_binds_keys_and_creates_signing_keys_shown_once(make_tenant, admin_client):
    import re

    from tenants.models import ApiKey, SigningKey

    tenant, _ = make_tenant(SLUG, dim=DIM)
    base = {"tenant": tenant.pk, "name": "", "expires_at_0": "", "expires_at_1": ""}
    r = admin_client.post("/admin/tenants/apikey/add/", {**base, "scope": "admin", "user_id": "dora"})
    assert r.status_code == 200 and b"never &#x27;admin&#x27;" in r.content  # the form shows the error
    assert not ApiKey.objects.filter(user_id="dora").exists()
    r = admin_client.post("/admin/tenants/apikey/add/", {**base, "scope": "read", "user_id": "dora"}, follow=True)
    raw = re.search(rb"(mc_[a-z0-9]{8}_[A-Za-z0-9_-]{43})", r.content).group(1).decode()
    assert client(raw).get("/v1/stats").json()["episodes"] == 0
    assert ApiKey.objects.get(prefix=raw[3:11]).user_id == "dora"
    r = admin_client.post("/admin/tenants/signingkey/add/", {"tenant": tenant.pk, "name": "app"}, follow=True)
    printed = re.search(rb"(sk_[a-z0-9]{10}\.[A-Za-z0-9_-]{43})", r.content).group(1).decode()
    from memcloud_client import mint_user_token

    assert client(mint_user_token(printed, SLUG, "dora", "read", 60)).get("/v1/stats").status_code == 200
    kid = printed.split(".")[0]
    assert printed.split(".")[1].encode() not in admin_client.get(
        f"/admin/tenants/signingkey/{SigningKey.objects.get(kid=kid).pk}/change/").content
    admin_client.post("/admin/tenants/signingkey/", {"action": "revoke_signing_keys",
                                                     "_selected_action": [SigningKey.objects.get(kid=kid).pk]})
    assert client(mint_user_token(printed, SLUG, "dora", "read", 60)).get("/v1/stats").status_code == 401
