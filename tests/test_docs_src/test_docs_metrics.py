"""docs/metrics.md: the instrumented app, and the multi-worker start script."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
async def test_the_instrumented_app_serves_metrics(load_example, serve) -> None:
    example = load_example("docs_src.metrics.app")
    metrics = get_tasks(example.app)._runtime.observer
    try:
        async with serve(example.app) as client:
            await client.post("/images/1")
            await client.post("/images/2")
            await wait_for_tasks(example.app)
            response = await client.get("/metrics")
            assert response.status_code == 200  # served by the route: no 307 redirect
            text = response.text
    finally:  # the example registers in the global registry: leave it as we found it
        for name in (
            "scheduled_total",
            "finished_total",
            "refused_total",
            "abandoned_total",
            "enqueued_total",
            "enqueue_failed_total",
        ):
            REGISTRY.unregister(getattr(metrics, name))
        for name in ("pending", "running", "duration"):
            REGISTRY.unregister(getattr(metrics, name))
    assert "fastapi_tasks_scheduled_total 2.0" in text
    assert 'fastapi_tasks_task_duration_seconds_count{outcome="succeeded",task="resize"} 2.0' in (
        text
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_worker_script_is_valid_shell_and_names_a_real_app() -> None:
    script = ROOT / "docs_src" / "metrics" / "run_workers.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert "docs_src.metrics.app:app" in script.read_text()
    assert (ROOT / "docs_src" / "metrics" / "app.py").is_file()


def test_the_gunicorn_config_drops_a_dead_workers_gauges(tmp_path: Path) -> None:
    """A worker that died with 3 tasks running leaves running=3 in the multiprocess sum until
    the config's child_exit hook marks it dead."""
    import sys
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from docs_src.metrics import gunicorn_conf

    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    metrics_dir.mkdir()
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from prometheus_client import Gauge; "
            "Gauge('fastapi_tasks_running', 'x', multiprocess_mode='livesum').set(3); "
            "print(os.getpid())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(worker.stdout)

    def running() -> float | None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(metrics_dir))
        return registry.get_sample_value("fastapi_tasks_running")

    assert running() == 3  # the dead worker still counts
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        gunicorn_conf.child_exit(SimpleNamespace(), SimpleNamespace(pid=pid))
    assert running() is None  # its gauges are gone


def test_the_gunicorn_config_starts_from_an_empty_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from docs_src.metrics import gunicorn_conf

    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    gunicorn_conf.on_starting(SimpleNamespace())
    assert list(metrics_dir.iterdir()) == []
    assert gunicorn_conf.worker_class == "uvicorn_worker.UvicornWorker"
