"""docs/backpressure.md: max_pending and a 503 for the overflow."""

import threading

import anyio.to_thread
import pytest

from fastapi_tasks import get_tasks
from fastapi_tasks.testing import wait_for_tasks


@pytest.mark.anyio
async def test_queue_full_turns_into_503(load_example, serve, monkeypatch) -> None:
    example = load_example("docs_src.backpressure.queue_full")
    started = threading.Event()
    release = threading.Event()
    real_convert = example.convert_video

    def gated_convert(name: str) -> None:
        started.set()
        release.wait(10)
        real_convert(name)

    monkeypatch.setattr(example, "convert_video", gated_convert)
    app = example.create_app(thread_limit=1, max_pending=1)
    async with serve(app) as client:
        assert (await client.post("/videos/a/convert")).status_code == 200  # runs
        await anyio.to_thread.run_sync(started.wait, 10)
        assert (await client.post("/videos/b/convert")).status_code == 200  # waits
        refused = await client.post("/videos/c/convert")  # one too many
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json() == {"detail": "too busy, try again shortly"}

        release.set()
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert example.converted == ["a", "b"]
    assert (stats.scheduled, stats.succeeded, stats.rejected) == (2, 2, 1)


@pytest.mark.anyio
async def test_default_app_accepts_work(load_example, serve) -> None:
    example = load_example("docs_src.backpressure.queue_full")
    async with serve(example.app) as client:
        for name in ("x", "y", "z"):
            assert (await client.post(f"/videos/{name}/convert")).json() == {"status": "queued"}
        await wait_for_tasks(example.app)
    assert sorted(example.converted) == ["x", "y", "z"]
