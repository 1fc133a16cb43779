"""gunicorn settings for several workers with Prometheus metrics.

    PROMETHEUS_MULTIPROC_DIR=/tmp/fastapi-tasks-metrics \\
        gunicorn -c docs_src/metrics/gunicorn_conf.py docs_src.metrics.app:app

Needs the uvicorn-worker package. Empty the directory before every start (see ``on_starting``).
"""

import os
import shutil
from typing import Any

from prometheus_client import multiprocess

worker_class = "uvicorn_worker.UvicornWorker"
workers = 4
bind = "127.0.0.1:8000"


def on_starting(server: Any) -> None:
    """Before the first worker: start from an empty metrics directory."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (stopped, crashed or killed): drop its live gauges, or its last
    ``fastapi_tasks_running`` / ``fastapi_tasks_pending`` values stay in the sum forever."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
