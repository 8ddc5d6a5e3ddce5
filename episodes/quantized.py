"""An int8 copy of a tenant's rows, scanned with faiss's SIMD scalar-quantiser kernels, and the
certified search that makes its answers exact.

A float32 scan reads 4 bytes per dimension per row and is bound by memory bandwidth (PERF.md);
the int8 copy reads one. Its scores are approximate, but each row's error is bounded: for inner
products |q.x - q.x'| <= |q| |x - x'|, and for distances | |q-x| - |q-x'| | <= |x - x'| (triangle
inequality), where x' is the decoded row. Keeping |x - x'| per row lets the search prove that no
row outside its float32-re-ranked candidates can reach the k-th best exact score.
"""

from __future__ import annotations

import faiss
import numpy as np

faiss.omp_set_num_threads(1)  # one core per gunicorn worker, like BLAS (PERF.md)

MIN_ROWS = 20_000  # below this a float32 scan is already well under a millisecond
TRAIN_SAMPLE = 50_000
# float32 rounding of faiss's and BLAS's sums, relative to |q| |x|: far above the true error of
# a 1024-term float32 dot product (~1e-7 * sqrt(d)), so the proof never rests on it.
ROUNDING = 2e-5


class QuantizedCopy:
    """Row i here is row i of the TenantIndex; removals mirror its move-last-into-hole."""

    def __init__(self, dim: int, metric: str, sample: np.ndarray) -> None:
        self.metric = metric
        kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self.faiss = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, kind)
        self.faiss.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.err = np.empty(0, dtype=np.float32)
        self.n = 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if not len(rows):
            return
        codes = self.faiss.sa_encode(rows)
        decoded = self.faiss.sa_decode(codes)
        # Measured, not assumed: a row outside the trained range clips and gets a large (true) bound.
        err = np.linalg.norm(rows.astype(np.float64) - decoded, axis=1).astype(np.float32)
        self.faiss.add(rows)
        self.err = np.concatenate([self.err[: self.n], err])
        self.n += len(rows)

    def _codes(self) -> np.ndarray:
        flat = faiss.rev_swig_ptr(self.faiss.codes.data(), self.faiss.codes.size())
        return flat.reshape(-1, self.faiss.code_size)

    def move_last_into(self, row: int) -> None:
        """Drop `row` by moving the last row into it (the TenantIndex does the same)."""
        last = self.n - 1
        if row != last:
            codes = self._codes()
            codes[row] = codes[last]
            self.err[row] = self.err[last]
        self.faiss.codes.resize(last * self.faiss.code_size)
        self.faiss.ntotal = last
        self.n = last

    def nbytes(self) -> int:
        return self.n * self.faiss.code_size + self.err.nbytes

    # ----- search -----
    def _params(self, mask: np.ndarray | None):
        if mask is None:
            return None, None
        bitmap = np.packbits(mask, bitorder="little")
        return faiss.SearchParameters(sel=faiss.IDSelectorBitmap(bitmap)), bitmap  # keep bitmap alive

    def _higher_is_better(self, raw: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return -np.sqrt(np.maximum(raw, 0.0))
        return raw

    def best(self, q: np.ndarray, count: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rows with the `count` best approximate scores (among `mask`), and those scores."""
        params, _bitmap = self._params(mask)
        raw, rows = self.faiss.search(q[None, :], count, params=params)
        keep = rows[0] >= 0
        return rows[0][keep], self._higher_is_better(raw[0][keep])

    def reaching(self, q: np.ndarray, threshold: float, mask: np.ndarray | None) -> np.ndarray:
        """Every row (among `mask`) whose approximate score is at least `threshold`."""
        params, _bitmap = self._params(mask)
        if self.metric == "l2":
            if threshold > 0:
                return np.empty(0, dtype=np.int64)
            radius = float(threshold) ** 2 * (1 + 1e-6) + 1e-12  # faiss keeps squared distance < radius
        else:
            radius = float(threshold) - 1e-12 * (1 + abs(float(threshold)))  # faiss keeps score > radius
        _, _, rows = self.faiss.range_search(q[None, :], radius, params=params)
        return rows.astype(np.int64)

    def slack(self, q: np.ndarray, max_row_norm: float) -> float:
        """How far any row's exact score can sit above its approximate one."""
        max_err = float(self.err[: self.n].max()) if self.n else 0.0
        q_norm = float(np.linalg.norm(q))
        if self.metric == "l2":
            # Squared distances lose ~ROUNDING * (|q| + |x|)^2 to rounding; a square root turns that
            # into sqrt(ROUNDING) * (|q| + |x|) on the distance.
            return max_err + np.sqrt(ROUNDING) * (q_norm + max_row_norm + max_err) + 1e-6
        return q_norm * max_err + ROUNDING * q_norm * (max_row_norm + max_err) + 1e-6
