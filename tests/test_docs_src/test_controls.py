"""docs/controls.md: timeouts, retries, concurrency limits, cancel and result."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from fastapi_tasks import TaskState, get_tasks
from fastapi_tasks.testing import wait_for_tasks

pytestmark = pytest.mark.anyio


async def test_timeout_reports_the_timeout(
    load_example: Any, serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    example = load_example("docs_src.controls.timeout")

    async def hanging(image_id: str) -> None:
        await anyio.sleep_forever()

    async with serve(example.app) as client:
        assert (await client.post("/images/a")).json() == {"status": "uploaded"}
        await wait_for_tasks(example.app)
        assert example.thumbnails == {"a": b"..."}

    monkeypatch.setattr(example, "render_thumbnail", hanging)
    app = example.create_app(timeout=0.05)
    caplog.set_level(logging.WARNING, logger="app")
    async with serve(app) as client:
        await client.post("/images/b")
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert (stats.failed, stats.succeeded) == (1, 0)
    assert "gave up after its timeout" in caplog.text


async def test_sync_timeout_stops_the_export(
    load_example: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("docs_src.controls.sync_timeout")
    async with serve(example.app) as client:
        await client.post("/export/users", params={"rows": 3})
        await wait_for_tasks(example.app)
    assert example.exported == ["users"]

    stopped = threading.Event()
    real_check = example.anyio.from_thread.check_cancelled

    def slow_check() -> None:
        threading.Event().wait(0.01)
        try:
            real_check()
        except BaseException:
            stopped.set()
            raise

    monkeypatch.setattr(example.anyio.from_thread, "check_cancelled", slow_check)
    app = example.create_app(timeout=0.05)
    async with serve(app) as client:
        await client.post("/export/orders", params={"rows": 1_000_000})
        await wait_for_tasks(app)
        assert await anyio.to_thread.run_sync(stopped.wait, 5)
        stats = get_tasks(app).stats()
    assert example.exported == ["users"]  # the second export stopped early
    assert stats.failed == 1


async def test_retry_delivers_after_temporary_errors(
    load_example: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("docs_src.controls.retry")
    calls: list[str] = []
    real = example.deliver_webhook

    async def flaky(url: str, event: str) -> None:
        calls.append(event)
        if len(calls) < 3 or event == "paid:never":
            raise example.TemporaryError()
        await real(url, event)

    monkeypatch.setattr(example, "deliver_webhook", flaky)
    app = example.create_app(backoff=0)
    async with serve(app) as client:
        await client.post("/orders/1/paid")
        await wait_for_tasks(app)
        assert example.delivered == ["paid:1"]
        await client.post("/orders/never/paid")
        await wait_for_tasks(app)
        stats = get_tasks(app).stats()
    assert example.gave_up == ["webhook failed 5 times: TemporaryError"]
    assert (stats.succeeded, stats.failed, stats.retried) == (1, 1, 2 + 4)


async def test_limits_hold_back_emails_only(
    load_example: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("docs_src.controls.limits")
    gate = anyio.Event()
    running = 0
    most = 0

    async def gated_send(to: str) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1
        example.sent.append(to)

    monkeypatch.setattr(example, "send_email", gated_send)
    app = example.create_app(email_limit=2)
    async with serve(app) as client:
        for n in range(5):
            await client.post("/signup", params={"email": f"u{n}@example.com"})
        while running < 2 or get_tasks(app).stats().succeeded < 5:
            await anyio.sleep(0.001)  # the cache refreshes all finish; two emails run
        stats = get_tasks(app).stats()
        assert (stats.running, stats.waiting) == (2, 3)
        gate.set()
        await wait_for_tasks(app)
    assert most == 2
    assert sorted(example.sent) == [f"u{n}@example.com" for n in range(5)]


async def test_default_limits_app_runs(load_example: Any, serve: Any) -> None:
    example = load_example("docs_src.controls.limits")
    async with serve(example.app) as client:
        assert (await client.post("/signup", params={"email": "a@b.c"})).status_code == 200
        await wait_for_tasks(example.app)
    assert example.sent == ["a@b.c"]


async def test_reports_can_be_polled_and_cancelled(
    load_example: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_example("docs_src.controls.cancel_result")
    async with serve(example.app) as client:
        report_id = (await client.post("/reports/2024-01")).json()["id"]
        done = (await client.get(f"/reports/{report_id}", params={"wait": 5})).json()
        assert done == {"state": "done", "report": {"month": "2024-01", "total": 1234}}
        assert (await client.delete(f"/reports/{report_id}")).json() == {"cancelled": False}

        monkeypatch.setattr(example, "build_report", _forever)
        slow_id = (await client.post("/reports/2024-02")).json()["id"]
        polled = (await client.get(f"/reports/{slow_id}", params={"wait": 0.01})).json()
        assert polled == {"state": "running"}
        slow = example.reports[slow_id]
        assert (await client.delete(f"/reports/{slow_id}")).json() == {"cancelled": True}
        await slow.wait()
        assert slow.state is TaskState.CANCELLED
        assert (await client.get("/reports/missing")).status_code == 404


async def _forever(month: str) -> None:
    await anyio.sleep_forever()
