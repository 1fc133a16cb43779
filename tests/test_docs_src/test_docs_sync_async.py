"""docs/sync-async.md: plain functions in the runtime's own threads, async ones on the loop."""

import threading

import anyio
import anyio.to_thread
import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_sync_tasks_run_in_threads_async_on_the_loop(load_example, serve) -> None:
    example = load_example("docs_src.sync_async.threads")
    async with serve(example.app) as client:
        assert (await client.post("/images/cat")).json() == {"uploaded": "cat"}
        assert (await client.post("/sync-endpoint/dog")).json() == {"uploaded": "dog"}
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert set(example.thumbnails) == {"cat", "dog", "announced"}
    assert len(example.thumbnails["cat"]) == 12
    assert example.thumbnails["announced"] == "cat"
    assert threading.current_thread().name not in example.seen_threads
    assert (stats.thread_limit, stats.succeeded) == (8, 3)


@pytest.mark.anyio
async def test_sync_tasks_do_not_use_fastapis_thread_pool(load_example, serve, monkeypatch) -> None:
    example = load_example("docs_src.sync_async.threads")
    entered = threading.Event()
    release = threading.Event()

    def blocking_thumbnail(name: str, data: bytes) -> None:
        entered.set()
        release.wait(10)

    monkeypatch.setattr(example, "make_thumbnail", blocking_thumbnail)
    async with serve(example.app) as client:
        await client.post("/images/big")
        await anyio.to_thread.run_sync(entered.wait, 10)
        stats = get_tasks(example.app).stats()
        default_pool = anyio.to_thread.current_default_thread_limiter().statistics()
        release.set()
        await wait_for_tasks(example.app)
    assert (stats.running, stats.threads_busy) == (1, 1)
    assert default_pool.borrowed_tokens == 0  # FastAPI's pool for `def` endpoints is untouched


@pytest.mark.anyio
async def test_sync_task_calls_async_code(load_example, serve) -> None:
    example = load_example("docs_src.sync_async.from_thread")
    async with serve(example.app) as client:
        response = await client.post("/imports", json=[" alpha", "beta "])
        assert response.json() == {"rows": 2}
        await wait_for_tasks(example.app)
    assert example.published == ["ALPHA", "BETA"]
