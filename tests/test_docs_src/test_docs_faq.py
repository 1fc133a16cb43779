"""docs/faq.md: a task scheduling a follow-up with get_tasks(app)."""

import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_a_task_schedules_a_follow_up(load_example, serve) -> None:
    example = load_example("docs_src.faq.follow_up")
    async with serve(example.app) as client:
        assert (await client.post("/photos/7")).json() == {"photo_id": 7}
        await wait_for_tasks(example.app)  # the first task...
        await wait_for_tasks(example.app)  # ...and the follow-up it scheduled
        stats = get_tasks(example.app).stats()
    assert example.steps == ["thumbnail of photo 7 made", "thumbnail of photo 7 published"]
    assert stats.succeeded == 2


@pytest.mark.anyio
async def test_startup_code_can_schedule(load_example, serve) -> None:
    example = load_example("docs_src.faq.startup_tasks")
    async with serve(example.app):
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert sorted(example.warmed) == ["eu", "us"]
    assert (stats.scheduled, stats.succeeded) == (2, 2)
