"""The keyword column of an index: exact BM25 over the rows' text (docs/api.md §4 and §9,
docs/design.md "Keyword index").

Tokens are the runs of Unicode word characters (`\\w+` of Python's `re`: letters, digits and the
underscore of every script) of the case-folded text (str.casefold). Scores are computed at query
time from the postings of the query's terms and the corpus statistics of that moment, so a write
never invalidates anything precomputed: the column follows the index's add/remove calls, and the
scores after a write are those of a fresh build.

Postings live in two numpy parts, like a small log-structured merge: a frozen part sorted by term
(an `indptr` over term ids, then document numbers and term frequencies) and a recent, unsorted log
that writes append to (folded in once it holds half as many postings as the frozen part). A document number names one indexing of one row's text; `doc_row` maps it
to the row (rows move when another is removed) or to -1 once the row is gone or re-indexed. When
the log or the dead documents grow large, `merge` folds everything into a new frozen part, dropping
dead documents and renumbering the live ones as their rows.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

TOKEN = re.compile(r"\w+")
K1 = 1.2
B = 0.75
MERGE_MIN = 1 << 16  # postings in the log before a merge is considered
_TERM_BYTES = 100  # what a vocabulary entry costs beyond its characters (dict slot, str header, list slot)


def tokenize(text: str | None) -> list[str]:
    """The text's tokens, in order: `\\w+` runs of text.casefold()."""
    return TOKEN.findall(text.casefold()) if text else []


def query_terms(text: str | None) -> list[str]:
    """The distinct tokens of a query, in first-occurrence order (a repeated term counts once)."""
    return list(dict.fromkeys(tokenize(text)))


def bm25_part(idf: float, tf: np.ndarray, dl: np.ndarray, avgdl: float) -> np.ndarray:
    """One term's BM25 contribution to documents with these term frequencies and lengths (float64).
    Written once, in one order of operations, so a brute-force oracle can reproduce it bit for bit."""
    return idf * (tf * (K1 + 1)) / (tf + K1 * (1 - B + B * dl / avgdl))


def idf_of(n_docs: int, df: int) -> float:
    """BM25's idf, in the form that is never negative (a term in every document still counts a little)."""
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


class _Growable:
    """A numpy array appended to in amortised O(1)."""

    def __init__(self, dtype: type, data: np.ndarray | None = None) -> None:
        self.data = np.empty(16, dtype=dtype) if data is None else data
        self.size = 0 if data is None else len(data)

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            bigger = np.empty(max(need, 2 * len(self.data)), dtype=self.data.dtype)
            bigger[: self.size] = self.data[: self.size]
            self.data = bigger
        self.data[self.size : need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self.data[: self.size]

    def nbytes(self) -> int:
        return self.data.nbytes


class KeywordColumn:
    """Term frequencies of every row's text, and the BM25 scores of a query over them."""

    def __init__(self, capacity: int) -> None:
        self.terms: dict[str, int] = {}
        self.strings: list[str] = []
        self.text_chars = 0  # characters of the vocabulary (its memory)
        self.row_doc = np.full(capacity, -1, dtype=np.int32)  # row -> its document, -1: no text
        self.doclen = np.zeros(capacity, dtype=np.int32)  # row -> tokens in its text
        self.doc_row = _Growable(np.int32)  # document -> its row, -1: dead
        self.dead = 0  # dead documents that still have postings
        self.indptr = np.zeros(1, dtype=np.int64)  # frozen part: term t's postings are [indptr[t], indptr[t+1])
        self.post_doc = np.empty(0, dtype=np.int32)
        self.post_tf = np.empty(0, dtype=np.int32)
        self.log_term, self.log_doc, self.log_tf = _Growable(np.int32), _Growable(np.int32), _Growable(np.int32)
        self.capacity = capacity

    def grow(self, capacity: int, n: int) -> None:
        row_doc = np.full(capacity, -1, dtype=np.int32)
        row_doc[:n] = self.row_doc[:n]
        doclen = np.zeros(capacity, dtype=np.int32)
        doclen[:n] = self.doclen[:n]
        self.row_doc, self.doclen, self.capacity = row_doc, doclen, capacity

    def nbytes(self) -> int:
        arrays = (self.row_doc.nbytes + self.doclen.nbytes + self.indptr.nbytes + self.post_doc.nbytes
                  + self.post_tf.nbytes)
        growable = sum(g.nbytes() for g in (self.doc_row, self.log_term, self.log_doc, self.log_tf))
        return arrays + growable + self.text_chars + _TERM_BYTES * len(self.strings)

    # ----- writes -----
    def _kill(self, row: int) -> None:
        doc = int(self.row_doc[row])
        if doc >= 0:
            self.doc_row.data[doc] = -1
            self.dead += 1
        self.row_doc[row] = -1
        self.doclen[row] = 0

    def write(self, rows: np.ndarray, texts: Sequence[str | None]) -> None:
        """Row rows[i] gets texts[i] (a row given twice: last wins). A row's earlier text, if any,
        is forgotten: its postings die with its document number."""
        final = dict(zip(rows.tolist(), texts, strict=True))  # last wins
        terms, docs, tfs, doc_rows = [], [], [], []
        next_doc = self.doc_row.size
        codes, strings = self.terms, self.strings
        for row, text in final.items():
            self._kill(row)
            counts = Counter(tokenize(text))
            if not counts:
                continue
            doc = next_doc + len(doc_rows)
            doc_rows.append(row)
            self.row_doc[row] = doc
            self.doclen[row] = sum(counts.values())
            for token in counts:  # inline: this loop runs once per distinct token of every text
                code = codes.get(token)
                if code is None:
                    code = codes[token] = len(strings)
                    strings.append(token)
                    self.text_chars += len(token)
                terms.append(code)
            tfs.extend(counts.values())
            docs.extend([doc] * len(counts))
        if not doc_rows:
            return
        self.doc_row.extend(np.asarray(doc_rows, dtype=np.int32))
        self.log_term.extend(np.asarray(terms, dtype=np.int32))
        self.log_doc.extend(np.asarray(docs, dtype=np.int32))
        self.log_tf.extend(np.asarray(tfs, dtype=np.int32))
        self.maybe_merge()

    def remove(self, row: int, last: int) -> None:
        """Row `row` goes: the last row moves into its place."""
        self._kill(row)
        if row != last:
            doc = int(self.row_doc[last])
            self.row_doc[row], self.doclen[row] = doc, self.doclen[last]
            if doc >= 0:
                self.doc_row.data[doc] = row
            self.row_doc[last], self.doclen[last] = -1, 0

    def maybe_merge(self) -> None:
        if self.log_doc.size > max(MERGE_MIN, self.post_doc.size // 2) or (
                self.dead > MERGE_MIN and 2 * self.dead > self.doc_row.size):
            self.merge()

    def merge(self) -> None:
        """Fold the log into the frozen part, drop dead documents and number each live one as its row."""
        frozen_terms = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))
        term = np.concatenate([frozen_terms, self.log_term.view()])
        doc = np.concatenate([self.post_doc, self.log_doc.view()])
        tf = np.concatenate([self.post_tf, self.log_tf.view()])
        row = self.doc_row.view()[doc] if doc.size else doc
        live = row >= 0
        term, row, tf = term[live], row[live], tf[live]
        # Grouped by term (the order within a term does not matter); the frozen part is already
        # grouped, which the stable sort (timsort on int32) runs through in linear time.
        order = np.argsort(term, kind="stable")
        self.post_doc = np.ascontiguousarray(row[order], dtype=np.int32)
        self.post_tf = np.ascontiguousarray(tf[order], dtype=np.int32)
        counts = np.bincount(term, minlength=len(self.strings))
        self.indptr = np.zeros(len(self.strings) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self._renumber()
        self.log_term, self.log_doc, self.log_tf = _Growable(np.int32), _Growable(np.int32), _Growable(np.int32)

    def _renumber(self) -> None:
        """After a merge every live document is numbered as its row."""
        n = len(self.row_doc)
        has = self.row_doc >= 0
        self.row_doc = np.where(has, np.arange(n, dtype=np.int32), -1).astype(np.int32)
        self.doc_row = _Growable(np.int32, self.row_doc.copy())
        self.dead = 0

    # ----- reads -----
    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """Document numbers and term frequencies of a term (dead documents included)."""
        docs, tfs = [], []
        if term < len(self.indptr) - 1:
            a, b = int(self.indptr[term]), int(self.indptr[term + 1])
            docs.append(self.post_doc[a:b])
            tfs.append(self.post_tf[a:b])
        if self.log_term.size:
            at = np.flatnonzero(self.log_term.view() == term)
            docs.append(self.log_doc.view()[at])
            tfs.append(self.log_tf.view()[at])
        if not docs:
            return np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int32)
        return np.concatenate(docs), np.concatenate(tfs)

    def bm25(self, query: str, n: int, live: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows of [0, n) holding at least one query term, ascending, and their BM25 scores (float64).

        The corpus is every row with at least one token that is live (`live`: a mask of rows not
        expired; None: all are): N such rows, avgdl their mean token count, df a term's count among
        them. Filters choose among the results; they do not change the statistics."""
        doclen = self.doclen[:n]
        corpus = doclen > 0 if live is None else (doclen > 0) & live
        n_docs = int(np.count_nonzero(corpus))
        if n_docs == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        avgdl = int(doclen[corpus].sum(dtype=np.int64)) / n_docs
        scores = np.zeros(n, dtype=np.float64)
        hit = np.zeros(n, dtype=bool)
        doc_row = self.doc_row.view()
        for token in query_terms(query):
            term = self.terms.get(token)
            if term is None:
                continue
            docs, tfs = self.postings(term)
            rows = doc_row[docs].astype(np.int64)
            keep = rows >= 0
            if live is not None:
                keep[keep] = live[rows[keep]]
            rows, tfs = rows[keep], tfs[keep]
            if not rows.size:
                continue
            part = bm25_part(idf_of(n_docs, int(rows.size)), tfs.astype(np.float64),
                             doclen[rows].astype(np.float64), avgdl)
            scores[rows] += part  # a document holds a term once (its frequency), so rows are distinct
            hit[rows] = True
        rows = np.flatnonzero(hit)
        return rows, scores[rows]

    def check(self, n: int) -> None:
        """Raise AssertionError unless rows and documents point at each other. For tests: O(n)."""
        row_doc = self.row_doc[:n]
        has = row_doc >= 0
        if not (self.doc_row.view()[row_doc[has]] == np.flatnonzero(has)).all():
            raise AssertionError("a row's document does not point back at it")
        if not ((self.doclen[:n] > 0) == has).all():
            raise AssertionError("document lengths disagree with the rows' documents")
        if (self.row_doc[n:] >= 0).any() or (self.doclen[n:] != 0).any():
            raise AssertionError("rows beyond n hold text")
        alive = self.doc_row.view()
        if int(np.count_nonzero(alive >= 0)) != int(np.count_nonzero(has)):
            raise AssertionError("live documents are not the rows' documents")

    # ----- checkpoints -----
    def to_arrays(self, n: int) -> tuple[dict[str, np.ndarray], list[str]]:
        """The merged postings (documents numbered as rows) and the document lengths, and the vocabulary."""
        self.merge()
        return ({"kw_indptr": self.indptr, "kw_rows": self.post_doc, "kw_tfs": self.post_tf,
                 "kw_doclen": self.doclen[:n]}, list(self.strings))

    @classmethod
    def from_arrays(cls, arrays: dict, terms: list[str], n: int) -> KeywordColumn:
        """The inverse of to_arrays (ValueError when they do not fit together)."""
        column = cls(n)
        indptr, rows, tfs, doclen = (np.asarray(arrays[k]) for k in ("kw_indptr", "kw_rows", "kw_tfs", "kw_doclen"))
        if indptr.shape != (len(terms) + 1,) or doclen.shape != (n,) or rows.shape != tfs.shape or rows.ndim != 1:
            raise ValueError("keyword arrays do not fit the vocabulary or the row count")
        if indptr[0] != 0 or indptr[-1] != rows.size or (np.diff(indptr) < 0).any():
            raise ValueError("keyword postings are not ordered by term")
        if rows.size and (rows.min() < 0 or rows.max() >= n or doclen[rows].min() <= 0):
            raise ValueError("a keyword posting names a row without text")
        column.strings = [str(t) for t in terms]
        column.terms = {t: i for i, t in enumerate(column.strings)}
        if len(column.terms) != len(column.strings):
            raise ValueError("the keyword vocabulary repeats a term")
        column.text_chars = sum(map(len, column.strings))
        column.indptr = indptr.astype(np.int64)
        column.post_doc, column.post_tf = rows.astype(np.int32), tfs.astype(np.int32)
        column.doclen = doclen.astype(np.int32)
        column.row_doc = np.where(column.doclen > 0, np.arange(n, dtype=np.int32), -1).astype(np.int32)
        column.doc_row = _Growable(np.int32, column.row_doc.copy())
        return column
