"""docs/getting-started.md: the first app, and an app with its own lifespan."""

import pytest
from fastapi.testclient import TestClient

from fastapi_tasks import FastAPITasksUninitializedAppError, get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_first_app_sends_the_email_after_the_response(load_example, serve) -> None:
    example = load_example("docs_src.getting_started.first_app")
    async with serve(example.app) as client:
        response = await client.post("/signup", params={"email": "ada@example.com"})
        assert response.json() == {"status": "registered", "email": "ada@example.com"}
        await wait_for_tasks(example.app)
        assert get_tasks(example.app).stats().succeeded == 1
    assert example.outbox == ["Welcome aboard, ada@example.com!"]


def test_tasks_need_the_lifespan_to_run(load_example) -> None:
    example = load_example("docs_src.getting_started.first_app")
    client = TestClient(example.app)  # no `with`: the lifespan never starts
    with pytest.raises(FastAPITasksUninitializedAppError, match="lifespan is not running"):
        client.post("/signup", params={"email": "ada@example.com"})
    assert example.outbox == []


@pytest.mark.anyio
async def test_own_lifespan_keeps_working_and_tears_down_last(load_example, serve) -> None:
    example = load_example("docs_src.getting_started.own_lifespan")
    async with serve(example.app) as client:
        assert example.events == ["app startup"]
        assert (await client.delete("/documents/7")).json() == {"deleted": 7}
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
        assert (stats.succeeded, stats.failed) == (1, 0)  # the audit log was still open
    assert example.events == ["app startup", "app teardown"]
