"""memindex/index.py against a brute-force numpy oracle (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from memindex.index import NO_EXPIRY, Filters, TenantIndex

TAGS = ["a", "b", "c", "d"]


def make_rows(rng, n, dim, start=0):
    return {
        "ids": [f"id{start + i}" for i in range(n)],
        "embeddings": rng.normal(size=(n, dim)).astype(np.float32),
        "seq": np.arange(start, start + n, dtype=np.int64),
        "timestamp": rng.integers(0, 50, size=n).astype(np.int64),  # many equal timestamps: ties
        "reward": rng.integers(-2, 3, size=n).astype(np.float64),
        "expires_at": np.full(n, NO_EXPIRY, dtype=np.int64),
        "task_id": [f"task_{rng.integers(20)}" for _ in range(n)],
        "source": [None if rng.random() < 0.3 else f"s{rng.integers(3)}" for _ in range(n)],
        "user_id": [None if rng.random() < 0.3 else f"u{rng.integers(3)}" for _ in range(n)],
        "tags": [list(rng.choice(TAGS, size=rng.integers(0, 3), replace=False)) for _ in range(n)],
    }


def oracle(rows, metric, query, k, flt: Filters, now=0):
    emb = rows["embeddings"].astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        scores = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    elif metric == "dot":
        scores = emb @ q
    else:
        scores = -np.linalg.norm(emb - q, axis=1)
    keep = []
    for i in range(len(rows["ids"])):
        tags = set(rows["tags"][i])
        ok = rows["expires_at"][i] > now
        ok &= flt.min_reward is None or rows["reward"][i] >= flt.min_reward
        ok &= not flt.tags_any or bool(tags & set(flt.tags_any))
        ok &= set(flt.tags_all) <= tags
        ok &= flt.task_id_prefix is None or rows["task_id"][i].startswith(flt.task_id_prefix)
        ok &= flt.source is None or rows["source"][i] == flt.source
        ok &= flt.user_id is None or rows["user_id"][i] == flt.user_id
        ok &= flt.time_after is None or rows["timestamp"][i] >= flt.time_after
        ok &= flt.time_before is None or rows["timestamp"][i] <= flt.time_before
        if ok:
            keep.append(i)
    keep.sort(key=lambda i: (-round(scores[i], 5), -rows["timestamp"][i], -rows["seq"][i]))
    return [rows["ids"][i] for i in keep[:k]], {rows["ids"][i]: scores[i] for i in keep}


def random_filters(rng) -> Filters:
    def maybe(value):
        return value if rng.random() < 0.4 else None

    return Filters(
        min_reward=maybe(float(rng.integers(-2, 3))),
        tags_any=tuple(rng.choice(TAGS + ["zz"], size=rng.integers(0, 3), replace=False)),
        tags_all=tuple(rng.choice(TAGS, size=rng.integers(0, 2), replace=False)),
        task_id_prefix=maybe(f"task_{rng.integers(1, 3)}"),
        source=maybe(f"s{rng.integers(4)}"),
        user_id=maybe(f"u{rng.integers(4)}"),
        time_after=maybe(int(rng.integers(0, 30))),
        time_before=maybe(int(rng.integers(20, 50))),
    )


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_search_matches_the_oracle_for_random_filters(metric):
    rng = np.random.default_rng(7)
    dim = 16
    rows = make_rows(rng, 400, dim)
    index = TenantIndex(dim, metric)
    index.add(**rows)
    for _ in range(150):
        query = rng.normal(size=dim).astype(np.float32)
        k = int(rng.integers(1, 30))
        flt = random_filters(rng)
        ids, scores = index.search(query, k, flt)
        expected, expected_scores = oracle(rows, metric, query, k, flt)
        assert len(ids) == len(expected) == min(k, len(expected_scores))
        np.testing.assert_allclose(scores, [expected_scores[i] for i in ids], atol=1e-4)
        # Same ranking up to float32 rounding: scores at each position agree.
        np.testing.assert_allclose([expected_scores[i] for i in ids], [expected_scores[i] for i in expected],
                                   atol=1e-4)


def test_exact_ties_break_on_newer_timestamp_then_later_store():
    index = TenantIndex(2, "cosine")
    same = np.array([[1.0, 0.0]] * 4, dtype=np.float32)
    index.add(ids=["old", "new", "first", "second"], embeddings=same, seq=np.array([0, 1, 2, 3]),
              timestamp=np.array([1, 9, 5, 5]), reward=np.zeros(4), expires_at=np.full(4, NO_EXPIRY),
              task_id=["t"] * 4, source=[None] * 4, user_id=[None] * 4, tags=[[]] * 4)
    ids, _ = index.search(np.array([1.0, 0.0], dtype=np.float32), 3)
    assert ids == ["new", "second", "first"]


def test_selective_filter_still_returns_every_match():
    rng = np.random.default_rng(1)
    rows = make_rows(rng, 2000, 8)
    rows["tags"] = [["rare"] if i % 500 == 0 else ["common"] for i in range(2000)]
    index = TenantIndex(8, "cosine")
    index.add(**rows)
    ids, _ = index.search(rng.normal(size=8).astype(np.float32), 10, Filters(tags_any=("rare",)))
    assert sorted(ids) == ["id0", "id1000", "id1500", "id500"]


def test_removal_and_update_keep_the_index_consistent():
    rng = np.random.default_rng(3)
    dim = 8
    rows = make_rows(rng, 300, dim)
    index = TenantIndex(dim, "dot")
    index.add(**rows)
    gone = set(rng.choice(rows["ids"], size=120, replace=False).tolist())
    assert index.remove(sorted(gone) + ["unknown"]) == 120
    keep = [i for i, eid in enumerate(rows["ids"]) if eid not in gone]
    kept = {key: ([v[i] for i in keep] if isinstance(v, list) else v[keep]) for key, v in rows.items()}
    # An update of filter columns (as a PATCH would do) on some surviving rows.
    for j in range(0, len(keep), 7):
        kept["reward"][j] = 5.0
        kept["tags"][j] = ["patched"]
    index.add(**kept)
    assert len(index) == len(keep)
    for _ in range(40):
        query = rng.normal(size=dim).astype(np.float32)
        flt = random_filters(rng)
        ids, _ = index.search(query, 15, flt)
        expected, scores = oracle(kept, "dot", query, 15, flt)
        np.testing.assert_allclose([scores[i] for i in ids], [scores[i] for i in expected], atol=1e-4)
    ids, _ = index.search(rng.normal(size=dim).astype(np.float32), 1000, Filters(tags_all=("patched",)))
    assert len(ids) == len(range(0, len(keep), 7))


def test_rare_tags_beyond_the_bitset_are_filtered_exactly():
    index = TenantIndex(2, "cosine")
    n = 600
    index.add(ids=[f"e{i}" for i in range(n)], embeddings=np.ones((n, 2), np.float32), seq=np.arange(n),
              timestamp=np.arange(n), reward=np.zeros(n), expires_at=np.full(n, NO_EXPIRY),
              task_id=["t"] * n, source=[None] * n, user_id=[None] * n, tags=[[f"tag{i}"] for i in range(n)])
    ids, _ = index.search(np.ones(2, np.float32), 5, Filters(tags_any=("tag599", "tag3", "tag300")))
    assert ids == ["e599", "e300", "e3"]
    index.remove(["e300"])
    ids, _ = index.search(np.ones(2, np.float32), 5, Filters(tags_all=("tag599",)))
    assert ids == ["e599"]


def test_tag_words_widen_as_the_vocabulary_grows_and_survive_a_checkpoint():
    import uuid

    rng = np.random.default_rng(5)
    index = TenantIndex(4, "dot")
    ids, tags = [], []
    for batch in range(6):  # each batch brings 50 new tags: the bitset widens from 1 to 4 words, then posts
        m = 40
        new_ids = [str(uuid.UUID(int=int(rng.integers(2**62)) << 64)) for _ in range(m)]
        new_tags = [[f"t{int(rng.integers(0, 50 * (batch + 1)))}" for _ in range(2)] for _ in range(m)]
        index.add(ids=new_ids, embeddings=rng.normal(size=(m, 4)).astype(np.float32),
                  seq=np.arange(len(ids), len(ids) + m), timestamp=np.zeros(m, np.int64), reward=np.zeros(m),
                  expires_at=np.full(m, NO_EXPIRY), task_id=["t"] * m, source=[None] * m, user_id=[None] * m,
                  tags=new_tags)
        ids += new_ids
        tags += new_tags
    copy = TenantIndex.from_arrays(*index.to_arrays())
    for probe in ("t0", "t63", "t64", "t130", "t255", "t256", "t299"):
        expected = {eid for eid, row in zip(ids, tags, strict=True) if probe in row}
        for each in (index, copy):
            found, _ = each.search(np.ones(4, np.float32), len(ids), Filters(tags_any=(probe,)))
            assert set(found) == expected, probe


def test_an_id_given_twice_in_one_add_is_one_row_with_the_last_values():
    index = TenantIndex(2, "dot")
    index.add(ids=["x", "y", "x"], embeddings=np.eye(2, dtype=np.float32)[[0, 1, 1]], seq=np.arange(3),
              timestamp=np.zeros(3, np.int64), reward=np.array([1.0, 2.0, 3.0]),
              expires_at=np.array([5, NO_EXPIRY, NO_EXPIRY]), task_id=["t"] * 3, source=[None] * 3,
              user_id=[None] * 3, tags=[["rare-x"], [], []])
    assert len(index) == 2 and index.ids == ["x", "y"]
    assert index._expiring == 0  # x's final expiry is NO_EXPIRY
    found, scores = index.search(np.array([1.0, 0.0], np.float32), 2, Filters(min_reward=2.5))
    assert found == ["x"] and scores.tolist() == [1.0]  # the first embedding, the last reward
    assert index.search(np.ones(2, np.float32), 2, Filters(tags_any=("rare-x",)))[0] == []


def test_expired_rows_are_invisible():
    index = TenantIndex(2, "cosine")
    index.add(ids=["a", "b"], embeddings=np.ones((2, 2), np.float32), seq=np.arange(2), timestamp=np.arange(2),
              reward=np.zeros(2), expires_at=np.array([100, NO_EXPIRY]), task_id=["t", "t"], source=[None] * 2,
              user_id=[None] * 2, tags=[[], []])
    assert index.search(np.ones(2, np.float32), 5, now_ms=99)[0] == ["b", "a"]
    assert index.search(np.ones(2, np.float32), 5, now_ms=100)[0] == ["b"]


def brute_force(index: TenantIndex, query, k, flt=None, now=0):
    """The float32 oracle: every matching row scored in float32, SPEC tie-break."""
    q = index.prepare_query(query)
    mask = index.mask(flt or Filters(), now)
    rows = np.arange(index.n) if mask is None else np.flatnonzero(mask)
    scores = index.exact_scores(q, rows)  # every matching row, no candidate selection
    from memindex.index import top_k

    best = top_k(scores, index.timestamp[rows], index.seq[rows], k)
    return index.ids_at(rows[best]), scores[best]


def adversarial_rows(rng, kind: str, n: int, dim: int):
    if kind == "clustered":
        centres = rng.normal(size=(8, dim)) * 3
        return (centres[rng.integers(8, size=n)] + rng.normal(size=(n, dim)) * 0.3).astype(np.float32)
    if kind == "duplicates":
        base = rng.normal(size=(n // 20 + 1, dim)).astype(np.float32)
        return base[rng.integers(len(base), size=n)]
    if kind == "near-ties":
        base = rng.normal(size=dim).astype(np.float32)
        return (base + rng.normal(size=(n, dim)) * 1e-4).astype(np.float32)
    if kind == "all-equal":
        return np.tile(rng.normal(size=dim).astype(np.float32), (n, 1))
    if kind == "outliers":
        rows = rng.normal(size=(n, dim)).astype(np.float32)
        rows[rng.integers(n, size=10)] *= 1000
        return rows
    raise ValueError(kind)


@pytest.mark.parametrize("path", ["int8", "float32"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("kind", ["clustered", "duplicates", "near-ties", "all-equal", "outliers"])
@pytest.mark.parametrize("dim", [8, 96, 1024])
def test_certified_search_equals_the_brute_force_oracle(metric, kind, dim, path):
    rng = np.random.default_rng(hash((metric, kind, dim)) % 2**32)
    n = 1500 if dim < 1024 else 600
    rows = make_rows(rng, n, dim)
    rows["embeddings"] = adversarial_rows(rng, kind, n, dim)
    rows["timestamp"] = rng.integers(0, 3, size=n).astype(np.int64)  # many exact ties
    index = TenantIndex(dim, metric, quantize_from=100 if path == "int8" else 10**9)
    index.add(**rows)
    for trial in range(12):
        if trial % 3 == 0:
            query = rows["embeddings"][rng.integers(n)].copy()  # a stored row: exact top score ties
        else:
            query = rng.normal(size=dim).astype(np.float32) * (50 if kind == "outliers" else 1)
        k = int(rng.choice([1, 5, 50]))
        flt = Filters(min_reward=-1.0) if trial % 2 else None  # a broad filter (80 %) also goes through int8
        ids, scores = index.search(query, k, flt)
        expected_ids, expected_scores = brute_force(index, query, k, flt)
        assert ids == expected_ids
        np.testing.assert_array_equal(scores, expected_scores)  # the same float32 values, bit for bit
    assert (index.quant is not None) == (path == "int8")  # the path under test really ran


def test_certified_search_follows_adds_and_removals():
    rng = np.random.default_rng(5)
    dim = 32
    rows = make_rows(rng, 3000, dim)
    index = TenantIndex(dim, "cosine", quantize_from=500)
    index.add(**rows)
    index.search(rng.normal(size=dim).astype(np.float32), 5)  # builds the int8 copy
    assert index.rows.slot is None  # every row at its own slot: no map kept
    index.remove(rows["ids"][::3])
    assert index.rows.slot is not None
    more = make_rows(rng, 700, dim, start=10_000)
    more["embeddings"] *= 40  # other norms: other per-row scales
    index.add(**more)
    from memindex.quantized import quantize

    # The int8 columns still mirror the float32 rows after growth, moves and appends, and the row
    # file holds each id's own (normalised) vector, removed rows' slots reused.
    assert index.emb is None and index.rows is not None
    stored = index.vectors(np.arange(index.n))
    np.testing.assert_array_equal(index.quant.codes[: index.n], quantize(stored)[0])
    given = dict(zip(rows["ids"] + more["ids"], np.concatenate([rows["embeddings"], more["embeddings"]]),
                     strict=True))
    expected = np.array([given[eid] for eid in index.ids], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-7)
    assert index.rows._fresh == 3000  # the 700 new rows went into the 1000 freed slots
    for _ in range(20):
        query = rng.normal(size=dim).astype(np.float32)
        assert index.search(query, 10)[0] == brute_force(index, query, 10)[0]


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("kind", ["clustered", "duplicates", "near-ties", "all-equal", "outliers"])
@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 1e4])
@pytest.mark.parametrize("dim", [8, 96, 1100])  # 1100: integer dot products beyond float32's exact range
def test_fast_candidate_selection_equals_the_float64_reference(metric, kind, magnitude, dim):
    """quantized.candidates (float32 pre-selection, float64 bounds on the survivors) picks exactly the
    rows that the float64 bounds of every row pick, whole, masked or gathered."""
    from memindex.quantized import select

    rng = np.random.default_rng(hash((metric, kind, dim, magnitude)) % 2**32)
    n = 1200 if dim < 1000 else 300
    rows = make_rows(rng, n, dim)
    rows["embeddings"] = adversarial_rows(rng, kind, n, dim) * np.float32(magnitude)
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(**rows)
    index.ensure_quantized()
    quant = index.quant
    for trial in range(9):
        if trial % 3 == 0:
            query = rows["embeddings"][rng.integers(n)].copy()
        else:
            query = rng.normal(size=dim).astype(np.float32) * np.float32(rng.choice([1e-3, 1.0, 50.0]))
        q = index.prepare_query(query)
        k = int(rng.choice([1, 5, 50]))
        lower, upper = quant.bounds(q, index.n)
        if trial % 3 == 0:
            expected, got = select(lower, upper, k, None), quant.candidates(q, k, index.n)[0]
        elif trial % 3 == 1:
            mask = rng.random(index.n) < 0.5
            expected, got = select(lower, upper, k, mask), quant.candidates(q, k, index.n, mask=mask)[0]
        else:
            subset = np.flatnonzero(rng.random(index.n) < 0.1)
            expected = subset[select(lower[subset], upper[subset], k, None)]
            got = quant.candidates(q, k, index.n, rows=subset)[0]
        np.testing.assert_array_equal(np.sort(got), np.sort(expected))


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_exactly_quantized_rows_and_a_far_query_keep_float32_ties(metric):
    """Rows and queries that int8 codes represent exactly: the bounds shrink to their rounding
    headroom, finer than the float32 rounding of the reported scores. Rows whose distances differ
    by less than a float32 step tie once reported, and the newer must win (an l2 case that once
    lost it: a query far larger than the rows)."""
    rng = np.random.default_rng(0)
    dim, n = 8, 2000
    emb = rng.integers(-126, 127, size=(n, dim)).astype(np.float32)
    emb[:, 0] = 127  # scale exactly 1: codes are the rows
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(ids=[f"e{i}" for i in range(n)], embeddings=emb, seq=np.arange(n),
              timestamp=rng.integers(0, 3, size=n), reward=np.zeros(n), expires_at=np.full(n, NO_EXPIRY),
              task_id=["t"] * n, source=[None] * n, user_id=[None] * n, tags=[[]] * n)
    for _ in range(300):
        m = float(rng.choice([100.0, 1000.0, 10000.0]))
        query = (rng.integers(-126, 127, size=dim) * m).astype(np.float32)
        query[0] = -127 * m
        k = int(rng.choice([1, 5]))
        assert index.search(query, k)[0] == brute_force(index, query, k)[0]


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("placement", ["anywhere", "between-samples", "only-between-samples", "best-masked-out"])
def test_the_first_cut_from_a_sample_keeps_what_the_float64_reference_picks(metric, placement):
    """candidates() takes its first cut from the k-th best of a sample of the scores: with the best
    rows inside or outside the sampled slices, with a mask that no sampled row passes (the sample
    then falls back to the whole scope) and with one that only the worse half passes, it picks
    what every row's float64 bounds pick."""
    from memindex import quantized
    from memindex.quantized import select

    rng = np.random.default_rng(len(metric) * 7 + len(placement))
    n, dim = 24_000, 16
    rows = make_rows(rng, n, dim)
    index = TenantIndex(dim, metric, quantize_from=100)
    index.add(**rows)
    index.ensure_quantized()
    quant = index.quant
    step, part = n // quantized.SAMPLE_SLICES, n // (quantized.SAMPLE_SLICES * 16)
    sampled = np.zeros(n, dtype=bool)
    for i in range(quantized.SAMPLE_SLICES):
        sampled[i * step : i * step + part] = True
    for _ in range(6):
        k = int(rng.choice([1, 5, 50]))
        query = rng.normal(size=dim).astype(np.float32)
        q = index.prepare_query(query)
        lower, upper = quant.bounds(q, index.n)
        mask = None
        if placement == "between-samples":  # the best rows all lie where the sample does not look
            mask = np.ones(n, dtype=bool)
            mask[sampled & (upper > np.quantile(upper, 0.5))] = False
        elif placement == "only-between-samples":
            mask = ~sampled & (rng.random(n) < 0.3)
        elif placement == "best-masked-out":
            mask = upper < np.quantile(upper, 0.5)
        expected = select(lower, upper, k, mask)
        got = quant.candidates(q, k, index.n, mask=mask)[0]
        np.testing.assert_array_equal(np.sort(got), np.sort(expected))
        ids, _ = index.search(query, k, None)
        assert ids == brute_force(index, query, k)[0]


@pytest.mark.parametrize("dim", [8, 96, 1100])  # 1100: the scan's float64 output
@pytest.mark.parametrize("parts", [2, 3])
def test_a_scan_cut_into_parts_on_threads_gives_the_same_integers(dim, parts, monkeypatch):
    from memindex import quantized

    rng = np.random.default_rng(dim * 10 + parts)
    n = 1001  # parts of unequal length
    index = TenantIndex(dim, "dot", quantize_from=100)
    index.add(**make_rows(rng, n, dim))
    index.ensure_quantized()
    q_codes = quantized.quantize(rng.normal(size=(1, dim)).astype(np.float32))[0]
    whole = index.quant._scan(q_codes, index.quant.codes[:n]).copy()  # the next scan reuses its buffer
    monkeypatch.setattr(quantized, "SCAN_SPLIT_FROM", 10)
    monkeypatch.setattr(quantized, "SCAN_PARTS", parts)
    cut = index.quant._scan(q_codes, index.quant.codes[:n])
    exact = index.quant.codes[:n].astype(np.int64) @ q_codes[0].astype(np.int64)
    assert cut.dtype == whole.dtype and np.array_equal(cut, whole) and np.array_equal(cut, exact)
    gathered = np.flatnonzero(rng.random(n) < 0.4)
    assert np.array_equal(index.quant._scan(q_codes, index.quant.codes[gathered]), exact[gathered])


def test_code_columns_widen_past_int16_and_keep_filtering():
    index = TenantIndex(2, "dot")
    n, batch = 40_000, 10_000
    for start in range(0, n, batch):
        index.add(ids=[f"e{i}" for i in range(start, start + batch)], embeddings=np.ones((batch, 2), np.float32),
                  seq=np.arange(start, start + batch), timestamp=np.arange(start, start + batch),
                  reward=np.zeros(batch), expires_at=np.full(batch, NO_EXPIRY),
                  task_id=[f"task-{i}" for i in range(start, start + batch)],
                  source=[None if i % 2 else "s" for i in range(start, start + batch)], user_id=[None] * batch,
                  tags=[[]] * batch)
        assert index.task.dtype == (np.int16 if start + batch <= 32767 else np.int32)
    assert index.source.dtype == np.int16
    copy = TenantIndex.from_arrays(*index.to_arrays())
    assert copy.task.dtype == np.int32 and copy.source.dtype == np.int16
    for each in (index, copy):
        assert each.search(np.ones(2, np.float32), 3, Filters(task_id_prefix="task-39999"))[0] == ["e39999"]
        assert each.search(np.ones(2, np.float32), 2, Filters(task_id_prefix="task-1", source="s"))[0] == [
            "e19998", "e19996"]
        assert each.search(np.ones(2, np.float32), 1, Filters(task_id_prefix="task-0"))[0] == ["e0"]


def test_searches_on_several_threads_at_once_match_the_same_searches_one_by_one():
    """The int8 search's reusable buffers (memindex/scratch.py) are per thread: searches of two
    tenants on one thread, and of one tenant on several threads at once, do not share them."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    dim = 32
    big, other = TenantIndex(dim, "cosine", quantize_from=100), TenantIndex(dim, "dot", quantize_from=100)
    big.add(**make_rows(rng, 5000, dim))
    other.add(**make_rows(rng, 3000, dim))
    queries = rng.normal(size=(40, dim)).astype(np.float32)
    filters = [None, Filters(min_reward=0.0)]
    jobs = [(index, q, 1 + i % 20, filters[i % 2]) for i, q in enumerate(queries) for index in (big, other)]
    alone = [index.search(q, k, flt)[0] for index, q, k, flt in jobs]
    assert alone == [brute_force(index, q, k, flt)[0] for index, q, k, flt in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: job[0].search(job[1], job[2], job[3])[0], jobs * 5))
    assert together == alone * 5
