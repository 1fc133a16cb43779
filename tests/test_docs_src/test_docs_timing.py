"""docs/scheduling.md: the three timing modes, the Task handle, discarding, dependencies and
WebSockets."""

import logging

import anyio
import pytest
from fastapi.testclient import TestClient

from fastapi_tasks import TaskState, get_tasks
from fastapi_tasks.testing import capture_tasks, wait_for_tasks, wait_for_tasks_sync


@pytest.mark.anyio
async def test_three_modes_all_run(load_example, serve) -> None:
    example = load_example("docs_src.timing.three_modes")
    async with serve(example.app) as client:
        response = await client.post(
            "/orders/42", params={"amount": 19.5, "email": "ada@example.com"}
        )
        assert response.json() == {"order_id": 42}
        await wait_for_tasks(example.app)
        assert get_tasks(example.app).stats().succeeded == 3
    assert sorted(example.journal) == [
        "receipt for order 42 sent to ada@example.com",
        "sale of 19.50 recorded for order 42",
        "stock reserved for order 42",
    ]


@pytest.mark.anyio
async def test_three_modes_record_their_timing(load_example, serve) -> None:
    example = load_example("docs_src.timing.three_modes")
    async with serve(example.app) as client:
        with capture_tasks(example.app) as captured:
            await client.post("/orders/1", params={"amount": 1, "email": "a@example.com"})
    assert [(c.func, c.timing) for c in captured] == [
        (example.reserve_stock, "now"),
        (example.record_sale, "after_route"),
        (example.email_receipt, "after_response"),
    ]


@pytest.mark.anyio
async def test_task_handle_fast_path_answers_with_the_result(load_example, serve) -> None:
    example = load_example("docs_src.timing.task_handle")
    async with serve(example.app) as client:
        response = await client.post("/reports/3")
    assert response.status_code == 200
    assert response.json() == {"report": "report #3: all good"}


@pytest.mark.anyio
async def test_task_handle_slow_path_answers_202(load_example, serve, monkeypatch) -> None:
    example = load_example("docs_src.timing.task_handle")
    release = anyio.Event()
    real_build_report = example.build_report

    async def slow_build_report(report_id: int) -> None:
        await release.wait()
        await real_build_report(report_id)

    monkeypatch.setattr(example, "build_report", slow_build_report)
    async with serve(example.app) as client:
        response = await client.post("/reports/4", params={"wait": 0.01})
        assert response.status_code == 202
        assert response.json()["state"] in ("pending", "running")
        assert example.reports == {}
        release.set()  # the task keeps going after the response
        await wait_for_tasks(example.app)
    assert example.reports == {4: "report #4: all good"}


@pytest.mark.anyio
async def test_deferred_tasks_are_discarded_when_the_endpoint_raises(
    load_example, serve, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="fastapi_tasks")
    example = load_example("docs_src.timing.discarded")
    async with serve(example.app) as client:
        assert (await client.put("/profiles/9", params={"name": "Eve"})).status_code == 404
        assert (await client.put("/profiles/1", params={"name": "Ada L."})).status_code == 200
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert example.notifications == ["profile 1 was updated"]
    assert (stats.discarded, stats.scheduled, stats.succeeded) == (1, 1, 1)
    assert "discarded 1 after-response task(s) because the endpoint raised HTTPException" in (
        caplog.text
    )


@pytest.mark.anyio
async def test_dependency_and_endpoint_share_the_scheduler(load_example, serve) -> None:
    example = load_example("docs_src.timing.dependency")
    async with serve(example.app) as client:
        response = await client.post("/articles/hello/publish", headers={"x-user": "ada"})
        assert response.json() == {"published": "hello"}
        await wait_for_tasks(example.app)
    assert example.audit_trail == ["ada: authenticated", "ada: published hello"]


@pytest.mark.anyio
async def test_a_dependency_can_hand_out_a_configured_scheduler(load_example, serve) -> None:
    example = load_example("docs_src.timing.dependency")
    async with serve(example.app) as client:
        with capture_tasks(example.app) as captured:
            await client.get("/whoami", headers={"x-user": "grace"})
    assert [(c.name, c.timing) for c in captured][1:] == [("audit", "after_response")]
    await captured.run()
    assert example.audit_trail == ["grace: authenticated", "grace: looked at their profile"]


def test_websocket_session_releases_its_tasks_when_it_ends(load_example) -> None:
    example = load_example("docs_src.timing.websocket")
    with TestClient(example.app) as client:
        with client.websocket_connect("/rooms/lobby") as websocket:
            websocket.send_text("hello")
            assert websocket.receive_text() == "echo: hello"
            websocket.send_text("bye")
            assert websocket.receive_text() == "echo: bye"
            assert example.archive == {}  # still connected: nothing released yet
        wait_for_tasks_sync(client)
    assert example.archive == {"lobby": ["hello", "bye"]}


def test_task_state_values_are_strings() -> None:
    assert [state.value for state in TaskState] == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]


@pytest.mark.anyio
async def test_request_context_reaches_each_requests_own_tasks(load_example, serve) -> None:
    example = load_example("docs_src.timing.request_context")
    async with serve(example.app) as client:
        async with anyio.create_task_group() as tg:
            for rid in ("r1", "r2", "r3"):
                tg.start_soon(
                    lambda rid=rid: client.post("/documents/doc", headers={"x-request-id": rid})
                )
        await wait_for_tasks(example.app)
    assert sorted(example.audit_log) == sorted(
        f"{rid}: {what}" for rid in ("r1", "r2", "r3") for what in ("uploaded doc", "archived doc")
    )
