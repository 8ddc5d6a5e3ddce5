"""`openai:<model>` against a real OpenAI-compatible server (infinity-emb serving the packaged
all-MiniLM-L6-v2, tests/support/embedding_server.py): the same vectors as the in-process model,
batching, and each failure with its own status."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from rest_framework.test import APIRequestFactory

from core.errors import exception_handler
from embedders import EmbedderBadAnswer, EmbedderRejected, EmbedderUnavailable, dim_of, embed, embedder_for
from embedders.registry import reset
from tests.support.server import free_port

TEXTS = ["the cat sat on the mat", "a dog barked at the mailman", "quarterly revenue rose 4%",
         "ünïcödé and emoji 🙂", "short", "a somewhat longer sentence about memory systems for agents"]


def spec_of(server, dim: int | None = None) -> str:
    return f"openai:{server.model}" + (f"@{dim}" if dim else "")


def test_same_vectors_as_the_local_model(provider, minilm):
    remote = embedder_for(spec_of(provider)).embed(TEXTS)
    local = minilm.embed(TEXTS)
    assert remote.dtype == np.float32 and remote.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(remote, local, atol=1e-4)
    cosines = (remote * local).sum(1) / np.linalg.norm(remote, axis=1) / np.linalg.norm(local, axis=1)
    assert cosines.min() >= 0.9999


def test_dim_from_one_probe_call_or_from_the_spec(provider):
    assert dim_of(spec_of(provider)) == 384
    assert dim_of(spec_of(provider, 384)) == 384
    assert embed(spec_of(provider, 384), ["hello"], dim=384).shape == (1, 384)


def test_more_texts_than_the_batch_are_sent_in_batches(provider, settings, minilm):
    texts = [f"memory number {i} about topic {i % 7}" for i in range(2 * provider.max_batch + 5)]
    vectors = embedder_for(spec_of(provider)).embed(texts)  # batches of max_batch: the server takes them
    np.testing.assert_allclose(vectors, minilm.embed(texts), atol=1e-4)
    # The same texts in one request are more than this server accepts: the batching above was real.
    settings.AGENT_MEM_EMBEDDINGS_BATCH = 64
    reset(kind="openai")
    with pytest.raises(EmbedderRejected) as exc:
        embedder_for(spec_of(provider)).embed(texts)
    assert exc.value.status == 400 and f"at most {provider.max_batch}" in str(exc.value)


def test_a_wrong_dim_is_a_502_and_gives_nothing(provider):
    with pytest.raises(EmbedderBadAnswer) as exc:
        embedder_for(spec_of(provider, 512)).embed(["hello"])
    assert exc.value.status == 502 and "384-d vectors, expected 512" in str(exc.value)
    with pytest.raises(EmbedderBadAnswer) as exc:
        embed(spec_of(provider), ["hello"], dim=8)  # a tenant whose dim no longer matches
    assert exc.value.status == 502


def test_input_the_provider_refuses_is_a_400_naming_its_message(provider):
    with pytest.raises(EmbedderRejected) as exc:
        embedder_for(spec_of(provider)).embed(["fine", "x" * 130_000])
    message = str(exc.value)
    assert exc.value.status == 400 and message.startswith("embedder: ")
    assert "(422)" in message and "at most 122880 characters" in message and "xxxx" not in message


def test_a_wrong_url_is_the_deployments_fault_not_the_clients(provider, settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = provider.url.removesuffix("/v1")  # no /embeddings there
    reset(kind="openai")
    with pytest.raises(EmbedderBadAnswer) as exc:
        embedder_for(spec_of(provider)).embed(["hello"])
    assert exc.value.status == 502 and "no such model or endpoint" in str(exc.value)


def test_server_down_is_a_503_with_retry_after_after_backing_off(settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 2
    settings.AGENT_MEM_EMBEDDINGS_BACKOFF_MS = 200
    reset(kind="openai")
    started = time.monotonic()
    try:
        with pytest.raises(EmbedderUnavailable) as exc:
            embedder_for("openai:any@8").embed(["hello"])
    finally:
        reset(kind="openai")
    elapsed = time.monotonic() - started
    assert exc.value.status == 503 and "unreachable" in str(exc.value)
    assert elapsed >= 0.6  # two retries: 0.2 s then 0.4 s
    # What the API answers with it: JSON naming the cause, and Retry-After.
    response = exception_handler(exc.value, {"request": APIRequestFactory().get("/")})
    assert response.status_code == 503 and response.data["error"].startswith("embedder: ")
    assert response["Retry-After"] == "1"


def test_a_provider_that_never_answers_times_out_as_a_503(settings):
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        settings.AGENT_MEM_EMBEDDINGS_TIMEOUT_SECS = 1
        settings.AGENT_MEM_EMBEDDINGS_RETRIES = 0
        reset(kind="openai")
        try:
            with pytest.raises(EmbedderUnavailable) as exc:
                embedder_for("openai:any@8").embed(["hello"])
        finally:
            reset(kind="openai")
    assert exc.value.status == 503 and "timed out after 1s" in str(exc.value)


def test_no_provider_configured_is_a_503(settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = ""
    reset(kind="openai")
    try:
        with pytest.raises(EmbedderUnavailable, match="AGENT_MEM_EMBEDDINGS_URL is not set"):
            embedder_for("openai:any@8").embed(["hello"])
    finally:
        reset(kind="openai")


def _late_relay(port: int, target: tuple[str, int], delay: float) -> threading.Thread:
    """After `delay` seconds, listen on `port` and pipe one connection's bytes to the real server:
    the provider "comes up" late, its answers untouched."""

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        time.sleep(delay)
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(30)
            client, _ = listener.accept()
            with client, socket.create_connection(target) as upstream:
                back = threading.Thread(target=pipe, args=(upstream, client))
                back.start()
                pipe(client, upstream)
                back.join(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_provider_that_comes_up_late_is_reached_by_retrying(provider, settings, minilm):
    port = free_port()
    upstream = httpx.URL(provider.url)
    relay = _late_relay(port, (upstream.host, upstream.port), delay=0.5)
    settings.AGENT_MEM_EMBEDDINGS_URL = f"http://127.0.0.1:{port}/v1"
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 5
    settings.AGENT_MEM_EMBEDDINGS_BACKOFF_MS = 200  # waits 0.2, 0.4, 0.8 ...: up after the second
    reset(kind="openai")
    started = time.monotonic()
    vectors = embedder_for(spec_of(provider, 384)).embed(["hello"])
    assert time.monotonic() - started >= 0.5
    np.testing.assert_allclose(vectors, minilm.embed(["hello"]), atol=1e-4)
    relay.join(30)


@pytest.mark.django_db
def test_a_tenant_takes_its_dim_from_one_probe_call(provider):
    from tenants.services import tenant_create

    tenant = tenant_create(slug="remote", embedder=spec_of(provider))
    assert (tenant.dim, tenant.embedder) == (384, f"openai:{provider.model}")
