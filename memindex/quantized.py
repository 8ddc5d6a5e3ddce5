"""An int8 copy of a tenant's rows, scanned with simsimd's SIMD int8 dot products, and the bounds
that let the search use it without giving up exactness.

A float32 scan reads 4 bytes per dimension per row and is bound by memory bandwidth (docs/design.md);
the int8 copy reads one. Each row x is stored as s * c (c int8, s = max|x| / 127) with its
reconstruction error e = |x - s c|, and the query likewise as q' with error e_q. Then

    |q.x - q'.x'| <= |q| e + |x'| e_q

so every row gets an interval [lower, upper] that holds its exact score. The k-th best lower bound
is a floor for the k-th best exact score, and only rows whose upper bound reaches that floor can be
in the exact top k: those, usually a handful, are scored exactly.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simsimd

from . import scratch

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
# The first cut of candidates() takes its k-th best from this many slices of the scope's scores.
SAMPLE_SLICES = 8
F32_SAFE = 1e30  # magnitudes beyond this (or near float32 underflow) take the float64 path only


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



def _none_references_taken() -> int:
    """References to None that one `cdist(..., out=...)` call takes without owning them: simsimd
    6.5 returns None from it with no reference of its own, so each call lowers None's count by one,
    and on Python 3.11 (None is not immortal) a worker aborts ("none_dealloc") after some tens of
    thousands of scans. Measured once here rather than assumed, so a fixed simsimd (or an
    interpreter with an immortal None) needs nothing given back."""
    q = np.zeros((1, 8), dtype=np.int8)
    out = np.empty((1, 1), dtype=np.float32)
    calls = 64
    before = sys.getrefcount(None)
    for _ in range(calls):
        simsimd.cdist(q, q, metric="dot", out=out, out_dtype="float32")
    return max(0, round((before - sys.getrefcount(None)) / calls))


_NONE_TAKEN = _none_references_taken()
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


def _give_back_none() -> None:
    """Returns what one scan took from None's reference count (see _none_references_taken)."""
    for _ in range(_NONE_TAKEN):
        _incref(None)

class QuantizedColumns:
    """Row i here is row i of the TenantIndex (same capacity growth and move-last-into-hole).

    Squared norms only serve l2, so other metrics keep none."""

    DTYPES = {"codes": np.int8, "scale": np.float32, "err": np.float32, "norm": np.float32, "sq": np.float64,
              "sq32": np.float32}

    def __init__(self, dim: int, capacity: int, metric: str) -> None:
        self.dim = dim
        self.metric = metric
        self.stored = stored_columns(metric)  # what a checkpoint keeps
        self.derived = ("sq32",) if metric == "l2" else ()  # float32 copy for the pre-selection
        for name in (*self.stored, *self.derived):
            shape = (capacity, dim) if name == "codes" else (capacity,)
            setattr(self, name, np.zeros(shape, dtype=self.DTYPES[name]))
        # Extremes of every row ever set: a removal leaves them as bounds, still valid (looser).
        self.err_max = self.norm_max = self.sq_max = 0.0
        self.scale_min = np.inf

    def _extend_extremes(self, a: int, b: int) -> None:
        if b > a:
            self.err_max = max(self.err_max, float(self.err[a:b].max()))
            self.norm_max = max(self.norm_max, float(self.norm[a:b].max()))
            if self.metric == "l2":
                self.sq_max = max(self.sq_max, float(self.sq[a:b].max()))
            self.scale_min = min(self.scale_min, float(self.scale[a:b].min()))

    def derive(self, n: int) -> None:
        """The float32 copies and extremes of rows [0, n) (after adopting stored columns)."""
        if self.metric == "l2":
            self.sq32 = self.sq[:n].astype(np.float32)
        self._extend_extremes(0, n)

    def grow(self, capacity: int, n: int) -> None:
        for name in (*self.stored, *self.derived):
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), dtype=old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)

    def set_rows(self, start: int, rows: np.ndarray) -> None:
        # In chunks: quantize() works in float64, eight times the int8 size of what it converts.
        for offset in range(0, len(rows), QUANTIZE_CHUNK):
            part = rows[offset : offset + QUANTIZE_CHUNK]
            a, b = start + offset, start + offset + len(part)
            self.codes[a:b], self.scale[a:b], self.err[a:b], self.norm[a:b], sq = quantize(part)
            if self.metric == "l2":
                self.sq[a:b] = sq
                self.sq32[a:b] = sq
            self._extend_extremes(a, b)

    def move(self, src: int, dst: int) -> None:
        for name in (*self.stored, *self.derived):
            column = getattr(self, name)
            column[dst] = column[src]

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in (*self.stored, *self.derived))

    def _scan(self, q_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Integer dot products of the query's codes with `codes`, exact (float32 when it holds them),
        in this thread's scratch buffer (valid until its next scan)."""
        size = len(codes)
        out = scratch.buffer("dots", size, np.float32 if self.dim <= EXACT_F32_DIM else np.float64)[None, :]
        if not size:
            return out[0]
        kind = "float32" if out.dtype == np.float32 else "float64"  # dtype.name runs numpy Python code

        def scan(a: int, b: int) -> None:
            simsimd.cdist(q_codes, codes[a:b], metric="dot", out=out[:, a:b], out_dtype=kind)
            _give_back_none()

        parts = SCAN_PARTS if size >= SCAN_SPLIT_FROM else 1
        cuts = [size * i // parts for i in range(parts + 1)]
        others = [_pool().submit(scan, cuts[i], cuts[i + 1]) for i in range(1, parts)]
        scan(cuts[0], cuts[1])  # the first part on this thread
        for other in others:
            other.result()
        return out[0]

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
        among the kept rows is the floor of the whole scope.

        Each row comes with its upper bound (+inf when the scope held no more than k rows and no
        bounds were needed).

        Not split: the band, the float32 pass and the cut share a dozen derived quantities (norms,
        maxima, slack) whose proof reads as one argument; pieces would pass them all around."""
        q_codes, q_scale, q_err, _, _ = quantize(q[None, :])
        qs, qe = float(q_scale[0]), float(q_err[0])
        gathered = rows is not None
        if gathered:
            mask = None
        scope = rows if gathered else slice(0, n)
        dots = self._scan(q_codes, self.codes[scope])
        size = dots.size
        matches = size if mask is None else int(np.count_nonzero(mask))
        if matches <= k:
            every = rows if gathered else (np.arange(n) if mask is None else np.flatnonzero(mask))
            return every, np.full(every.size, np.inf)
        q_norm = float(np.linalg.norm(q.astype(np.float64))) * (1 + ROUNDING)
        # Extremes over every row (and some removed ones): valid for any subset of them.
        band = q_norm * self.err_max + self.norm_max * (qe + ROUNDING)
        a_max = (q_norm + qe) * self.norm_max  # |q'.x'| <= |q'| |x'|
        sq_max = self.sq_max if self.metric == "l2" else 0.0
        q_sq = q_norm**2 if self.metric == "l2" else 0.0
        big = 2 * a_max + sq_max + q_sq + 4 * band
        if big < F32_SAFE and self.scale_min > 1e-30 and qs > 1e-30:  # float32 stays normal and finite
            v = scratch.buffer("approx", size, np.float32)  # dots stay the exact integers
            if dots.dtype == np.float32:
                np.multiply(dots, self.scale[scope], out=v)
            else:
                v[:] = dots * self.scale[scope]
            e = F32_SLACK * big + 1e-37
            if self.metric == "l2":  # in u = 2 q.x - |x|^2 (higher is better, as the score): half-width 2S
                v *= np.float32(2 * qs)
                v -= self.sq32[scope]
            else:
                v *= np.float32(qs)

            def limit(kth: float) -> np.float32:
                """The float32 v a row needs to stay, for a k-th best v of at least kth."""
                if self.metric == "l2":
                    # The score is -sqrt(max(|q|^2 - u, 0)) times (1 + L2_REL) for lower bounds and
                    # (1 - L2_REL) for upper ones: flat beyond u = |q|^2, and an upper bound reaches
                    # the floor up to a factor ((1 + L2_REL) / (1 - L2_REL))^2 < 1 + 8 L2_REL of the
                    # floor's squared distance, itself below `big`.
                    threshold = min(kth - 2 * e - 4 * band - 8 * L2_REL * big, q_sq - 2 * e - 2 * band)
                else:
                    threshold = kth - 2 * e - 2 * band
                at_most = np.float32(threshold)
                if float(at_most) > threshold:  # float32 comparison: round the threshold down
                    at_most = np.nextafter(at_most, np.float32(-np.inf))
                return at_most

            # A first cut from a sample's k-th best v, never above the scope's: it keeps a superset
            # of the band (a few hundred rows), among which the scope's own k-th best v is found.
            # The mask is applied to the sample and to the cut's rows only: a masked copy of all
            # of v (np.copyto with where=) cost 4.2 ms a query at 1M rows.
            keep = np.flatnonzero(np.greater_equal(v, limit(_kth_at_most(v, k, mask)),
                                                   out=scratch.buffer("flags", size, np.bool_)))
            if mask is not None:
                keep = keep[mask[keep]]
            kept = v[keep]
            keep = keep[kept >= limit(float(np.partition(kept, kept.size - k)[kept.size - k]))]
        else:
            keep = np.arange(size) if mask is None else np.flatnonzero(mask)
        at = rows[keep] if gathered else keep
        lower, upper = self._bounds_of(at, dots[keep].astype(np.float64), qs, qe, q_norm)
        chosen = select(lower, upper, k, None)
        return at[chosen], upper[chosen]

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
        q_codes, q_scale, q_err, _, _ = quantize(q[None, :])
        # Integer dot products of int8 codes: exact, one pass over n * dim bytes.
        dots = self._scan(q_codes, self.codes[:n]).astype(np.float64)
        q_norm = float(np.linalg.norm(q.astype(np.float64))) * (1 + ROUNDING)
        return self._bounds_of(slice(0, n), dots, float(q_scale[0]), float(q_err[0]), q_norm)


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
    """The int8 copy's columns a checkpoint keeps for an index of this metric."""
    return ("codes", "scale", "err", "norm", "sq") if metric == "l2" else ("codes", "scale", "err", "norm")


def _kth_at_most(v: np.ndarray, k: int, mask: np.ndarray | None) -> float:
    """A value at most the k-th largest of v where `mask` holds (everywhere when None; it holds at
    least k times): the k-th largest of SAMPLE_SLICES evenly spaced slices, a sixteenth of v in
    all, or of all of v when that sample would be small or holds fewer than k matching values.

    Why: partitioning all of v cost ~1 ms a query at 1M rows, the sample ~0.05 ms; its k-th best
    sits a little lower, so the first cut keeps a few hundred rows instead of a few dozen."""
    size = v.size
    part = size // (SAMPLE_SLICES * 16)
    if part * SAMPLE_SLICES >= 64 * k:
        sample = scratch.buffer("kth", part * SAMPLE_SLICES, np.float32)
        step = size // SAMPLE_SLICES
        for i in range(SAMPLE_SLICES):
            piece, rows = sample[i * part : (i + 1) * part], slice(i * step, i * step + part)
            piece[:] = v[rows]
            if mask is not None:
                piece[~mask[rows]] = -np.inf
        sample.partition(sample.size - k)
        if sample[sample.size - k] > -np.inf:
            return float(sample[sample.size - k])
    if mask is not None:
        matched = v[mask]
    else:
        matched = scratch.buffer("kth", size, np.float32)
        matched[:] = v
    matched.partition(matched.size - k)
    return float(matched[matched.size - k])


def select(lower: np.ndarray, upper: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    """Rows that may be in the exact top k: upper bound at least the k-th best lower bound."""
    if mask is not None:
        lower = np.where(mask, lower, -np.inf)
        upper = np.where(mask, upper, -np.inf)
    size = lower.size
    floor = np.partition(lower, size - k)[size - k] if k < size else -np.inf
    return np.flatnonzero(upper >= floor)
