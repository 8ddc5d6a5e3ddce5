"""An int8 copy of a tenant's rows, scanned with simsimd's SIMD int8 dot products, and the bounds
that let the search use it without giving up exactness.

A float32 scan reads 4 bytes per dimension per row and is bound by memory bandwidth (PERF.md);
the int8 copy reads one. Each row x is stored as s * c (c int8, s = max|x| / 127) with its
reconstruction error e = |x - s c|, and the query likewise as q' with error e_q. Then

    |q.x - q'.x'| <= |q| e + |x'| e_q

so every row gets an interval [lower, upper] that holds its exact score. The k-th best lower bound
is a floor for the k-th best exact score, and only rows whose upper bound reaches that floor can be
in the exact top k: those, usually a handful, are scored exactly.
"""

from __future__ import annotations

import numpy as np
import simsimd

MIN_ROWS = 20_000  # below this a float32 scan is already well under a millisecond
# Headroom for float rounding in the bounds and in the exact scores (float64 sums, float32 result).
ROUNDING = 2e-6
QUANTIZE_CHUNK = 4096


def quantize(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """int8 codes, scales, error terms, reconstructed norms and squared norms of float32 rows.

    The error term is the reconstruction error plus the rounding headroom for a row of that norm,
    so a query pays one multiply per row for both."""
    rows64 = np.atleast_2d(rows).astype(np.float64)
    peak = np.abs(rows64).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    codes = np.clip(np.rint(rows64 / scale[:, None]), -127, 127).astype(np.int8)
    rebuilt = codes.astype(np.float64) * scale[:, None]
    sq = (rows64**2).sum(axis=1)
    err = np.linalg.norm(rows64 - rebuilt, axis=1) + ROUNDING * (np.sqrt(sq) + 1.0)
    return codes, scale, err, np.linalg.norm(rebuilt, axis=1) * (1 + ROUNDING), sq


class QuantizedColumns:
    """Row i here is row i of the TenantIndex (same capacity growth and move-last-into-hole)."""

    def __init__(self, dim: int, capacity: int) -> None:
        self.codes = np.zeros((capacity, dim), dtype=np.int8)
        self.scale = np.zeros(capacity, dtype=np.float64)
        self.err = np.zeros(capacity, dtype=np.float64)
        self.norm = np.zeros(capacity, dtype=np.float64)
        self.sq = np.zeros(capacity, dtype=np.float64)

    def grow(self, capacity: int, n: int) -> None:
        for name in ("codes", "scale", "err", "norm", "sq"):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)

    def set_rows(self, start: int, rows: np.ndarray) -> None:
        # In chunks: quantize() works in float64, eight times the int8 size of what it converts.
        for offset in range(0, len(rows), QUANTIZE_CHUNK):
            part = rows[offset : offset + QUANTIZE_CHUNK]
            a, b = start + offset, start + offset + len(part)
            self.codes[a:b], self.scale[a:b], self.err[a:b], self.norm[a:b], self.sq[a:b] = quantize(part)

    def move(self, src: int, dst: int) -> None:
        for column in (self.codes, self.scale, self.err, self.norm, self.sq):
            column[dst] = column[src]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in (self.codes, self.scale, self.err, self.norm, self.sq))

    def bounds(self, q: np.ndarray, n: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the exact higher-is-better score of rows [0, n)."""
        q_codes, q_scale, q_err, _, _ = quantize(q[None, :])
        # Integer dot products of int8 codes: exact (|sum| < 2^53), one pass over n * dim bytes.
        approx = np.asarray(simsimd.cdist(q_codes, self.codes[:n], metric="dot"), dtype=np.float64)[0]
        approx *= q_scale[0]
        approx *= self.scale[:n]
        q_norm = float(np.linalg.norm(q.astype(np.float64))) * (1 + ROUNDING)
        slack = self.err[:n] * q_norm
        slack += self.norm[:n] * (q_err[0] + ROUNDING)
        if metric != "l2":
            return approx - slack, approx + slack
        # |q - x|^2 = |q|^2 - 2 q.x + |x|^2, with q.x inside approx +- slack.
        base = q_norm**2 + self.sq[:n] - 2.0 * approx
        lower = -np.sqrt(np.maximum(base + 2.0 * slack, 0.0))
        upper = -np.sqrt(np.maximum(base - 2.0 * slack, 0.0))
        return lower, upper


def candidates(lower: np.ndarray, upper: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    """Rows that may be in the exact top k: upper bound at least the k-th best lower bound."""
    if mask is not None:
        lower = np.where(mask, lower, -np.inf)
        upper = np.where(mask, upper, -np.inf)
    size = lower.size
    floor = np.partition(lower, size - k)[size - k] if k < size else -np.inf
    return np.flatnonzero(upper >= floor)
