"""The five MCP tools (docs/api.md §11): their descriptions and schemas for a model, and what each
does, through the same serializers, services and selectors as /v1, so a limit or a rule is written
once. Protocol framing lives in mcpserver/protocol.py; this module knows nothing of JSON-RPC.

Argument errors raise InvalidArguments (a JSON-RPC -32602 naming the argument, nothing changed);
a valid call the service refuses (quota, conflict, a feature the tenant lacks) raises ToolFailed
(a result with isError, which the model reads and can act on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from rest_framework import serializers

from core.errors import first_message
from episodes import selectors, services, spec
from episodes.serializers import EpisodeInput, EpisodeListInput, EpisodesDeleteInput, QueryInput
from episodes.views import filters_from
from tenants.models import SCOPE_RANK, Scope, Tenant

from . import schemas

# The whole tool result (structured content plus its text rendering) stays under this many bytes of
# JSON; recall drops its lowest-scored memories and list_memories shortens its page to fit.
MAX_RESULT_BYTES = 64 * 1024
MAX_TEXT_CHARS = 2000  # a memory's text in a result; longer texts end with "…"
RENDER_LINE_CHARS = 300  # one memory's line in the text rendering
DEFAULT_TASK_ID = "memory"
LIST_DEFAULT, LIST_MAX = 20, 100
MODES = ("vector", "keyword", "hybrid")

# A tenant without an embedder cannot turn words into a vector: such a call is refused with these words.
TEXT_UNSUPPORTED = ("{argument}: this tenant has no embedder to turn text into a vector; pass `embedding` "
                    "(a list of {dim} numbers), or use mode 'keyword' to search the words")


class InvalidArguments(Exception):
    """Bad tool arguments: JSON-RPC -32602, the message naming the argument."""


class ToolFailed(Exception):
    """A valid call that cannot be carried out: a tool result with isError."""


@dataclass(frozen=True)
class Call:
    tenant: Tenant
    key_prefix: str | None
    arguments: dict[str, Any]
    user: str | None = None  # the end user of a user-bound key or token (docs/api.md §2.1)


@dataclass(frozen=True)
class Outcome:
    structured: dict[str, Any]
    text: str
    is_query: bool = False  # counted as a query in the tenant's usage


@dataclass(frozen=True)
class ToolDef:
    name: str
    title: str
    scope: str
    description: str
    input_schema: Callable[[Tenant], dict[str, Any]]
    output_schema: dict[str, Any]
    run: Callable[[Call], Outcome]
    read_only: bool
    destructive: bool = False


# ----- validation through the /v1 serializers -----

def _validated(serializer_class: type[serializers.Serializer], data: dict, tenant: Tenant,
               renames: dict[str, str]) -> dict:
    """`data` through a /v1 serializer; its error, which names the field, named as the argument."""
    serializer = serializer_class(data=data, context={"tenant": tenant})
    if not serializer.is_valid():
        raise InvalidArguments(_renamed(first_message(serializer.errors), renames))
    return serializer.validated_data


def _renamed(message: str, renames: dict[str, str]) -> str:
    for internal, argument in renames.items():
        for tail in (":", ".", "["):
            if message.startswith(internal + tail):
                return argument + message[len(internal):]
    return message


def _check_names(arguments: dict[str, Any], schema: dict[str, Any]) -> None:
    unknown = [name for name in arguments if name not in schema["properties"]]
    if unknown:
        raise InvalidArguments(f"{unknown[0]}: unknown argument; this tool takes "
                               f"{', '.join(schema['properties'])}")


def _pick(arguments: dict[str, Any], names: Any) -> dict[str, Any]:
    return {name: arguments[name] for name in names if name in arguments}


# ----- results -----

def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


def compact(row: dict[str, Any], *, score: float | None = None) -> dict[str, Any]:
    """A memory as a model sees it: no embedding, no metadata, the text clipped."""
    out: dict[str, Any] = {"id": str(row["id"])}
    if score is not None:
        out["score"] = score
    out.update(text=_clip(row.get("text"), MAX_TEXT_CHARS), task_id=row["task_id"], reward=row["reward"],
               tags=list(row["tags"]), timestamp=row["timestamp"])
    return out


def _render_line(index: int, memory: dict[str, Any]) -> str:
    score = f"[{memory['score']:.3f}] " if "score" in memory else ""
    tags = f" tags={','.join(memory['tags'])}" if memory["tags"] else ""
    text = f": {memory['text']}" if memory.get("text") else ""
    line = (f"{index}. {score}{memory['id']} task={memory['task_id']} reward={memory['reward']:g} "
            f"t={memory['timestamp']}{tags}{text}")
    return _clip(line, RENDER_LINE_CHARS) or ""


def _fit(memories: list[dict[str, Any]], budget: int) -> int:
    """How many of `memories`, in order, fit in `budget` bytes with their rendered lines."""
    used = 0
    for index, memory in enumerate(memories):
        # Each as it will be encoded: the line inside a JSON string, escapes and all.
        used += len(orjson.dumps(memory)) + 1 + len(orjson.dumps(_render_line(index + 1, memory)))
        if used > budget:
            return index
    return len(memories)


ENVELOPE_RESERVE = 2048  # the result's framing, headline and other fields


MEMORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "score": {"type": "number"},
        "text": {"type": ["string", "null"]},
        "task_id": {"type": "string"},
        "reward": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timestamp": {"type": "integer"},
    },
    "required": ["id", "text", "task_id", "reward", "tags", "timestamp"],
}


# ----- remember -----

def remember_schema(tenant: Tenant) -> dict[str, Any]:
    e = spec.EPISODE
    return schemas.input_schema({
        "text": {"type": "string", "minLength": 1,
                 "description": "What to remember, in words; the tenant's embedder turns it into the vector. "
                                "Give text or embedding (or both)."},
        "embedding": schemas.field_schema(
            e["state_embedding"], f"The memory's vector: exactly {tenant.dim} finite numbers"
            + (", not all zero" if tenant.metric == "cosine" else "") + ". Give text or embedding.",
            dim=tenant.dim),
        "task_id": schemas.field_schema(e["task_id"].optional(), "The task, conversation or topic this memory "
                                        f"belongs to; recall can filter by its prefix. Default {DEFAULT_TASK_ID!r}."),
        "reward": schemas.field_schema(e["reward"].optional(), "How good the outcome was (any finite number, "
                                       "higher is better); recall can keep only memories above a reward. Default 0."),
        "tags": schemas.field_schema(e["tags"], "Labels to filter on later; duplicates are dropped."),
        "metadata": schemas.field_schema(e["metadata"], "Any JSON object kept with the memory (not searched)."),
        "source": schemas.field_schema(e["source"], "Where the memory comes from (exact-match filter)."),
        "user_id": schemas.field_schema(e["user_id"], "The end user it concerns (exact-match filter)."),
        "ttl_secs": schemas.field_schema(e["ttl_secs"], "Forget it automatically after this many seconds."),
    })


# Argument -> /v1 field, where the names differ.
REMEMBER_RENAMES = {"state_embedding": "embedding"}
REMEMBER_FIELDS = ("task_id", "reward", "tags", "metadata", "source", "user_id", "ttl_secs")


def _store_args_to_episode(arguments: dict[str, Any], tenant: Tenant) -> dict[str, Any]:
    """remember's arguments as a validated episode of `POST /v1/episodes`: the text is the episode's
    text, and its vector when no embedding is given (the tenant's embedder makes it)."""
    if "text" not in arguments and "embedding" not in arguments:
        raise InvalidArguments("embedding: give text or embedding")
    if "embedding" not in arguments and not tenant.embedder:
        raise InvalidArguments(TEXT_UNSUPPORTED.format(argument="text", dim=tenant.dim))
    data = {"task_id": DEFAULT_TASK_ID, "reward": 0.0, **_pick(arguments, (*REMEMBER_FIELDS, "text"))}
    if "embedding" in arguments:
        data["state_embedding"] = arguments["embedding"]
    return _validated(EpisodeInput, data, tenant, REMEMBER_RENAMES)


def remember(call: Call) -> Outcome:
    episode = _store_args_to_episode(call.arguments, call.tenant)
    result = services.episodes_store(tenant=call.tenant, episodes=[episode], key_prefix=call.key_prefix,
                                     user=call.user)
    memory_id = str(result.ids[0])
    return Outcome({"id": memory_id}, f"Remembered as {memory_id}.")


# ----- recall -----

def recall_schema(tenant: Tenant) -> dict[str, Any]:
    q = spec.QUERY
    top_k = schemas.field_schema(q["top_k"], "How many memories to return, best first.")
    top_k["maximum"] = schemas.max_top_k()
    return schemas.input_schema({
        "query": {"type": "string", "minLength": 1,
                  "description": "What to look for, in words. Give query or embedding."},
        "embedding": schemas.field_schema(q["query_embedding"].optional(),
                                          f"A query vector of exactly {tenant.dim} numbers. Give query or embedding.",
                                          dim=tenant.dim),
        "mode": {"type": "string", "enum": list(MODES),
                 "description": "vector: by meaning (embedding similarity); keyword: by the words of query; "
                                "hybrid: both. Default: hybrid with query (keyword when the tenant has no "
                                "embedder and no embedding is given), vector with embedding only."},
        "top_k": top_k,
        **schemas.filter_properties(),
    })


RECALL_RENAMES = {"query_embedding": "embedding"}


def _recall(arguments: dict[str, Any], tenant: Tenant, key_prefix: str | None,
            user: str | None = None) -> list[dict[str, Any]]:
    """recall's arguments through `POST /v1/query`'s validation and selector: the hits, best first.
    The one place where the query text and the mode choose the search: with `query`, hybrid by
    default (the embedder's vector and the words; the words alone on a tenant without an embedder);
    with `embedding` only, vector."""
    mode = arguments.get("mode")
    if mode is not None and mode not in MODES:
        raise InvalidArguments(f"mode: must be one of {', '.join(MODES)}")
    query, embedding = arguments.get("query"), arguments.get("embedding")
    if "query" in arguments and (not isinstance(query, str) or not query):
        raise InvalidArguments("query: must be a non-empty string")
    if query is None and embedding is None:
        raise InvalidArguments("embedding: give query or embedding")
    if query is None and mode in ("keyword", "hybrid"):
        raise InvalidArguments(f"query: mode {mode} searches the words of query: give query")
    if mode is None:  # words and meaning when a vector can be had; the words alone when not
        mode = "vector" if query is None else "hybrid" if embedding is not None or tenant.embedder else "keyword"
    if embedding is None and mode != "keyword" and not tenant.embedder:
        raise InvalidArguments(TEXT_UNSUPPORTED.format(argument="query", dim=tenant.dim))
    data = {"mode": mode, **_pick(arguments, ("top_k", *spec.FILTER))}
    if embedding is not None and mode != "keyword":
        data["query_embedding"] = embedding
    if query is not None and not (mode == "vector" and embedding is not None):
        data["query_text"] = query
    v = _validated(QueryInput, data, tenant, {**RECALL_RENAMES, "query_text": "query"})
    ranking = selectors.Ranking(mode=v["mode"], query_embedding=v.get("query_embedding"),
                                query_text=v.get("query_text"))
    hits = selectors.episodes_query(tenant=tenant, state=tenant.state, ranking=ranking, top_k=v["top_k"],
                                    filters=filters_from(v), key_prefix=key_prefix, user=user)
    return orjson.loads(orjson.dumps(hits))  # JSON columns come back as unparsed fragments


def recall(call: Call) -> Outcome:
    hits = _recall(call.arguments, call.tenant, call.key_prefix, call.user)
    memories = [compact(hit, score=hit["score"]) for hit in hits]
    kept = _fit(memories, MAX_RESULT_BYTES - ENVELOPE_RESERVE)
    omitted = len(memories) - kept
    memories = memories[:kept]
    head = f"{len(memories)} memories, best first" if memories else "No memories match."
    if omitted:
        head += f" ({omitted} more left out to stay under {MAX_RESULT_BYTES} bytes: ask for fewer)"
    lines = [head, *(_render_line(i + 1, m) for i, m in enumerate(memories))]
    return Outcome({"memories": memories, "omitted": omitted}, "\n".join(lines), is_query=True)


# ----- forget -----

def forget_schema(tenant: Tenant) -> dict[str, Any]:
    return schemas.input_schema({
        "ids": {"type": "array", "items": {"type": "string", "format": "uuid"}, "minItems": 1,
                "description": "The ids of the memories to forget (as remember or recall gave them)."},
        "filter": {"type": "object", "properties": schemas.filter_properties(), "additionalProperties": False,
                   "description": "Forget every memory matching all of these filters (at least one)."},
    }, description="Give ids or filter, not both.")


def forget(call: Call) -> Outcome:
    v = _validated(EpisodesDeleteInput, dict(call.arguments), call.tenant, {})
    removed = services.episodes_delete(
        tenant=call.tenant, ids=v.get("ids"), filters=filters_from(v["filter"]) if "filter" in v else None,
        key_prefix=call.key_prefix, user=call.user)
    return Outcome({"removed": removed}, f"Forgot {removed} memor{'y' if removed == 1 else 'ies'}.")


# ----- list_memories -----

def list_schema(tenant: Tenant) -> dict[str, Any]:
    return schemas.input_schema({
        "limit": {"type": "integer", "minimum": 1, "maximum": LIST_MAX, "default": LIST_DEFAULT,
                  "description": "Memories per page, newest first."},
        "cursor": schemas.field_schema(spec.LIST["cursor"], "next_cursor of the previous page; repeat the same "
                                       "filters on every page."),
        **schemas.filter_properties(),
    })


def list_memories(call: Call) -> Outcome:
    arguments = call.arguments
    limit = arguments.get("limit", LIST_DEFAULT)
    if type(limit) is int and limit > LIST_MAX:
        raise InvalidArguments(f"limit: must be at most {LIST_MAX}")
    data = {"limit": limit, **_pick(arguments, ("cursor", *spec.FILTER))}
    v = _validated(EpisodeListInput, data, call.tenant, {})
    filters, size = filters_from(v), v["limit"]
    while True:  # a page too large for the result cap is asked again, shorter (its cursor stays right)
        page = selectors.episodes_list(tenant=call.tenant, filters=filters, limit=size, cursor=v.get("cursor"),
                                       user=call.user)
        memories = [compact(row) for row in page["episodes"]]
        if size == 1 or _fit(memories, MAX_RESULT_BYTES - ENVELOPE_RESERVE) == len(memories):
            break
        size = max(1, size // 2)
    head = f"{len(memories)} memories, newest first" if memories else "No memories."
    if page["next_cursor"]:
        head += "; more with the cursor next_cursor"
    lines = [head, *(_render_line(i + 1, m) for i, m in enumerate(memories))]
    return Outcome({"memories": memories, "next_cursor": page["next_cursor"]}, "\n".join(lines))


# ----- memory_stats -----

def stats_schema(tenant: Tenant) -> dict[str, Any]:
    return schemas.input_schema({})


def memory_stats(call: Call) -> Outcome:
    stats = selectors.tenant_stats(tenant=call.tenant, user=call.user)
    stats["default_ttl_secs"] = call.tenant.default_ttl_secs
    stats["max_top_k"] = schemas.max_top_k()
    text = (f"Tenant {stats['tenant']}: {stats['episodes']} memories; embeddings of {stats['dim']} numbers "
            f"compared by {stats['metric']}.")
    return Outcome(stats, text)


def _object(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


TOOLS: dict[str, ToolDef] = {tool.name: tool for tool in (
    ToolDef(
        name="remember", title="Remember", scope=Scope.WRITE, read_only=False,
        description="Store one memory for later recall: an experience, a fact, an outcome. Give its text (or its "
                    "embedding vector), optionally a task_id, a reward saying how well it went, tags, metadata, "
                    "source, user_id and a time to live. Returns the new memory's id. Storing the same content "
                    "again under the same id is harmless.",
        input_schema=remember_schema, run=remember,
        output_schema=_object({"id": {"type": "string"}}, ("id",)),
    ),
    ToolDef(
        name="recall", title="Recall", scope=Scope.READ, read_only=True,
        description="Find the memories most relevant to a query, best first: by meaning (vector), by words "
                    "(keyword) or both (hybrid). Narrow with filters: min_reward, tags_any, tags_all, "
                    "task_id_prefix, source, user_id, time_after, time_before. Each result has id, score, text, "
                    f"task_id, reward, tags and timestamp (ms). At most {MAX_RESULT_BYTES} bytes come back: "
                    "if results are left out, `omitted` says how many.",
        input_schema=recall_schema, run=recall,
        output_schema=_object({"memories": {"type": "array", "items": MEMORY_SCHEMA},
                               "omitted": {"type": "integer"}}, ("memories", "omitted")),
    ),
    ToolDef(
        name="forget", title="Forget", scope=Scope.WRITE, read_only=False, destructive=True,
        description="Delete memories for good: by their ids, or every memory matching a filter (the same filters "
                    "as recall; an empty filter is refused). Returns how many were removed.",
        input_schema=forget_schema, run=forget,
        output_schema=_object({"removed": {"type": "integer"}}, ("removed",)),
    ),
    ToolDef(
        name="list_memories", title="List memories", scope=Scope.READ, read_only=True,
        description="Page through stored memories, newest first, optionally filtered (the same filters as "
                    "recall). Pass the returned next_cursor to get the next page; it is null on the last page.",
        input_schema=list_schema, run=list_memories,
        output_schema=_object({"memories": {"type": "array", "items": MEMORY_SCHEMA},
                               "next_cursor": {"type": ["string", "null"]}}, ("memories", "next_cursor")),
    ),
    ToolDef(
        name="memory_stats", title="Memory stats", scope=Scope.READ, read_only=True,
        description="How many memories this tenant holds and how it is configured: embedding size (dim), metric, "
                    "quota (max_episodes), rate limit, default time to live, the largest top_k.",
        input_schema=stats_schema, run=memory_stats,
        output_schema=_object({
            "tenant": {"type": "string"}, "dim": {"type": "integer"}, "metric": {"type": "string"},
            "episodes": {"type": "integer"}, "rate_limit": {"type": ["integer", "null"]},
            "max_episodes": {"type": ["integer", "null"]}, "default_ttl_secs": {"type": ["integer", "null"]},
            "max_top_k": {"type": "integer"},
        }, ("tenant", "dim", "metric", "episodes")),
    ),
)}


def allowed(tool: ToolDef, scope: str) -> bool:
    return SCOPE_RANK[scope] >= SCOPE_RANK[tool.scope]


def visible_tools(scope: str) -> list[ToolDef]:
    """The tools a key of `scope` may call: the only ones it is shown."""
    return [tool for tool in TOOLS.values() if allowed(tool, scope)]


def run(tool: ToolDef, call: Call) -> Outcome:
    _check_names(call.arguments, tool.input_schema(call.tenant))
    return tool.run(call)
