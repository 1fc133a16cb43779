"""docs/migration.md: each before/after pair does what the page says."""

import logging

import pytest

from fastapi_tasks import TaskConfig
from fastapi_tasks.testing import wait_for_tasks


def test_the_010_code_no_longer_imports(load_example) -> None:
    with pytest.raises(ImportError, match="TaskErrorHandler"):
        load_example("docs_src.migration.from_010_before")


def test_the_010_task_module_is_gone() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"fastapi_tasks\.tasks"):
        __import__("fastapi_tasks.tasks")


def test_task_config_is_frozen() -> None:
    config = TaskConfig()
    with pytest.raises(AttributeError, match="cannot assign to field 'shield'"):
        config.shield = True  # type: ignore[misc]
    assert config.merge(TaskConfig(shield=True)).shield is True


@pytest.mark.anyio
async def test_the_010_after_code_retries_with_await_task(load_example, serve, caplog) -> None:
    example = load_example("docs_src.migration.from_010_after")
    async with serve(example.app) as client:
        assert (await client.post("/orders/7")).json() == {"order_id": 7}
        await wait_for_tasks(example.app)
    assert example.attempts == [7, 7]  # failed once, then the handler's await task() succeeded
    assert "failed twice" not in caplog.text


@pytest.mark.anyio
async def test_await_task_raises_when_the_retry_fails_too(load_example, serve, caplog) -> None:
    example = load_example("docs_src.migration.from_010_after")

    async def always_fails(order_id: int) -> None:
        raise ConnectionError("still down")

    example.charge = always_fails
    caplog.set_level(logging.ERROR, logger="shop")

    @example.app.post("/failing/{order_id}")
    async def failing(order_id: int, tasks: example.Tasks) -> None:
        tasks.task(name="charge", on_error=example.on_error).schedule(always_fails, order_id)

    async with serve(example.app) as client:
        await client.post("/failing/1")
        await wait_for_tasks(example.app)
    assert "charge failed twice: ConnectionError('still down')" in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "module",
    [
        "docs_src.migration.from_background_tasks_before",
        "docs_src.migration.from_background_tasks_after",
    ],
)
async def test_background_tasks_before_and_after_behave_alike(load_example, serve, module) -> None:
    example = load_example(module)
    async with serve(example.app) as client:
        response = await client.post("/users", params={"email": "ada@example.com"})
        assert response.json() == {"email": "ada@example.com"}
        if module.endswith("after"):
            await wait_for_tasks(example.app)
    assert example.sent == ["ada@example.com"]
