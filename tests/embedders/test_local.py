"""In-process embedders with the packaged all-MiniLM-L6-v2 (the real model, on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core.errors import InvalidInput
from embedders import EmbedderBadAnswer, dim_of, embed, embedder_for
from tests.support.server import ROOT

TEXTS = ["the cat sat on the mat", "a dog barked at the mailman", "quarterly revenue rose 4%",
         "", "ünïcödé and emoji 🙂", "the cat sat on the mat"]


def test_embeds_deterministically_the_models_own_vectors(minilm, minilm_path):
    from sentence_transformers import SentenceTransformer

    first = minilm.embed(TEXTS)
    assert first.dtype == np.float32 and first.shape == (len(TEXTS), 384) and first.flags.c_contiguous
    assert np.array_equal(first, minilm.embed(TEXTS))
    # Exactly what sentence-transformers' own encode gives for the same model, unnormalised by us:
    # the model's pipeline ends in Normalize, so the vectors have unit length.
    reference = SentenceTransformer(minilm_path, device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(first, reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first[0], first[5])  # same text, same vector
    assert float(first[0] @ first[1]) < 0.5 < float(first[0] @ minilm.embed(["a cat sat on a mat"])[0])


def test_order_and_empty_input(minilm):
    forward = minilm.embed(["alpha", "beta"])
    backward = minilm.embed(["beta", "alpha"])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    empty = minilm.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_one_embedder_per_spec_per_process(minilm):
    assert embedder_for("local-minilm") is minilm
    assert embedder_for(" local-minilm") is minilm


def test_the_tenant_dim_is_checked(minilm):
    vectors = embed("local-minilm", ["hello"], dim=384)
    assert vectors.shape == (1, 384)
    with pytest.raises(EmbedderBadAnswer) as exc:
        embed("local-minilm", ["hello"], dim=8)
    assert exc.value.status == 502 and "384-d" in str(exc.value) and "dim is 8" in str(exc.value)


def test_sentence_transformers_from_a_local_path(minilm, minilm_path):
    spec = f"sentence-transformers:{minilm_path}"
    assert dim_of(spec) == 384  # loads the model and asks it
    np.testing.assert_allclose(embedder_for(spec).embed(TEXTS), minilm.embed(TEXTS), atol=1e-6)


def test_a_model_that_cannot_load_is_refused_at_creation(minilm_path, tmp_path):
    with pytest.raises(InvalidInput) as exc:
        dim_of(f"sentence-transformers:{tmp_path}")  # an empty folder: no model in it
    assert exc.value.status == 400 and str(exc.value).startswith("embedder: ") and "could not be loaded" in str(exc.value)


def test_a_process_that_never_embeds_never_imports_torch():
    """Serving, creating a local-minilm tenant's dim and building its embedder import no torch."""
    script = textwrap.dedent("""
        import sys
        import django
        django.setup()
        import memcloud.wsgi, memcloud.urls  # the whole request path
        from embedders import dim_of, embedder_for
        assert dim_of("local-minilm") == 384
        embedder_for("local-minilm")
        heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
        print(",".join(heavy) or "none")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "memcloud.settings"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"
