"""episodes/sweep.py (docs/api.md §8): the expiry sweep's claim is won once per interval, requests
trigger it at most once per interval, and a failing sweep never fails the request."""

from __future__ import annotations

import pytest

from episodes import sweep
from episodes.models import Episode, SweepRun
from tests.episodes.bodies import ep
from tests.episodes.helpers import store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_sweep_from_requests")]


@pytest.fixture
def client(api, tenant):
    return api.as_key(tenant[1])


def test_sweep_claim_is_won_once_per_interval(db):
    assert sweep.claim(name="job", interval_secs=60, at_ms=1_000_000)
    assert not sweep.claim(name="job", interval_secs=60, at_ms=1_000_001)
    assert not sweep.claim(name="job", interval_secs=60, at_ms=1_059_999)
    assert sweep.claim(name="job", interval_secs=60, at_ms=1_060_000)
    assert SweepRun.objects.get(name="job").last_run_ms == 1_060_000


def test_requests_trigger_the_sweep_at_most_once_per_interval(client, tenant, settings, monkeypatch):
    store(client, *[ep(expires_at=1) for _ in range(3)], ep())
    settings.AGENT_MEM_EXPIRE_INTERVAL_SECS = 3600
    monkeypatch.setattr(sweep, "_next_look", 0.0)
    assert client.get("/health").status_code == 200  # liveness never touches the database
    assert Episode.objects.filter(tenant=tenant[0]).count() == 4
    store(client, ep())
    # The store itself finished a request: that request's end ran the sweep.
    assert Episode.objects.filter(tenant=tenant[0]).count() == 2
    store(client, ep(expires_at=1))
    client.get("/v1/stats")
    assert Episode.objects.filter(tenant=tenant[0]).count() == 3  # not again within the interval
    SweepRun.objects.update(last_run_ms=0)  # as if another worker ran it long ago
    client.get("/v1/stats")
    assert Episode.objects.filter(tenant=tenant[0]).count() == 3  # this worker looks once per interval
    monkeypatch.setattr(sweep, "_next_look", 0.0)
    client.get("/v1/stats")
    assert Episode.objects.filter(tenant=tenant[0]).count() == 2


def test_a_failing_sweep_never_fails_the_request(client, settings, monkeypatch, caplog):
    settings.AGENT_MEM_EXPIRE_INTERVAL_SECS = 60
    monkeypatch.setattr(sweep, "_next_look", 0.0)

    def broken(**_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(sweep, "episodes_expire", broken)
    assert client.get("/v1/stats").status_code == 200
    assert "expiry sweep failed" in caplog.text
