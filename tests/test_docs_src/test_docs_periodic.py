"""docs/periodic.md: a schedule started by the lifespan, and schedules started and stopped by
endpoints."""

from typing import Any

import anyio
import pytest

from fastapi_tasks import get_tasks

pytestmark = pytest.mark.anyio


async def wait_until(predicate: Any) -> None:
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.001)


async def test_the_lifespan_schedule_refreshes_and_survives_failures(
    load_example, serve, capsys
) -> None:
    example = load_example("docs_src.periodic.startup")
    example.REFRESH_EVERY = 0.01
    calls = 0

    async def fetch_prices() -> dict[str, float]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("pricing service down")
        return {"EUR": 1.0 + calls}

    example.fetch_prices = fetch_prices
    async with serve(example.app) as client:
        await wait_until(lambda: calls >= 4)
        assert (await client.get("/prices")).json()["EUR"] >= 2.0
        health = (await client.get("/health/tasks")).json()
        assert health["failed"] == 1 and health["succeeded"] >= 2
    assert (
        "refresh-prices failed: ConnectionError('pricing service down')" in capsys.readouterr().out
    )
    stats = get_tasks(example.app).stats()
    assert stats.state == "stopped" and stats.rejected == 0


async def test_endpoints_start_and_stop_watching_an_order(load_example, serve) -> None:
    example = load_example("docs_src.periodic.endpoints")
    example.CHECK_EVERY = 0.01
    example.watchers.clear()
    example.checks.clear()
    async with serve(example.app) as client:
        response = await client.post("/orders/7/watch")
        assert (response.status_code, response.json()) == (201, {"watching": "check-order"})
        assert (await client.post("/orders/7/watch")).status_code == 409
        await wait_until(lambda: example.checks.get(7, 0) >= 3)
        assert (await client.delete("/orders/7/watch")).json() == {"stopped": True}
        assert (await client.delete("/orders/7/watch")).status_code == 404
        await client.post("/orders/8/watch")
        watcher = example.watchers[8]
    assert not watcher.active  # stopped by the shutdown
    assert watcher.cancel() is False
