"""gunicorn settings: `gunicorn -c memcloud/gunicorn.conf.py memcloud.wsgi` (command-line flags override)."""

import os
import shutil
import tempfile

# Set before anything imports prometheus_client, so every worker writes its own metric files
# and /metrics sums them, whichever worker answers the scrape. A folder made here (none was
# given) is removed when the server exits; a given one is the operator's.
_MADE_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="memcloud-prom-"))
# One BLAS thread per worker: with one worker per core, more threads only fight (docs/design.md).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 20
keepalive = 5
max_requests = 0  # caches are warm: never recycle workers without a reason
accesslog = None  # the app logs one structured line per request
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
wsgi_app = "memcloud.wsgi:application"
# Several servers may run on one host (tests, replicas): no shared control socket in $HOME.
control_socket_disable = True


def on_starting(server):
    from memcloud import gunicorn_errors

    gunicorn_errors.install()  # gunicorn's own 400/414/431 answers in JSON, not HTML
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def on_exit(server):
    # Not while a master re-executed by USR2 (which inherits the folder) still runs.
    if _MADE_METRICS_DIR and server.reexec_pid == 0:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    # glibc raises its mmap threshold whenever a mapped block is freed, so after the first large
    # temporary every later one comes from the heap, where freed memory stays resident between
    # live blocks. A fixed threshold keeps large blocks mapped and returned on free (measured: a
    # 100k-episode build from PostgreSQL left 3 MB less heap behind). M_MMAP_THRESHOLD is -3.
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)


def post_worker_init(worker):
    from memcloud import warmup

    warmup.warm()  # the first request's one-off costs, paid before the worker accepts it
