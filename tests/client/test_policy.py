"""The retry policy and the status-to-exception mapping, which need no server."""

import pytest
from memcloud_client import (
    APIConnectionError,
    AuthenticationError,
    MemcloudError,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    ValidationError,
)
from memcloud_client._http import Call
from memcloud_client.errors import error_for

STORE = Call("POST", "/v1/episodes", {})
PRUNE = Call("POST", "/v1/prune/keep-newest", {"n": 1}, replayable=False)


def rate_limited(retry_after: str | None) -> RateLimited:
    return error_for(429, "rate limit exceeded", {"Retry-After": retry_after} if retry_after else {})


def test_429_waits_retry_after_then_a_little_jitter():
    wait = RetryPolicy().delay(0, rate_limited("7"), STORE)
    assert 7 <= wait <= 7.25


def test_429_with_a_wait_over_the_cap_is_handed_to_the_caller():
    assert RetryPolicy(max_retry_after=60).delay(0, rate_limited("61"), STORE) is None


def test_503_and_lost_connections_back_off_exponentially_within_the_cap():
    policy = RetryPolicy(max_retries=10, backoff_base=0.5, backoff_max=8)
    for attempt, cap in [(0, 0.5), (1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        for error in (ServiceUnavailable("down", status=503), APIConnectionError("reset")):
            assert cap / 2 <= policy.delay(attempt, error, STORE) <= cap


def test_no_retry_after_max_retries_or_for_client_errors():
    policy = RetryPolicy(max_retries=2)
    assert policy.delay(2, ServiceUnavailable("down", status=503), STORE) is None
    for error in (ValidationError("x"), AuthenticationError("x"), QuotaExceeded("x"), ServerError("x", status=500)):
        assert policy.delay(0, error, STORE) is None


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateways_502_or_504_is_retried_for_replayable_calls_only(status):
    gateway = error_for(status, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    assert 0.25 <= RetryPolicy().delay(0, gateway, STORE) <= 0.5
    assert RetryPolicy().delay(0, gateway, PRUNE) is None  # it may have been acted on


def test_the_services_own_502_is_not_retried():
    # The service answers 502 for its embedder's failure: JSON, and asking again changes nothing.
    own = error_for(502, "embedder: openai:m: answered vectors of width 3", {"Content-Type": "application/json"})
    assert RetryPolicy().delay(0, own, STORE) is None


def test_a_prune_is_resent_only_if_it_never_reached_the_server():
    policy = RetryPolicy()
    sent = APIConnectionError("read timed out")
    unsent = APIConnectionError("refused")
    unsent.unsent = True
    assert policy.delay(0, sent, PRUNE) is None
    assert policy.delay(0, unsent, PRUNE) is not None
    assert policy.delay(0, rate_limited("1"), PRUNE) is not None  # a 429 was not acted on


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (400, "reward: must be finite", ValidationError),
        (401, "unknown key", AuthenticationError),
        (403, "this API key lacks the 'write' scope this endpoint needs", PermissionDenied),
        (403, "max_episodes: storing 1 more would exceed the tenant's quota of 2 episodes", QuotaExceeded),
        (429, "slow down", RateLimited),
        (503, "database error, retry later", ServiceUnavailable),
        (502, "bad gateway", ServerError),
        (405, "method not allowed", MemcloudError),
    ],
)
def test_status_and_message_pick_the_exception(status, message, cls):
    error = error_for(status, message, {})
    assert type(error) is cls and error.status == status and error.message == message


def test_retry_after_is_whole_seconds_or_none():
    assert rate_limited("3").retry_after == 3
    assert rate_limited(None).retry_after is None
    assert rate_limited("Wed, 21 Oct 2015 07:28:00 GMT").retry_after is None
