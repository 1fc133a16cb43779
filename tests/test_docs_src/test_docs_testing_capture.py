"""docs/testing.md: the capture_tasks example test, collected and run from here."""

import anyio
import pytest
from fastapi.testclient import TestClient

from docs_src.testing.app import Mailer, create_app
from docs_src.testing.test_capture import anyio_backend, test_signup_schedules_the_right_tasks
from fastapi_tasks import FastAPITasksError, FastAPITasksTimeoutError, get_tasks
from fastapi_tasks.testing import wait_for_tasks, wait_for_tasks_sync

__all__ = ["anyio_backend", "test_signup_schedules_the_right_tasks"]


@pytest.mark.anyio
async def test_wait_for_tasks_names_what_did_not_finish(serve) -> None:
    app = create_app(Mailer())

    async def stuck() -> None:
        await anyio.sleep_forever()

    async with serve(app):
        get_tasks(app).task(name="stuck-job").schedule(stuck)
        with pytest.raises(FastAPITasksTimeoutError, match="stuck-job"):
            await wait_for_tasks(app, timeout=0.05)


def test_wait_for_tasks_sync_needs_a_running_client() -> None:
    client = TestClient(create_app(Mailer()))
    with pytest.raises(FastAPITasksError, match="with TestClient"):
        wait_for_tasks_sync(client)
