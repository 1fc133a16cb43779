"""docs/introspection.md: stats snapshots and health endpoints."""

import pytest

from fastapi_tasks import TaskStats, get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_health_endpoints(load_example, serve) -> None:
    example = load_example("docs_src.introspection.health")
    async with serve(example.app) as client:
        assert (await client.get("/health/live")).json() == {"status": "alive"}

        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True, "state": "running", "pending": 0}

        stats = (await client.get("/health/tasks")).json()
        assert set(stats) == set(TaskStats.__dataclass_fields__)
        assert stats["state"] == "running"
        assert stats["scheduled"] == (
            stats["pending"]
            + stats["running"]
            + stats["succeeded"]
            + stats["failed"]
            + stats["cancelled"]
        )


@pytest.mark.anyio
async def test_ready_fails_when_too_much_work_waits(load_example, serve, monkeypatch) -> None:
    example = load_example("docs_src.introspection.health")
    monkeypatch.setattr(example, "READY_MAX_PENDING", 1)

    async def nothing() -> None:
        pass

    async with serve(example.app):
        get_tasks(example.app).schedule(nothing)
        busy = await example.ready()  # no await in between: the task has not started yet
        await wait_for_tasks(example.app)
        idle = await example.ready()
    assert busy.status_code == 503
    assert busy.body == b'{"ready":false,"state":"running","pending":1}'
    assert idle.status_code == 200


def test_stats_before_the_lifespan(load_example) -> None:
    example = load_example("docs_src.introspection.health")
    stats = get_tasks(example.app).stats()
    assert stats.state == "idle"
    assert stats.to_dict()["scheduled"] == 0


def test_shutdown_timeout_comes_from_the_environment(load_example, monkeypatch) -> None:
    monkeypatch.setenv("TASKS_SHUTDOWN_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="shutdown_timeout"):
        load_example("docs_src.introspection.health")
