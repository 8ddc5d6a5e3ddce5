"""Ingest as a user does it: through the SDK (`MemcloudClient.store_batch`, end to end, the
client's encoding on the clock), and the server's own rate on pre-encoded binary bodies (base64
float32 embeddings, docs/api.md §3) sent by as many connections as the server has workers.

`python -m bench.ingest --n 100000` runs both against a fresh deployment (PostgreSQL when
DATABASE_URL names one) and prints the figures; bench/run.py calls the same functions."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from .data import Dataset, make_dataset, slice_dataset
from .http import Api

ROOT = Path(__file__).resolve().parents[1]


def use_checkout_sdk() -> None:
    """Import the SDK of this checkout, whatever copy the environment has installed."""
    sdk = str(ROOT / "clients" / "python" / "src")
    if sdk not in sys.path:
        sys.path.insert(0, sdk)


def binary_episode(ds: Dataset, i: int) -> dict:
    body = ds.episode(i)
    body["state_embedding"] = base64.b64encode(ds.embeddings[i].astype("<f4").tobytes()).decode()
    return body


def binary_bodies(ds: Dataset, size: int) -> Iterator[bytes]:
    for start in range(0, ds.n, size):
        yield orjson.dumps({"episodes": [binary_episode(ds, i) for i in range(start, min(ds.n, start + size))]})


def sdk_ingest(url: str, key: str, ds: Dataset, *, batch_size: int = 1000) -> dict:
    """Episodes/s of one MemcloudClient.store_batch call over ds: wall time, encoding included."""
    use_checkout_sdk()
    from memcloud_client import MemcloudClient

    episodes = [ds.episode(i) for i in range(ds.n)]  # what a user holds: dicts with numpy rows
    with MemcloudClient(url, key, timeout=300, batch_size=batch_size) as mc:
        began = time.perf_counter()
        ids = mc.store_batch(episodes)
        spent = time.perf_counter() - began
    assert len(ids) == ds.n
    return {"episodes": ds.n, "batch": batch_size, "seconds": round(spent, 3),
            "episodes_per_s": round(ds.n / spent, 1)}


def binary_ingest(url: str, key: str, ds: Dataset, *, batch_size: int = 1000, connections: int = 2) -> dict:
    """Episodes/s the server stores from pre-encoded binary bodies (encoded before the clock),
    `connections` senders at once (one per worker): wall time from the first send to the last answer."""
    bodies = list(binary_bodies(ds, batch_size))
    nxt = iter(range(len(bodies)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send() -> None:
        api = Api(url, key)
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            try:
                api.post("/v1/episodes/batch", bodies[i])
            except BaseException as exc:  # noqa: BLE001 - reported after the join
                errors.append(exc)
                return

    threads = [threading.Thread(target=send) for _ in range(connections)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = time.perf_counter() - began
    if errors:
        raise errors[0]
    return {"episodes": ds.n, "batch": batch_size, "connections": connections, "seconds": round(spent, 3),
            "body_mib": round(sum(map(len, bodies)) / 2**20, 1), "episodes_per_s": round(ds.n / spent, 1)}


def bench_ingest(dep, ds: Dataset, *, workers: int) -> list[dict]:
    """Both ingest figures at ds.n on a fresh server of `workers` workers (the README's command),
    each into a tenant of its own: the SDK end to end, then pre-encoded binary bodies."""
    srv = dep.server(workers)
    try:
        sdk_key = dep.create_tenant(f"ingest-sdk-{ds.n}", ds.dim)
        bin_key = dep.create_tenant(f"ingest-bin-{ds.n}", ds.dim)
        sdk = sdk_ingest(srv.url, sdk_key, ds)
        loadavg_sdk = round(os.getloadavg()[0], 2)
        binary = binary_ingest(srv.url, bin_key, ds, connections=workers)
        return [{"system": "sdk", "op": "ingest", "n": ds.n, "workers": workers, "loadavg_1m": loadavg_sdk, **sdk},
                {"system": "http-binary", "op": "ingest", "n": ds.n, "workers": workers,
                 "loadavg_1m": round(os.getloadavg()[0], 2), **binary}]
    finally:
        srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    from .deploy import Deployment

    ds = make_dataset(2 * args.n)
    dep = Deployment()
    try:
        srv = dep.server(args.workers)
        sdk_key, bin_key = dep.create_tenant("ingest-sdk", ds.dim), dep.create_tenant("ingest-bin", ds.dim)
        out = {"database": dep.database, "load_average": os.getloadavg(),
               "sdk": sdk_ingest(srv.url, sdk_key, slice_dataset(ds, 0, args.n), batch_size=args.batch),
               "binary": binary_ingest(srv.url, bin_key, slice_dataset(ds, args.n, 2 * args.n),
                                       batch_size=args.batch, connections=args.workers)}
        print(json.dumps(out, indent=1))
    finally:
        dep.close()


if __name__ == "__main__":
    main()
