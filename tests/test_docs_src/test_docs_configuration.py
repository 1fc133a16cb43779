"""docs/configuration.md: per-task settings, the global config, and how configs merge."""

import logging

import pytest

from fastapi_tasks import TaskConfig, get_tasks
from fastapi_tasks.testing import capture_tasks, wait_for_tasks


@pytest.mark.anyio
async def test_per_task_settings(load_example, serve) -> None:
    example = load_example("docs_src.configuration.per_task")
    async with serve(example.app) as client:
        with capture_tasks(example.app) as captured:
            await client.post("/orders/5/pay", params={"cents": 1250})
        [charge, warm] = captured
        assert (charge.name, charge.task.shielded, charge.timing) == ("charge-card", True, "now")
        assert warm.task.config.on_error is example.report_failure
        assert warm.timing == "after_response"

        await client.post("/orders/5/pay", params={"cents": 1250})  # for real this time
        await wait_for_tasks(example.app)
        stats = get_tasks(example.app).stats()
    assert example.ledger == ["order 5: charged 1250 cents"]
    assert example.failures == ["docs_src.configuration.per_task.warm_cache failed: cache is down"]
    assert (stats.succeeded, stats.failed) == (1, 1)


@pytest.mark.anyio
async def test_global_config_and_a_configured_dependency(load_example, serve) -> None:
    example = load_example("docs_src.configuration.global_config")
    async with serve(example.app) as client:
        response = await client.post("/shops/acme/refresh")
        assert response.json() == {"shielded": True, "has_handler": True}
        await wait_for_tasks(example.app)
    assert example.incidents == ["partner-feed: TimeoutError"]
    assert example.done == ["index of acme rebuilt"]


def test_merging_rules(load_example) -> None:
    example = load_example("docs_src.configuration.merging")
    effective = example.effective
    assert effective == TaskConfig(name="nightly-export", shield=True, on_error=example.quiet)
    assert effective.shielded
    assert example.unshielded.shield is False
    assert not example.unshielded.shielded
    assert example.unshielded.on_error is example.quiet


def test_config_fields_are_type_checked() -> None:
    with pytest.raises(TypeError, match="shield"):
        TaskConfig(shield="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error"):
        TaskConfig(on_error=logging.ERROR)  # type: ignore[arg-type]
