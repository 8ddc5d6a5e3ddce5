"""LangGraph integration (the `memcloud-client[langgraph]` extra): a BaseStore over Memcloud."""

from .store import INDEXED_TAG, MemcloudStore

__all__ = ["INDEXED_TAG", "MemcloudStore"]
