"""An int8 copy of a tenant's rows, scanned with simsimd's SIMD int8 dot products, and the bounds
that let the search use it without giving up exactness.

A float32 scan reads 4 bytes per dimension per row and is bound by memory bandwidth (PERF.md);
the int8 copy reads one. Each row x is stored as s * c (c int8, s = max|x| / 127) with its
reconstruction error e = |x - s c|, and the query likewise as q' with error e_q. Then

    |q.x - q'.x'| <= |q| e + |x'| e_q

so every row gets an interval [lower, upper] that holds its exact score. The k-th best lower bound
is a floor for the k-th best exact score, and only rows whose upper bound reaches that floor can be
in the exact top k: those, usually a handful, are scored exactly.

The codes are of the rows rotated by one orthonormal R (the principal axes of the first rows
quantized, largest first), which keeps every dot product (q.x = Rq.Rx) but gathers most of a row's
weight in its first coordinates. They are kept as two arrays, the first `head` coordinates and the
rest (`tail`), so that a large cosine or dot scan can read the heads only: with |x'_T| per row,

    q'.x' <= q'_H.x'_H + |q'_T| |x'_T|

bounds every row from a third of its codes, and only the rows whose bound reaches the k-th best
lower bound (from a few rows scored in full first) have their tails read (bench/results/prefix_pass.md).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simsimd

# Tenants of this many rows get the int8 copy. Below it a float32 scan reads at most 12 MB (dim
# 384): 0.2 ms from cache, but a server reads it from DRAM. Measured over HTTP at 10k rows: 1.70 ms
# int8 against 1.97 ms float32. Each such tenant holds one open row file per worker (rowstore.py).
MIN_ROWS = 8192
# Headroom for float rounding in the bounds and in the exact scores (float64 sums, float32 result).
ROUNDING = 2e-6
# For l2 the reported score is a distance rounded to float32 (2^-24 relative), which ROUNDING's
# additive headroom does not cover when the query is far larger than the rows: the distance bounds
# also get this relative headroom (float32 rounding, the square root and base's float64 rounding).
L2_REL = 2.0**-21
# Rows quantized at a time: quantize() makes a few float64 temporaries of this many rows; small
# ones keep the build's transient memory (which the allocator may keep) to a few MB.
QUANTIZE_CHUNK = 1024
# A large scan is cut into one part per core, scanned by simsimd on Python threads (it releases
# the GIL). Measured at 100k x 384 on 2 cores: 0.59 ms instead of 1.16 alone, and with two workers
# scanning at once the same 850 scans a second each either way. simsimd's own `threads` is not
# used: its threads spin, and two workers scanning at once took 13 ms each instead of 1.6.
SCAN_SPLIT_FROM = 32_768  # rows; below this, handing half to a thread costs more than it saves


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


SCAN_PARTS = max(1, min(4, available_cpus()))
# Integer dot products of int8 codes stay below 2^24 (so float32 holds them exactly) up to this dim.
EXACT_F32_DIM = 2**24 // (127 * 127)
# Relative headroom of the float32 pre-selection in candidates() (float32 rounds to 2^-24): ample.
F32_SLACK = 2.0**-20
F32_SAFE = 1e30  # magnitudes beyond this (or near float32 underflow) take the float64 path only
# Scopes of at least this many rows (cosine and dot) scan the heads first, then the tails of the
# rows that can still be in the top k. Measured at 100k x 384 (bench/results/prefix_pass.md): heads
# of a third of the codes take 0.39 of the full scan and leave a median 1.2 % of the rows.
PREFIX_FROM = 16_384
PROBE = 32  # rows beyond k scored in full first: their k-th best lower bound is the heads' floor
TAIL_GATHER_FRACTION = 0.25  # more surviving rows than this share: scan every tail instead of gathering
# R^T R = I to within this (entrywise): R moves a dot product by about dim times as much, relative,
# far inside the ROUNDING headroom that every error term carries (quantize).
ORTHONORMAL_TO = 1e-12
# Beyond this dim the rows keep their own basis: a rotation costs dim^2 x 8 bytes a tenant and an
# eigendecomposition of dim^3 (about a second at 1024, 15 s at 4096), and without one the heads
# bound little, so such tenants scan whole codes.
PRINCIPAL_MAX_DIM = 1024


def head_width(dim: int) -> int:
    """Coordinates in a row's head: a third of dim; small dims keep whole rows in the head."""
    return dim // 3 if dim >= 96 else dim


def principal_rotation(rows: np.ndarray) -> np.ndarray | None:
    """An orthonormal dim x dim matrix whose columns are the principal axes of the rows' directions,
    largest first; None (the rows' own basis) past PRINCIPAL_MAX_DIM, when there is nothing to learn
    from, or when the result is not orthonormal to ORTHONORMAL_TO. Any orthonormal matrix keeps the
    search exact; a good one only lets the heads bound more."""
    dim = rows.shape[1]
    if dim > PRINCIPAL_MAX_DIM or head_width(dim) == dim:
        return None
    sample = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(sample, axis=1)
    usable = np.isfinite(norms) & (norms > 0)
    if not usable.any():
        return None
    unit = sample[usable] / norms[usable, None]  # directions: a huge-norm row must not pick the axes
    _, vectors = np.linalg.eigh(unit.T @ unit)
    rotation = np.ascontiguousarray(vectors[:, ::-1])
    if not np.isfinite(rotation).all() or np.abs(rotation.T @ rotation - np.eye(dim)).max() > ORTHONORMAL_TO:
        return None
    return rotation


def _up32(values: np.ndarray) -> np.ndarray:
    """float64 values as float32, each rounded up (so an upper bound stays one)."""
    out = values.astype(np.float32)
    low = out < values
    out[low] = np.nextafter(out[low], np.float32(np.inf))
    return out


def quantize(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """int8 codes, scales, error terms, reconstructed norms and squared norms of float32 rows.

    Scales, error terms and norms are float32, 4 bytes a row each instead of 8: the scale is
    rounded up to a float32 and the codes are made with that exact scale; the error term and the
    norm are upper bounds, rounded up. The error term is the reconstruction error plus the rounding
    headroom for a row of that norm, so a query pays one multiply per row for both."""
    rows64 = np.atleast_2d(rows).astype(np.float64)
    peak = np.abs(rows64).max(axis=1)
    scale = np.where(peak > 0, _up32(peak / 127.0), np.float32(1.0))
    codes = np.clip(np.rint(rows64 / scale[:, None]), -127, 127).astype(np.int8)
    rebuilt = codes.astype(np.float64) * scale[:, None]
    sq = (rows64**2).sum(axis=1)
    err = np.linalg.norm(rows64 - rebuilt, axis=1) + ROUNDING * (np.sqrt(sq) + 1.0)
    return codes, scale, _up32(err), _up32(np.linalg.norm(rebuilt, axis=1) * (1 + ROUNDING)), sq


class QuantizedColumns:
    """Row i here is row i of the TenantIndex (same capacity growth and move-last-into-hole).

    `codes` are the heads of the rotated rows' codes and `tail` the rest; `tnorm` bounds each
    tail's reconstructed norm. Squared norms only serve l2, so other metrics keep none."""

    DTYPES = {"codes": np.int8, "tail": np.int8, "scale": np.float32, "err": np.float32, "norm": np.float32,
              "tnorm": np.float32, "sq": np.float64, "sq32": np.float32, "rotation": np.float64}

    def __init__(self, dim: int, capacity: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self.head = head_width(dim)
        self.stored = stored_columns(metric)  # what a checkpoint keeps
        self.derived = ("sq32",) if metric == "l2" else ()  # float32 copy for the pre-selection
        self.per_row = tuple(c for c in (*self.stored, *self.derived) if c != "rotation")
        # Chosen from the first rows set (set_rows) or adopted with a checkpoint's codes; None: the
        # rows' own basis.
        self.rotation: np.ndarray | None = None
        self.basis_chosen = False
        for name in self.per_row:
            setattr(self, name, np.zeros(self.shape(name, capacity), dtype=self.DTYPES[name]))
        # Extremes of every row ever set: a removal leaves them as bounds, still valid (looser).
        self.err_max = self.norm_max = self.tnorm_max = self.sq_max = 0.0
        self.scale_min = np.inf

    def shape(self, name: str, rows: int) -> tuple[int, ...]:
        if name == "rotation":  # (0, 0) in a checkpoint: the rows' own basis
            return (self.dim, self.dim) if self.rotation is not None else (0, 0)
        if name == "codes":
            return (rows, self.head)
        return (rows, self.dim - self.head) if name == "tail" else (rows,)

    def _extend_extremes(self, a: int, b: int) -> None:
        if b > a:
            self.err_max = max(self.err_max, float(self.err[a:b].max()))
            self.norm_max = max(self.norm_max, float(self.norm[a:b].max()))
            self.tnorm_max = max(self.tnorm_max, float(self.tnorm[a:b].max()))
            if self.metric == "l2":
                self.sq_max = max(self.sq_max, float(self.sq[a:b].max()))
            self.scale_min = min(self.scale_min, float(self.scale[a:b].min()))

    def derive(self, n: int) -> None:
        """The float32 copies and extremes of rows [0, n) (after adopting stored columns)."""
        if self.metric == "l2":
            self.sq32 = self.sq[:n].astype(np.float32)
        self._extend_extremes(0, n)

    def grow(self, capacity: int, n: int) -> None:
        for name in self.per_row:
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)

    def rotate(self, vectors: np.ndarray) -> np.ndarray:
        """float64 vectors (rows) in the codes' basis (their own before any row is set)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        return vectors if self.rotation is None else vectors @ self.rotation

    def set_rows(self, start: int, rows: np.ndarray) -> None:
        if not self.basis_chosen:  # the first rows ever set choose the basis for every later one
            self.rotation, self.basis_chosen = principal_rotation(rows[:QUANTIZE_CHUNK]), True
        # In chunks: quantize() works in float64, eight times the int8 size of what it converts.
        for offset in range(0, len(rows), QUANTIZE_CHUNK):
            part = rows[offset : offset + QUANTIZE_CHUNK]
            a, b = start + offset, start + offset + len(part)
            codes, self.scale[a:b], self.err[a:b], self.norm[a:b], _ = quantize(self.rotate(part))
            self.codes[a:b], self.tail[a:b] = codes[:, : self.head], codes[:, self.head :]
            self.tnorm[a:b] = tail_norms(codes[:, self.head :], self.scale[a:b])
            if self.metric == "l2":  # of the rows themselves: the rotation would round them
                self.sq[a:b] = sq = (np.asarray(part, dtype=np.float64) ** 2).sum(axis=1)
                self.sq32[a:b] = sq
            self._extend_extremes(a, b)

    def move(self, src: int, dst: int) -> None:
        for name in self.per_row:
            column = getattr(self, name)
            column[dst] = column[src]

    def nbytes(self) -> int:
        rotation = 0 if self.rotation is None else self.rotation.nbytes
        return sum(getattr(self, name).nbytes for name in self.per_row) + rotation

    def _scan(self, q_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Integer dot products of the query's codes with `codes`, exact (float32 when it holds them)."""
        size = len(codes)
        out = np.empty((1, size), dtype=np.float32 if self.dim <= EXACT_F32_DIM else np.float64)
        if not size:
            return out[0]
        kind = out.dtype.name

        def scan(a: int, b: int) -> None:
            simsimd.cdist(q_codes, codes[a:b], metric="dot", out=out[:, a:b], out_dtype=kind)

        parts = SCAN_PARTS if size >= SCAN_SPLIT_FROM else 1
        cuts = [size * i // parts for i in range(parts + 1)]
        others = [_pool().submit(scan, cuts[i], cuts[i + 1]) for i in range(1, parts)]
        scan(cuts[0], cuts[1])  # the first part on this thread
        for other in others:
            other.result()
        return out[0]

    def _query(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
        """The query's head and tail codes, scale and error term (rotated as the rows), |q| and
        |q'_T|, both rounded up (|Rq| = |q| far inside ROUNDING: see ORTHONORMAL_TO)."""
        q_codes, q_scale, q_err, _, _ = quantize(self.rotate(q[None, :]))
        qs = float(q_scale[0])
        q_norm = float(np.linalg.norm(q.astype(np.float64))) * (1 + ROUNDING)
        q_tail = float(tail_norms(q_codes[:, self.head :], q_scale.astype(np.float32))[0])
        return q_codes[:, : self.head], q_codes[:, self.head :], qs, float(q_err[0]), q_norm, q_tail

    def _tails(self, q_tail: np.ndarray, rows: np.ndarray | slice) -> np.ndarray | float:
        """Integer dot products of the query's tail with the tails of `rows` (0 without tails)."""
        return self._scan(q_tail, self.tail[rows]) if self.head < self.dim else 0.0

    def candidates(self, q: np.ndarray, k: int, n: int, mask: np.ndarray | None = None,
                   rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows that may be in the exact top k of the rows in scope: `rows` (gathered: the scan reads
        only their codes) or, when None, the rows of [0, n) where `mask` holds (all when None).

        The same set as `select(*bounds(...))` over the whole scope, for less work: a float32 pass
        (v = the approximate score) keeps the rows within a proven band of the k-th best v, and only
        those get the float64 bounds. The band: every row's interval half-width is at most S (from
        the column maxima), and float32 v is within E of the float64 approximation, so the k-th best
        lower bound is at least kth(v) - E - S and a row whose upper bound reaches it has
        v >= kth(v) - 2E - 2S. The rows setting that floor pass the same test, so the floor computed
        among the kept rows is the floor of the whole scope. A large cosine or dot scope reads the
        heads first (_prefix_pass) and the tails only of the rows that can still be in the top k.

        Each row comes with its upper bound (+inf when the scope held no more than k rows and no
        bounds were needed)."""
        q_head, q_tail, qs, qe, q_norm, q_tail_norm = self._query(q)
        gathered = rows is not None
        if gathered:
            mask = None
        scope = rows if gathered else slice(0, n)
        heads = self._scan(q_head, self.codes[scope])
        size = heads.size
        matches = size if mask is None else int(np.count_nonzero(mask))
        if matches <= k:
            every = rows if gathered else (np.arange(n) if mask is None else np.flatnonzero(mask))
            return every, np.full(every.size, np.inf)
        # Extremes over every row (and some removed ones): valid for any subset of them.
        band = q_norm * self.err_max + self.norm_max * (qe + ROUNDING)
        a_max = (q_norm + qe) * self.norm_max  # |q'.x'| <= |q'| |x'|
        sq_max = self.sq_max if self.metric == "l2" else 0.0
        q_sq = q_norm**2 if self.metric == "l2" else 0.0
        big = 2 * a_max + sq_max + q_sq + 4 * band
        safe = big < F32_SAFE and self.scale_min > 1e-30 and qs > 1e-30  # float32 stays normal and finite
        if safe and self.metric != "l2" and self.rotation is not None and size >= PREFIX_FROM:
            keep, dots = self._prefix_pass(q_tail, heads, scope, mask, k, qs, qe, q_norm, q_tail_norm, band, big)
        else:
            dots = heads + self._tails(q_tail, scope)
            keep = self._near_kth(dots, scope, mask, k, qs, q_sq, band, big) if safe else (
                np.arange(size) if mask is None else np.flatnonzero(mask))
            dots = dots[keep]
        at = rows[keep] if gathered else keep
        lower, upper = self._bounds_of(at, dots.astype(np.float64), qs, qe, q_norm)
        chosen = select(lower, upper, k, None)
        return at[chosen], upper[chosen]

    def _near_kth(self, dots: np.ndarray, scope: np.ndarray | slice, mask: np.ndarray | None, k: int,
                  qs: float, q_sq: float, band: float, big: float) -> np.ndarray:
        """Positions (in scope) whose float32 approximate score is within the proven band of the
        k-th best (see candidates)."""
        size = dots.size
        v = dots * self.scale[scope]  # a new array: dots stay the exact integers
        if v.dtype != np.float32:
            v = v.astype(np.float32)
        e = F32_SLACK * big + 1e-37
        if self.metric == "l2":  # in u = 2 q.x - |x|^2 (higher is better, as the score): half-width 2S
            v *= np.float32(2 * qs)
            v -= self.sq32[scope]
        else:
            v *= np.float32(qs)
        if mask is not None:
            v[~mask] = -np.inf
        kth = float(np.partition(v, size - k)[size - k])
        if self.metric == "l2":
            # The score is -sqrt(max(|q|^2 - u, 0)) times (1 + L2_REL) for lower bounds and
            # (1 - L2_REL) for upper ones: flat beyond u = |q|^2, and an upper bound reaches the
            # floor up to a factor ((1 + L2_REL) / (1 - L2_REL))^2 < 1 + 8 L2_REL of the floor's
            # squared distance, itself below `big`.
            threshold = min(kth - 2 * e - 4 * band - 8 * L2_REL * big, q_sq - 2 * e - 2 * band)
        else:
            threshold = kth - 2 * e - 2 * band
        return np.flatnonzero(v >= _down32(threshold))

    def _prefix_pass(self, q_tail: np.ndarray, heads: np.ndarray, scope: np.ndarray | slice,
                     mask: np.ndarray | None, k: int, qs: float, qe: float, q_norm: float,
                     q_tail_norm: float, band: float, big: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions (in scope) whose upper bound can reach the k-th best lower bound, and their
        integer dot products, reading the tails of those rows only (cosine and dot).

        From the heads, in float32, every row gets u = v + r + |q| e_x: v the heads' approximate
        product q'_H.x'_H, r = |q'_T| |x'_T| >= q'_T.x'_T, and e_x the row's own error term, all
        within E (as in candidates; r's and e_x's rounding inside F32_SLACK's headroom, `big` holding
        4 S). A row's float64 upper bound, approx + |q| e_x + |x'| (e_q + ROUNDING), is then at most
        u + E + T with T = max|x'| (e_q + ROUNDING). The PROBE + k rows of largest u are scored in
        full: the k-th best of their lower bounds, `floor`, is at most the scope's k-th best lower
        bound, and a row with u < floor - E - T has an upper bound below it, so select() would drop
        it. Every row that select() keeps, and each of those setting the scope's floor, passes: the
        result equals the full scan's."""
        size = heads.size
        v = heads * self.scale[scope]
        if v.dtype != np.float32:
            v = v.astype(np.float32)
        v *= np.float32(qs)
        u = v + self.tnorm[scope] * np.float32(q_tail_norm)
        u += self.err[scope] * _up32(np.array([q_norm]))[0]
        if mask is not None:
            u[~mask] = -np.inf
        probe = np.argpartition(u, size - min(size, k + PROBE))[size - min(size, k + PROBE) :]
        probe = probe[u[probe] > -np.inf]  # more than k rows match: at least k + 1 remain
        probe_rows = probe if not isinstance(scope, np.ndarray) else scope[probe]
        probe_dots = heads[probe] + self._tails(q_tail, probe_rows)
        lower, _ = self._bounds_of(probe_rows, probe_dots.astype(np.float64), qs, qe, q_norm)
        floor = float(np.partition(lower, lower.size - k)[lower.size - k])
        e = F32_SLACK * (big + 2 * q_tail_norm * self.tnorm_max) + 1e-37
        keep = np.flatnonzero(u >= _down32(floor - e - self.norm_max * (qe + ROUNDING)))
        if keep.size > TAIL_GATHER_FRACTION * size:
            return keep, (heads + self._tails(q_tail, scope))[keep]
        return keep, heads[keep] + self._tails(q_tail, keep if not isinstance(scope, np.ndarray) else scope[keep])

    def _bounds_of(self, at: np.ndarray | slice, dots: np.ndarray, qs: float, qe: float,
                   q_norm: float) -> tuple[np.ndarray, np.ndarray]:
        """float64 bounds of the exact scores of rows `at`, from their integer dot products."""
        # The float32 columns widened first: with a Python float, numpy would compute in float32.
        approx = dots * qs
        approx *= self.scale[at].astype(np.float64)
        slack = self.err[at].astype(np.float64) * q_norm
        slack += self.norm[at].astype(np.float64) * (qe + ROUNDING)
        if self.metric != "l2":
            return approx - slack, approx + slack
        # |q - x|^2 = |q|^2 - 2 q.x + |x|^2, with q.x inside approx +- slack.
        base = q_norm**2 + self.sq[at] - 2.0 * approx
        lower = np.sqrt(np.maximum(base + 2.0 * slack, 0.0)) * -(1 + L2_REL)
        upper = np.sqrt(np.maximum(base - 2.0 * slack, 0.0)) * -(1 - L2_REL)
        return lower, upper

    def bounds(self, q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the exact higher-is-better score of rows [0, n), all in float64
        (the reference that candidates() must agree with)."""
        q_head, q_tail, qs, qe, q_norm, _ = self._query(q)
        # Integer dot products of int8 codes: exact, one pass over n * dim bytes.
        dots = (self._scan(q_head, self.codes[:n]) + self._tails(q_tail, slice(0, n))).astype(np.float64)
        return self._bounds_of(slice(0, n), dots, qs, qe, q_norm)


def _down32(threshold: float) -> np.float32:
    """A float32 no larger than threshold (for a float32 comparison that must keep every row at or
    above it)."""
    limit = np.float32(threshold)
    return np.nextafter(limit, np.float32(-np.inf)) if float(limit) > threshold else limit


def tail_norms(tail: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Upper bounds, float32, of the tails' reconstructed norms |s c_T| (zero without tails)."""
    if tail.shape[1] == 0:
        return np.zeros(len(tail), dtype=np.float32)
    t = tail.astype(np.float64)
    return _up32(np.sqrt(np.einsum("ij,ij->i", t, t)) * scale.astype(np.float64) * (1 + ROUNDING))


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """This process's scan threads, made on first use (a pool made before gunicorn forks would have
    no threads in the workers)."""
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(pid)
            if pool is None:
                pool = _pools[pid] = ThreadPoolExecutor(max(1, SCAN_PARTS - 1), thread_name_prefix="int8-scan")
    return pool


def stored_columns(metric: str) -> tuple[str, ...]:
    """The int8 copy's columns a checkpoint keeps for an index of this metric (the rotation too)."""
    common = ("codes", "tail", "scale", "err", "norm", "tnorm", "rotation")
    return (*common, "sq") if metric == "l2" else common


def select(lower: np.ndarray, upper: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    """Rows that may be in the exact top k: upper bound at least the k-th best lower bound."""
    if mask is not None:
        lower = np.where(mask, lower, -np.inf)
        upper = np.where(mask, upper, -np.inf)
    size = lower.size
    floor = np.partition(lower, size - k)[size - k] if k < size else -np.inf
    return np.flatnonzero(upper >= floor)
