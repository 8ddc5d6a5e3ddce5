"""Embedder specs: the forms, their canonical text, and refusals that name `embedder`."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from embedders import dim_of, parse_spec


@pytest.mark.parametrize(("spec", "kind", "model", "dim", "text"), [
    ("local-minilm", "local-minilm", "", 384, "local-minilm"),
    ("  local-minilm ", "local-minilm", "", 384, "local-minilm"),
    ("sentence-transformers:all-MiniLM-L6-v2", "sentence-transformers", "all-MiniLM-L6-v2", None,
     "sentence-transformers:all-MiniLM-L6-v2"),
    ("sentence-transformers:/models/minilm", "sentence-transformers", "/models/minilm", None,
     "sentence-transformers:/models/minilm"),
    ("openai:text-embedding-3-small", "openai", "text-embedding-3-small", None, "openai:text-embedding-3-small"),
    ("openai:text-embedding-3-small@1536", "openai", "text-embedding-3-small", 1536,
     "openai:text-embedding-3-small@1536"),
    ("openai:nomic-ai/nomic-embed-text:v1.5@768", "openai", "nomic-ai/nomic-embed-text:v1.5", 768,
     "openai:nomic-ai/nomic-embed-text:v1.5@768"),
])
def test_forms(spec, kind, model, dim, text):
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.model, parsed.dim, parsed.text) == (kind, model, dim, text)


@pytest.mark.parametrize(("spec", "words"), [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("minilm", "must be 'local-minilm'"),
    ("cohere:embed-v3", "must be 'local-minilm'"),
    ("openai:", "needs a model name"),
    ("sentence-transformers:", "needs a model name"),
    ("openai:m@0", "between 1 and 65536"),
    ("openai:m@70000", "between 1 and 65536"),
    ("openai:m@wide", "whole number"),
    ("openai:my model", "whitespace"),
    ("openai:" + "m" * 300, "at most 300"),
])
def test_refusals_name_the_field(spec, words):
    with pytest.raises(InvalidInput) as exc:
        parse_spec(spec)
    assert str(exc.value).startswith("embedder: ") and words in str(exc.value)
    assert exc.value.status == 400


def test_a_spec_must_be_a_string():
    with pytest.raises(InvalidInput, match="embedder: must be a string"):
        parse_spec(384)


def test_dims_known_without_loading_or_calling_anything(settings):
    settings.AGENT_MEM_EMBEDDINGS_URL = ""  # no provider at all: the stated dim needs none
    assert dim_of("local-minilm") == 384
    assert dim_of("openai:text-embedding-3-large@3072") == 3072
