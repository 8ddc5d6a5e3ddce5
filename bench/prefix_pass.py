"""Would a first pass over a prefix of rotated int8 codes pay? `python -m bench.prefix_pass [--n 100000]`
(`make bench-limits`). Measured; built once and taken out again for its memory (bench/NOTES.md).

The full scan reads every row's dim int8 codes and is bound by memory bandwidth (bench/batching.py).
A pass reading fewer bytes must still be certified. Rotate every row and query by one orthonormal
R (the principal axes of the first 1024 rows, largest first, as a build would see them), split
each rotated vector into its first m coordinates P and the rest S. Then

    q'.x' = q'_P.x'_P + q'_S.x'_S  with  |q'_S.x'_S| <= |q'_S| |x'_S|

so a scan of the m prefix codes alone gives each row an upper bound of its exact score (adding the
quantisation slack of quantized.py). A row can be skipped only when that bound is below the k-th
best exact score: this measures how many rows it cannot skip (with the best possible floor, the
exact one; a floor from a few rows scored in full leaves somewhat more), and what scanning m codes
a row costs against all dim of them (one thread, rows read from memory). Data and queries:
bench/data.py. Results: bench/results/prefix_pass.md.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads its BLAS: one thread, as in a worker

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import simsimd  # noqa: E402

from bench.batching import timed_ms  # noqa: E402
from bench.data import make_dataset, make_queries  # noqa: E402
from memindex.quantized import ROUNDING, quantize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "prefix_pass.md"
TOP_KS = (5, 50)
SAMPLE_ROWS = 1024  # rows the rotation is computed from


def rotation(rows: np.ndarray) -> np.ndarray:
    """Columns: the principal axes of the rows' second moment, largest first (rows of unit norm)."""
    sample = rows[:SAMPLE_ROWS].astype(np.float64)
    _, vectors = np.linalg.eigh(sample.T @ sample)
    return np.ascontiguousarray(vectors[:, ::-1])


def tail_norms(tail: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Upper bounds of the tails' reconstructed norms |s c_T|."""
    return np.linalg.norm(tail.astype(np.float64), axis=1) * scale.astype(np.float64) * (1 + ROUNDING)


def quantized(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """quantize() of float64 rows, in chunks (it makes float64 temporaries of its input)."""
    parts = [quantize(rows[a : a + 8192]) for a in range(0, len(rows), 8192)]
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def survivors(n: int, dim: int, prefixes: tuple[int, ...], queries: int) -> dict:
    """Per prefix width m and k: the shares of rows whose certified prefix bound reaches the k-th
    best exact score (median and 90th percentile over the queries)."""
    ds = make_dataset(n, dim=dim)
    qs = make_queries(queries, dim=dim).astype(np.float64)
    rows64 = ds.embeddings.astype(np.float64)
    rot = rotation(ds.embeddings)
    codes, scale, err, norm, _ = quantized(rows64 @ rot)
    exact = rows64 @ qs.T  # (n, queries)
    del rows64
    codes64 = codes.astype(np.float64)
    out: dict = {}
    for m in prefixes:
        prefix = codes64[:, :m]
        suffix_norm = tail_norms(codes[:, m:], scale)
        shares: dict[int, list[float]] = {k: [] for k in TOP_KS}
        for j in range(queries):
            q_codes, q_scale, q_err, _, _ = quantize((qs[j] @ rot)[None, :])
            q_c = q_codes[0].astype(np.float64)
            q_s, q_e = float(q_scale[0]), float(q_err[0])
            q_norm = float(np.linalg.norm(qs[j])) * (1 + ROUNDING)
            q_suffix = float(tail_norms(q_codes[:, m:], q_scale)[0])
            slack = err * q_norm + norm * (q_e + ROUNDING)
            upper = (prefix @ q_c[:m]) * q_s * scale + q_suffix * suffix_norm + slack
            for k in TOP_KS:
                tau = np.partition(exact[:, j], n - k)[n - k]
                shares[k].append(float(np.count_nonzero(upper >= tau)) / n)
        out[m] = {k: (float(np.median(v)), float(np.percentile(v, 90))) for k, v in shares.items()}
    return out


def scan_times(n: int, dim: int, prefixes: tuple[int, ...], reps: int) -> dict:
    """ms of one int8 scan (simsimd, one thread) over n rows of m codes, rows read from memory."""
    rng = np.random.default_rng(0)
    evict = np.zeros(64 << 20, np.uint8)
    out = {}
    for width in (*prefixes, dim):
        codes = rng.integers(-127, 128, (n, width), dtype=np.int8)
        q = rng.integers(-127, 128, (1, width), dtype=np.int8)
        dots = np.empty((1, n), np.float32)
        out[width] = timed_ms(lambda codes=codes, q=q, dots=dots: simsimd.cdist(
            q, codes, metric="dot", out=dots, out_dtype="float32"), reps, evict)
    return out


def report(result: dict, command: str, n: int, dim: int) -> str:
    from bench.run import provenance

    full = result["scan"][dim]
    lines = [
        "# Heads first: the rows a certified pass over rotated prefix codes leaves, and its cost",
        "",
        "Generated by `bench/prefix_pass.py`; do not edit by hand. "
        f"N = {n:,} rows of bench/data.py, dim {dim}, {result['queries']} queries; survivors are the rows "
        "whose prefix bound reaches the k-th best exact score (median / 90th percentile over the queries; "
        "a floor from a few rows scored in full leaves somewhat more); "
        "scans are one thread, rows from memory, median ms.",
        "",
        *provenance(command, f"numpy {np.__version__}, simsimd {simsimd.__version__}"),
        "",
        "| prefix m | codes a row scanned | survivors, top 5 | survivors, top 50 | prefix scan ms | "
        "share of the full scan |",
        "|---|---|---|---|---|---|",
    ]
    for width, by_k in result["survivors"].items():
        cells = [f"{100 * med:.2f} % / {100 * p90:.2f} %" for med, p90 in (by_k[k] for k in TOP_KS)]
        scan = result["scan"][width]
        lines.append(f"| {width} | {width} of {dim} | {' | '.join(cells)} | {scan:.3f} | {scan / full:.2f} |")
    lines += ["", f"The full scan of all {dim} codes a row: {full:.3f} ms.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prefix_pass")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    prefixes = tuple(w for w in (args.dim // 6, args.dim // 4, args.dim // 3, args.dim // 2) if w > 0)
    result = {"queries": args.queries, "survivors": survivors(args.n, args.dim, prefixes, args.queries),
              "scan": scan_times(args.n, args.dim, prefixes, args.reps)}
    text = report(result, " ".join(["python -m bench.prefix_pass", *sys.argv[1:]]), args.n, args.dim)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
