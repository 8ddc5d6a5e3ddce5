"""A brute-force BM25 oracle: the definition of docs/api.md §9 in plain Python, over stored texts."""

from __future__ import annotations

import math

from memindex.keyword import K1, B, tokenize


def bm25_oracle(texts: dict[str, str | None], query: str) -> dict[str, float]:
    """The BM25 score of every episode holding a query term. `texts`: the corpus, every live
    episode's text by id (those without tokens count for nothing)."""
    docs = {eid: tokenize(text) for eid, text in texts.items()}
    docs = {eid: tokens for eid, tokens in docs.items() if tokens}
    if not docs:
        return {}
    n_docs = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n_docs
    scores: dict[str, float] = {}
    for term in dict.fromkeys(tokenize(query)):
        holders = {eid: tokens.count(term) for eid, tokens in docs.items() if term in tokens}
        if not holders:
            continue
        idf = math.log(1.0 + (n_docs - len(holders) + 0.5) / (len(holders) + 0.5))
        for eid, tf in holders.items():
            dl = len(docs[eid])
            part = idf * (tf * (K1 + 1)) / (tf + K1 * (1 - B + B * dl / avgdl))
            scores[eid] = scores.get(eid, 0.0) + part
    return scores
