"""The keyword column and the keyword and hybrid rankings against brute-force oracles: random texts,
random filters, churn (adds, removals, updates, expiry), merges and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from memindex import keyword as kw
from memindex import ranking
from memindex.columns import NO_EXPIRY, Filters
from memindex.index import TenantIndex
from memindex.ranking import hybrid_search, keyword_search
from memindex.serialize import KEYWORD_COLUMNS, from_arrays, to_arrays
from tests.support.bm25 import bm25_oracle

from .oracle import TAGS, brute_force, random_filters

WORDS = ["alpha", "Beta", "GAMMA", "delta", "err_4700", "ERR_4701", "x", "7", "straße", "STRASSE", "éclair",
         "ÉCLAIR", "日本", "rare_token", "the", "the", "the", "of", "of"]
DIM = 8


def random_text(rng) -> str | None:
    if rng.random() < 0.15:
        return None
    words = rng.choice(WORDS, size=int(rng.integers(0, 12)))
    seps = rng.choice([" ", ", ", "-", ".", "!  ", "\n"], size=len(words))
    return "".join(f"{w}{s}" for w, s in zip(words, seps, strict=True))


def random_row(rng, eid: str, seq: int, now: int) -> dict:
    return {
        "id": eid, "embedding": rng.normal(size=DIM).astype(np.float32), "seq": seq,
        "timestamp": int(rng.integers(0, 50)), "reward": float(rng.integers(-2, 3)),
        "expires_at": int(now + rng.integers(-5, 50)) if rng.random() < 0.2 else NO_EXPIRY,
        "task_id": f"task_{rng.integers(20)}",
        "source": None if rng.random() < 0.3 else f"s{rng.integers(3)}",
        "user_id": None if rng.random() < 0.3 else f"u{rng.integers(3)}",
        "tags": list(rng.choice(TAGS, size=int(rng.integers(0, 3)), replace=False)),
        "text": random_text(rng),
    }


def add(index: TenantIndex, rows: list[dict]) -> None:
    index.add(ids=[r["id"] for r in rows], embeddings=np.stack([r["embedding"] for r in rows]),
              seq=np.asarray([r["seq"] for r in rows], dtype=np.int64),
              timestamp=np.asarray([r["timestamp"] for r in rows], dtype=np.int64),
              reward=np.asarray([r["reward"] for r in rows], dtype=np.float64),
              expires_at=np.asarray([r["expires_at"] for r in rows], dtype=np.int64),
              task_id=[r["task_id"] for r in rows], source=[r["source"] for r in rows],
              user_id=[r["user_id"] for r in rows], tags=[r["tags"] for r in rows], text=[r["text"] for r in rows])


def passes(row: dict, flt: Filters, now: int) -> bool:
    tags = set(row["tags"])
    return (row["expires_at"] > now
            and (flt.min_reward is None or row["reward"] >= flt.min_reward)
            and (not flt.tags_any or bool(tags & set(flt.tags_any)))
            and set(flt.tags_all) <= tags
            and (flt.task_id_prefix is None or row["task_id"].startswith(flt.task_id_prefix))
            and (flt.source is None or row["source"] == flt.source)
            and (flt.user_id is None or row["user_id"] == flt.user_id)
            and (flt.time_after is None or row["timestamp"] >= flt.time_after)
            and (flt.time_before is None or row["timestamp"] <= flt.time_before))


def live_texts(model: dict[str, dict], now: int) -> dict[str, str | None]:
    return {eid: r["text"] for eid, r in model.items() if r["expires_at"] > now}


def ranked(model: dict, scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda e: (-scores[e], -model[e]["timestamp"], -model[e]["seq"]))


def keyword_oracle(model, query, k, flt, now):
    scores = bm25_oracle(live_texts(model, now), query)
    scores = {e: s for e, s in scores.items() if passes(model[e], flt, now)}
    order = ranked(model, scores)[:k]
    return order, [scores[e] for e in order]


def hybrid_oracle(index, model, q, query, k, flt, now, rrf_k, wv, wk):
    ids, _ = brute_force(index, q, index.n, flt, now)  # the full exact vector ranking of the filtered rows
    vrank = {eid: i + 1 for i, eid in enumerate(ids)}
    korder, _ = keyword_oracle(model, query, index.n, flt, now)
    krank = {eid: i + 1 for i, eid in enumerate(korder)}
    fused = {e: wv / (rrf_k + vrank[e]) + (wk / (rrf_k + krank[e]) if e in krank else 0.0) for e in vrank}
    order = ranked(model, fused)[:k]
    return order, [fused[e] for e in order], [vrank[e] for e in order], [krank.get(e, 0) for e in order]


def random_query(rng) -> str:
    return " ".join(rng.choice(WORDS + ["absent"], size=int(rng.integers(1, 4))))


def assert_matches_oracles(index, model, rng, now, rounds=25):
    for _ in range(rounds):
        flt = random_filters(rng) if rng.random() < 0.7 else Filters()
        query = random_query(rng)
        k = int(rng.integers(1, 30))
        hits = keyword_search(index, query, k, flt, now)
        ids, scores = keyword_oracle(model, query, k, flt, now)
        assert index.ids_at(hits.rows) == ids
        np.testing.assert_allclose(hits.scores, scores, rtol=0, atol=1e-6)
        assert hits.scores.tolist() == scores  # the same operations in the same order: bit for bit
        q = rng.normal(size=DIM).astype(np.float32)
        rrf_k, wv, wk = float(rng.choice([1, 60])), float(rng.choice([1.0, 0.5])), float(rng.choice([1.0, 2.0, 0.0]))
        hits = hybrid_search(index, q, query, k, flt, now, rrf_k=rrf_k, vector_weight=wv, keyword_weight=wk)
        ids, scores, vranks, kranks = hybrid_oracle(index, model, q, query, k, flt, now, rrf_k, wv, wk)
        assert index.ids_at(hits.rows) == ids
        assert hits.scores.tolist() == scores
        assert hits.vector_rank.tolist() == vranks
        assert hits.keyword_rank.tolist() == kranks


@pytest.mark.parametrize("seed, depth", [(0, 100), (1, 5), (2, 1)])
def test_keyword_and_hybrid_equal_the_oracles_through_churn(seed, depth, monkeypatch):
    monkeypatch.setattr(kw, "MERGE_MIN", 64)  # merges happen within the test's few hundred rows
    monkeypatch.setattr(ranking, "VECTOR_DEPTH", depth)  # most keyword rows need their exact vector rank
    rng = np.random.default_rng(seed)
    now = 1000
    index = TenantIndex(DIM, "cosine", capacity=4)
    model: dict[str, dict] = {}
    seq = 0
    for step in range(12):
        rows = []
        for _ in range(int(rng.integers(5, 60))):
            if model and rng.random() < 0.2:  # an update of a known id: new fields and text
                eid = str(rng.choice(sorted(model)))
                row = random_row(rng, eid, model[eid]["seq"], now)
                row["embedding"] = model[eid]["embedding"]  # embeddings never change
            else:
                row = random_row(rng, f"id{seq}", seq, now)
                seq += 1
            rows.append(row)
            model[row["id"]] = row  # an id twice in one call: last wins
        add(index, rows)
        doomed = [e for e in sorted(model) if rng.random() < 0.1]
        assert index.remove(doomed) == len(doomed)
        for eid in doomed:
            del model[eid]
        index.check()
        assert_matches_oracles(index, model, rng, now + step, rounds=8)
    arrays, meta = to_arrays(index)
    loaded = from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
    loaded.check()
    assert_matches_oracles(loaded, model, rng, now)


def test_hybrid_with_a_large_quantized_index_equals_the_oracle():
    """Spilled rows and the int8 copy: the vector ranks of keyword rows come from the row file."""
    rng = np.random.default_rng(7)
    index = TenantIndex(DIM, "dot", quantize_from=64)
    model = {}
    rows = [random_row(rng, f"id{i}", i, 0) for i in range(600)]
    for row in rows:
        row["expires_at"] = NO_EXPIRY
        model[row["id"]] = row
    add(index, rows)
    index.ensure_quantized()
    assert index.storage.quant is not None
    assert_matches_oracles(index, model, rng, 0, rounds=15)


def test_tokens_are_unicode_words_case_folded():
    assert kw.tokenize("ERR_4700: Straße, ÉCLAIR x 7 日本語") == ["err_4700", "strasse", "éclair", "x", "7", "日本語"]
    assert kw.tokenize(None) == [] and kw.tokenize("...!") == []
    assert kw.query_terms("a A b a") == ["a", "b"]


def test_a_rare_token_outranks_common_ones_and_absent_terms_match_nothing():
    index = TenantIndex(DIM, "cosine")
    rng = np.random.default_rng(3)
    rows = [random_row(rng, f"id{i}", i, 0) for i in range(10)]
    for i, row in enumerate(rows):
        row["text"], row["expires_at"] = f"request failed with ERR_{4700 + i} on the server", NO_EXPIRY
    add(index, rows)
    hits = keyword_search(index, "server error err_4703", 10)
    assert index.ids_at(hits.rows[:1]) == ["id3"]
    assert len(hits.rows) == 10  # every row holds "server"
    assert keyword_search(index, "nothing here", 10).rows.size == 0


def test_memory_is_counted_and_old_checkpoints_read_as_rows_without_text():
    rng = np.random.default_rng(5)
    index = TenantIndex(DIM, "cosine")
    before = index.nbytes()
    add(index, [dict(random_row(rng, f"id{i}", i, 0), text="word " * 50 + f"w{i}") for i in range(200)])
    assert index.keyword.nbytes() > 200 * 2 * 4  # postings and vocabulary counted
    assert index.nbytes() > before + index.keyword.nbytes() - 1
    arrays, meta = to_arrays(index)
    for name in KEYWORD_COLUMNS:
        del arrays[name]
    del meta["terms"]
    old = from_arrays({k: np.array(v) for k, v in arrays.items()}, meta)
    old.check()
    assert keyword_search(old, "word", 5).rows.size == 0
    assert len(old.search(np.ones(DIM, np.float32), 5)[0]) == 5
