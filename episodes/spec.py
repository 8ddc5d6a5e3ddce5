"""The request fields of the episode API, each written once: JSON kind, limits, nullability and
default (docs/api.md §3, §4, §8, §9).

The DRF serializers (episodes/serializers.py, which word every error and drive the OpenAPI
schema) and the store fast path (episodes/fastpath.py) are both built from these tables, so a
limit lives here and nowhere else. No Django import: this is data.

Kinds: "uuid" (a UUID string), "text" (a non-empty string without NUL), "number" (a finite JSON
number, float64), "integer" (an integral JSON number), "boolean", "tags" (a list of strings,
duplicates dropped), "object" / "array" (any JSON of that kind, limited by its encoded size),
"embedding" (the tenant's dim of finite float32 numbers: a JSON array, or a base64 string of
their little-endian float32 bytes), "choice" (one of `choices`).
A "text" may be limited in characters (`max_length`) and in UTF-8 bytes (`max_bytes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MAX_INT64 = 2**63
MAX_TIMESTAMP = MAX_INT64 - 1  # milliseconds; stored as a signed 64-bit integer
MAX_TASK_ID = 512
MAX_NAME = 256  # source and user_id
MAX_TAG_LENGTH = 128
MAX_TAGS = 64  # on an episode
MAX_FILTER_TAGS = 1000  # in tags_any / tags_all
MAX_METADATA_BYTES = 64 * 1024
MAX_STEPS_BYTES = 1024 * 1024
MAX_TTL_SECS = 100 * 365 * 86400
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100
MAX_CURSOR = 2048
MAX_TEXT_BYTES = 16 * 1024  # an episode's text and a query's text, in UTF-8 bytes
MODES = ("vector", "keyword", "hybrid")
DEFAULT_RRF_K = 60
MAX_RRF_K = 1_000_000
DEFAULT_TOP_K = 5  # its maximum is the AGENT_MEM_MAX_TOP_K setting

NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Field:
    """One request field. `minimum`/`maximum` bound an integer; `max_length` a text or each tag;
    `max_items` a tag list; `max_bytes` an object or array once encoded as JSON."""

    kind: str
    required: bool = False
    nullable: bool = False
    default: Any = NO_DEFAULT
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None
    max_items: int | None = None
    max_bytes: int | None = None
    choices: tuple[str, ...] | None = None

    def optional(self) -> Field:
        return dataclasses.replace(self, required=False)


TIMESTAMP = Field("integer", minimum=0, maximum=MAX_TIMESTAMP)
NAME = Field("text", nullable=True, max_length=MAX_NAME)
METADATA = Field("object", max_bytes=MAX_METADATA_BYTES)
TEXT = Field("text", max_bytes=MAX_TEXT_BYTES)

# Each table in order: validated data keeps it.
EPISODE: dict[str, Field] = {
    "id": Field("uuid"),
    "task_id": Field("text", required=True, max_length=MAX_TASK_ID),
    # Required for now; optional once the server can embed `text` (one change here).
    "state_embedding": Field("embedding"),  # or `text` alone, embedded by the tenant's embedder
    "text": dataclasses.replace(TEXT, nullable=True),
    "reward": Field("number", required=True),
    "metadata": METADATA,
    "timestamp": TIMESTAMP,
    "tags": Field("tags", max_items=MAX_TAGS, max_length=MAX_TAG_LENGTH),
    "source": NAME,
    "user_id": NAME,
    "steps": Field("array", nullable=True, max_bytes=MAX_STEPS_BYTES),
    "expires_at": dataclasses.replace(TIMESTAMP, nullable=True),
    "ttl_secs": Field("integer", nullable=True, minimum=1, maximum=MAX_TTL_SECS),
}

FILTER_TAGS = Field("tags", max_items=MAX_FILTER_TAGS, max_length=MAX_TAG_LENGTH)
# The query filters, shared by query, list and delete-by-filter.
FILTER: dict[str, Field] = {
    "min_reward": Field("number", nullable=True),
    "tags_any": FILTER_TAGS,
    "tags_all": FILTER_TAGS,
    "task_id_prefix": Field("text", nullable=True, max_length=MAX_TASK_ID),
    "source": NAME,
    "user_id": NAME,
    "time_after": dataclasses.replace(TIMESTAMP, nullable=True),
    "time_before": dataclasses.replace(TIMESTAMP, nullable=True),
}

INCLUDE_EMBEDDING = Field("boolean", default=False)
# How answers carry state_embedding: a JSON array of numbers, or base64 of little-endian float32.
EMBEDDING_FORMATS = ("float", "base64")
EMBEDDING_FORMAT = Field("choice", default="float", choices=EMBEDDING_FORMATS)
# What a query adds to the filters (the maximum of top_k is a setting).
QUERY: dict[str, Field] = {
    "query_embedding": Field("embedding"),  # which of query_embedding/query_text a mode needs: serializers
    "query_text": TEXT,
    "mode": Field("choice", choices=MODES, default="vector"),
    "top_k": Field("integer", default=DEFAULT_TOP_K, minimum=1),
    "include_embedding": INCLUDE_EMBEDDING,
    "embedding_format": EMBEDDING_FORMAT,
    # Hybrid only; no defaults here, so that giving one to another mode is refused (DEFAULT_RRF_K, 1.0).
    "rrf_k": Field("integer", minimum=1, maximum=MAX_RRF_K),
    "vector_weight": Field("number"),
    "keyword_weight": Field("number"),
}

# What `GET /v1/episodes` adds to the filters.
LIST: dict[str, Field] = {
    "limit": Field("integer", default=DEFAULT_LIST_LIMIT, minimum=1, maximum=MAX_LIST_LIMIT),
    "cursor": Field("text", max_length=MAX_CURSOR),
    "include_embedding": INCLUDE_EMBEDDING,
    "embedding_format": EMBEDDING_FORMAT,
}

# What `GET /v1/episodes/{id}` takes as query parameters.
GET: dict[str, Field] = {"embedding_format": EMBEDDING_FORMAT}

# What a PATCH may change: the episode's own fields, all optional, plus metadata_merge.
PATCH: dict[str, Field] = {
    "metadata": METADATA,
    "metadata_merge": METADATA,
    "tags": EPISODE["tags"],
    "reward": EPISODE["reward"].optional(),
    "task_id": EPISODE["task_id"].optional(),
    "source": NAME,
    "user_id": NAME,
    "expires_at": EPISODE["expires_at"],
}
