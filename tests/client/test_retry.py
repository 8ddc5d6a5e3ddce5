"""Rate limits: RateLimited.retry_after, and automatic retries that never duplicate a store."""

import pytest
from memcloud_client import RateLimited

pytestmark = [pytest.mark.e2e, pytest.mark.needs("rate_limit", on="limited")]

def exhaust(mc, limit):
    """Spend the window's budget; returns the RateLimited that follows."""
    for _ in range(2 * limit + 2):  # a window that rolls over midway gives one more budget
        try:
            mc.stats()
        except RateLimited as exc:
            return exc
    pytest.fail("no 429 after spending the budget twice over")


def test_rate_limited_call_carries_retry_after(limited, make_limited_client):
    key = limited.make_key(rate_limit=2)
    exc = exhaust(make_limited_client(key, max_retries=0), 2)
    assert exc.status == 429
    assert isinstance(exc.retry_after, int) and 0 <= exc.retry_after <= limited.window
    assert exc.headers["x-ratelimit-limit"] == "2"


def test_store_retried_after_429_is_stored_once(limited, make_limited_client):
    key = limited.make_key(rate_limit=2)
    exhaust(make_limited_client(key, max_retries=0), 2)
    patient = make_limited_client(key, max_retries=5)
    episode_id = patient.store("after-the-wait", [1.0] * limited.dim, 0.5)  # waits out Retry-After
    assert [h.id for h in patient.query([1.0] * limited.dim, top_k=10)] == [episode_id]
