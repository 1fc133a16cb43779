"""docs/shutdown.md, "Running the runtime from your own lifespan": task_runtime() for a mounted
app whose outer app does not call add_tasks()."""

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks

pytestmark = pytest.mark.anyio


async def test_the_outer_lifespan_runs_and_drains_the_mounted_runtime(load_example):
    example = load_example("docs_src.lifespan.mounted")
    example.built.clear()
    async with LifespanManager(example.app) as manager:
        assert get_tasks(example.reports).stats().state == "running"
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
            response = await client.post("/reports/sales")
            assert response.json() == {"report": "sales", "status": "queued"}
        with anyio.fail_after(5):
            await wait_for_tasks(example.reports)
    assert example.built == ["sales"]
    assert get_tasks(example.reports).stats().state == "stopped"
