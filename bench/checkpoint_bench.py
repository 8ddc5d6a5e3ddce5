"""Checkpoint and snapshot benchmark (not a test).

For one tenant of N episodes (default 100k at dim 384) on PostgreSQL it measures:
  * snapshot load and save rates (episodes/s), through the real services;
  * a fresh worker's first query: a new process with an empty index cache answers one query,
    from the tenant's checkpoint (+ catch-up on changes made after it) vs from the database alone.
Each first-query run is a separate Python process (Django set up and connected before the clock
starts, so both sides pay the same fixed costs). The page cache is warm for both: the database's
pages and the checkpoint files were just written or read.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python bench/checkpoint_bench.py

A throw-away database is created on that server and dropped afterwards. Results: JSON on stdout
and in bench/results/checkpoint.json (see bench/CHECKPOINT.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/checkpoint_bench.py`, its own folder would come first on the path and
# bench/http.py would shadow the standard library's http: the project root takes its place.
sys.path[0] = str(ROOT)
SLUG = "bench-ckpt"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memcloud.settings")
    import django

    django.setup()


# ----- data -----
def write_seed_snapshot(path: Path, n: int, dim: int, seed: int = 1) -> None:
    """A snapshot file of n clustered episodes (the fastest way in: it goes through snapshot_load)."""
    import numpy as np
    import orjson

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(orjson.dumps({"format": "memcloud-snapshot", "version": 1, "tenant": SLUG, "dim": dim,
                               "episodes": n, "created": "2026-01-01T00:00:00Z"}) + b"\n")
        for start in range(0, n, 5000):
            m = min(5000, n - start)
            labels = rng.integers(0, len(centers), size=m)
            emb = (centers[labels] + 0.35 * rng.normal(size=(m, dim))).astype(np.float32)
            rewards = rng.normal(size=m)
            for i in range(m):
                fh.write(orjson.dumps({
                    "id": str(uuid.uuid4()), "task_id": f"task_{labels[i]}", "state_embedding": emb[i].tolist(),
                    "reward": float(rewards[i]), "metadata": {"n": start + i}, "timestamp": 1_700_000_000_000 + start + i,
                    "tags": [f"tag{labels[i] % 20}", f"kind{i % 3}"], "source": f"agent-{labels[i] % 4}",
                    "user_id": None, "steps": None, "expires_at": None,
                }) + b"\n")


# ----- child: one fresh worker, one first query -----
def child(mode: str, dim: int) -> None:
    setup_django()
    import numpy as np

    from episodes.cache import cache
    from episodes.selectors import episodes_query
    from memindex.columns import Filters
    from tenants.models import Tenant, TenantState

    if mode == "checkpoint-copied":  # read every column into memory instead of mapping the large ones
        from episodes import checkpoint

        checkpoint.MAPPED = ()
    tenant = Tenant.objects.get(slug=SLUG)  # connects: the clock starts after Django's fixed costs
    rng = np.random.default_rng(99)
    query = rng.normal(size=dim).astype(np.float32)
    t0 = time.perf_counter()
    state = TenantState.objects.get(tenant=tenant)  # what authentication reads with the key
    cached = cache.current(tenant, state)
    t1 = time.perf_counter()
    hits = episodes_query(tenant=tenant, state=state, query_embedding=query, top_k=10, filters=Filters())
    t2 = time.perf_counter()
    later = []  # steady state: does a mapped index answer as fast as one built in memory?
    for _ in range(30):
        q = rng.normal(size=dim).astype(np.float32)
        t = time.perf_counter()
        episodes_query(tenant=tenant, state=state, query_embedding=q, top_k=10, filters=Filters())
        later.append(time.perf_counter() - t)
    print(json.dumps({"mode": mode, "first_query_s": t2 - t0, "index_ready_s": t1 - t0, "search_s": t2 - t1,
                      "later_query_median_s": statistics.median(later), "episodes": len(cached.index),
                      "ids": [h["id"] for h in hits]}))


def run_child(mode: str, dim: int, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--dim", str(dim)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["log"] = [line for line in done.stderr.splitlines() if "memcloud.cache" in line]
    return out


# ----- parent -----
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--changes", type=int, default=200, help="stores and deletes after the checkpoint")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "checkpoint.json"))
    parser.add_argument("--child")
    args = parser.parse_args()
    # One BLAS thread, as in each gunicorn worker (memcloud/gunicorn.conf.py).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if args.child:
        child(args.child, args.dim)
        return

    from tests.support.database import drop_database, fresh_database_env, is_postgres

    os.environ["DATABASE_URL"] = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    if not is_postgres():
        sys.exit("DATABASE_URL must point at PostgreSQL")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still drop the database
    work = Path(tempfile.mkdtemp(prefix="memcloud-ckpt-bench-"))
    database = fresh_database_env("ckpt_bench")
    os.environ.update({**database, "AGENT_MEM_DATA_DIR": str(work / "data"), "LOG_LEVEL": "WARNING"})
    try:
        result = measure(args, work)
    finally:
        drop_database(database)
        shutil.rmtree(work, ignore_errors=True)
    result["command"] = "make bench-checkpoint  # = python bench/checkpoint_bench.py " + " ".join(sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


def measure(args, work: Path) -> dict:
    setup_django()
    import numpy as np
    from django.core.management import call_command

    from bench.run import machine
    from episodes import snapshot_services
    from episodes.models import Episode
    from episodes.services import episode_delete, episodes_store
    from tenants.services import tenant_create

    call_command("migrate", "--noinput", verbosity=0)
    tenant = tenant_create(slug=SLUG, dim=args.dim)
    n = args.episodes
    seed_path = work / "data" / SLUG / "snapshots" / "seed"
    write_seed_snapshot(seed_path, n, args.dim)

    t = time.perf_counter()
    snapshot_services.snapshot_load(tenant=tenant, name="seed")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    snapshot_services.snapshot_save(tenant=tenant, name="copy")
    save_s = time.perf_counter() - t
    snapshot_bytes = (seed_path.parent / "copy").stat().st_size

    t = time.perf_counter()
    snapshot_services.tenant_checkpoint(tenant=tenant)  # builds this process's index, then writes it
    checkpoint_s = time.perf_counter() - t
    ckpt_dir = work / "data" / SLUG / "checkpoint"
    ckpt_bytes = sum(p.stat().st_size for p in ckpt_dir.rglob("*") if p.is_file())

    # Changes after the checkpoint, which a worker starting from it must catch up on.
    rng = np.random.default_rng(5)
    episodes_store(tenant=tenant, episodes=[
        {"task_id": "late", "state_embedding": rng.normal(size=args.dim).astype(np.float32), "reward": 1.0,
         "tags": ["late"]} for _ in range(args.changes)])
    doomed = list(Episode.objects.filter(tenant=tenant).order_by("seq").values_list("id", flat=True)[: args.changes])
    for eid in doomed:
        episode_delete(tenant=tenant, episode_id=eid)

    env_ckpt = {**os.environ, "LOG_LEVEL": "INFO"}  # the cache says where the index came from
    env_db = {**env_ckpt, "AGENT_MEM_DATA_DIR": str(work / "empty")}
    runs = []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all sides alike
        runs.append(run_child("checkpoint", args.dim, env_ckpt))
        runs.append(run_child("checkpoint-copied", args.dim, env_ckpt))
        runs.append(run_child("database", args.dim, env_db))
    ckpt = [r for r in runs if r["mode"] == "checkpoint"]
    copied = [r for r in runs if r["mode"] == "checkpoint-copied"]
    db = [r for r in runs if r["mode"] == "database"]
    assert all(r["ids"] == db[0]["ids"] for r in runs), "checkpoint and database answers differ"
    assert all("loaded from checkpoint" in " ".join(r["log"]) for r in ckpt + copied), ckpt[0]["log"]

    def med(rs: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rs), 4)

    return {
        "episodes": n, "dim": args.dim, "changes_after_checkpoint": {"stored": args.changes, "deleted": args.changes},
        "snapshot_load_episodes_per_s": round(n / load_s), "snapshot_load_s": round(load_s, 2),
        "snapshot_save_episodes_per_s": round(n / save_s), "snapshot_save_s": round(save_s, 2),
        "snapshot_bytes": snapshot_bytes,
        "checkpoint_write_s": round(checkpoint_s, 2), "checkpoint_bytes": ckpt_bytes,
        "first_query_from_checkpoint_s": med(ckpt, "first_query_s"),
        "first_query_from_database_s": med(db, "first_query_s"),
        "speedup": round(med(db, "first_query_s") / med(ckpt, "first_query_s"), 1),
        "index_ready_from_checkpoint_s": med(ckpt, "index_ready_s"),
        "index_ready_from_database_s": med(db, "index_ready_s"),
        "first_query_from_checkpoint_read_not_mapped_s": med(copied, "first_query_s"),
        "later_query_median_s": {"checkpoint_mapped": med(ckpt, "later_query_median_s"),
                                 "checkpoint_read": med(copied, "later_query_median_s"),
                                 "database": med(db, "later_query_median_s")},
        "repeats": args.repeats,
        "machine": {**machine(), "load_average_at_end": os.getloadavg()},
        "runs": [{k: v for k, v in r.items() if k not in ("ids", "log")} for r in runs],
    }


if __name__ == "__main__":
    main()
