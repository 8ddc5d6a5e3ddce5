"""Transport: one request description, a retry policy, and a sync and an async sender built on httpx."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

try:  # the `fast` extra: several times quicker than json.dumps on large bodies
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    orjson = None

from .errors import (
    APIConnectionError,
    APITimeoutError,
    MemcloudError,
    RateLimited,
    ValidationError,
    error_for,
)

DEFAULT_URL = "http://127.0.0.1:8080"
USER_AGENT = "memcloud-client/0.1.0"


@dataclass(frozen=True)
class Call:
    """One HTTP request. `replayable` says whether it may be sent again once the server may have
    seen it: stores (client-chosen ids) and reads may; deletes and prunes would answer differently."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] | None = None
    content: bytes | None = None  # a body already encoded as JSON (instead of `json`)
    replayable: bool = True
    retry: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter on 429, 503, connection errors, and a gateway's 502 or 504."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0  # a longer Retry-After is handed to the caller instead of slept

    def delay(self, attempt: int, error: MemcloudError, call: Call) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise `error`."""
        if attempt >= self.max_retries or not call.retry:
            return None
        if isinstance(error, RateLimited):
            if error.retry_after is None:
                return self._backoff(attempt)
            if error.retry_after > self.max_retry_after:
                return None
            return error.retry_after + random.uniform(0, 0.25)  # spread clients over the new window
        if error.status == 503:
            return self._backoff(attempt)
        if error.status in (502, 504) and call.replayable and not _from_memcloud(error):
            # An ingress whose upstream died mid-request (a replica killed, restarted): the request
            # may have been served, but replaying it is safe (reads; stores carry client ids).
            return self._backoff(attempt)
        if isinstance(error, APIConnectionError) and (call.replayable or getattr(error, "unsent", False)):
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max, self.backoff_base * 2**attempt)
        return random.uniform(cap / 2, cap)


def _from_memcloud(error: MemcloudError) -> bool:
    """Whether the answer is the service's own JSON error (its 502 is an embedder's failure, not
    worth repeating), not a gateway's page."""
    content_type = next((v for k, v in error.headers.items() if k.lower() == "content-type"), "")
    return content_type.split(";")[0].strip() == "application/json"


def encode(body: Any) -> bytes:
    """JSON without NaN/Infinity, which the JSON standard (and so the server) does not accept."""
    if orjson is not None:
        try:
            out = orjson.dumps(body)
        except TypeError:
            out = None  # a type orjson does not know (e.g. a Decimal): json.dumps decides
        # orjson writes NaN and Infinity as null: a body with a null is encoded again by json.dumps,
        # which refuses them (rare: the SDK's own bodies leave absent fields out).
        if out is not None and (b"null" not in out or not _has_non_finite(body)):
            return out
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except ValueError as exc:
        raise ValidationError("request holds a non-finite number (NaN or Infinity)", status=None) from exc


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def decode(response: httpx.Response) -> Any:
    if response.headers.get("content-type", "").startswith("application/json"):
        return orjson.loads(response.content) if orjson is not None else response.json()
    return response.text


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        message = body["error"] if isinstance(body, dict) and "error" in body else response.text
    except ValueError:  # not the server's JSON: a proxy's or framework's page
        html = response.headers.get("content-type", "").startswith("text/html")
        message = response.reason_phrase if html or not response.text else response.text[:500]
    raise error_for(response.status_code, str(message), response.headers)


def _connection_error(exc: httpx.TransportError) -> APIConnectionError:
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    error = cls(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    # Nothing reached the server: safe to send again whatever the call.
    error.unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)  # type: ignore[attr-defined]
    return error


class _Base:
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, max_retries: int):
        self.base_url = (base_url or os.environ.get("MEMCLOUD_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("MEMCLOUD_API_KEY")
        self.timeout = timeout
        self.policy = RetryPolicy(max_retries=max_retries)

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request_args(self, call: Call) -> dict[str, Any]:
        args: dict[str, Any] = {"params": call.params}
        content = call.content if call.content is not None else None if call.json is None else encode(call.json)
        if content is not None:
            args["content"] = content
            args["headers"] = {"Content-Type": "application/json"}
        return args


class SyncTransport(_Base):
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, max_retries: int):
        super().__init__(base_url, api_key, timeout, max_retries)
        self.client = httpx.Client(base_url=self.base_url, headers=self._headers(), timeout=timeout)

    def send(self, call: Call) -> httpx.Response:
        """Send `call`, retrying as the policy allows; the answer is a 2xx or an exception is raised."""
        args = self._request_args(call)
        attempt = 0
        while True:
            try:
                try:
                    response = self.client.request(call.method, call.path, **args)
                except httpx.TransportError as exc:
                    raise _connection_error(exc) from exc
                _raise_for(response)
                return response
            except MemcloudError as error:
                wait = self.policy.delay(attempt, error, call)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        self.client.close()


class AsyncTransport(_Base):
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float, max_retries: int):
        super().__init__(base_url, api_key, timeout, max_retries)
        self.client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=timeout)

    async def send(self, call: Call) -> httpx.Response:
        args = self._request_args(call)
        attempt = 0
        while True:
            try:
                try:
                    response = await self.client.request(call.method, call.path, **args)
                except httpx.TransportError as exc:
                    raise _connection_error(exc) from exc
                _raise_for(response)
                return response
            except MemcloudError as error:
                wait = self.policy.delay(attempt, error, call)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def close(self) -> None:
        await self.client.aclose()
