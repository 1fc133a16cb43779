"""docs/metrics.md: the instrumented app, and the multi-worker start script."""

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
