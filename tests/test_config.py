"""TaskConfig: immutable, validated, merged over the global config by tasks.task(...)."""

import dataclasses
from typing import Any

import pytest

from fastapi_tasks import Task, TaskConfig, get_tasks

from .conftest import serve

pytestmark = pytest.mark.anyio


async def handler_a(task: Task[..., Any], error: Exception) -> None:
    pass


async def handler_b(task: Task[..., Any], error: Exception) -> None:
    pass


def test_task_config_is_frozen() -> None:
    config = TaskConfig(name="x")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        config.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [{"name": 3}, {"shield": "yes"}, {"shield": 1}, {"on_error": "log"}],
)
def test_task_config_validates_its_fields(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="TaskConfig"):
        TaskConfig(**kwargs)


def test_merge_overrides_set_fields_and_inherits_unset_ones() -> None:
    base = TaskConfig(name="base", shield=True, on_error=handler_a)
    assert base.merge(TaskConfig()) == base
    assert base.merge(TaskConfig(name="other")) == TaskConfig("other", True, handler_a)
    assert base.merge(TaskConfig(shield=False)).shield is False  # False is a value, not unset
    assert base.merge(TaskConfig(on_error=handler_b)).on_error is handler_b
    assert TaskConfig().merge(base) == base
    with pytest.raises(TypeError, match="merge"):
        base.merge({"name": "x"})  # type: ignore[arg-type]


def test_shielded_property() -> None:
    assert TaskConfig(shield=True).shielded
    assert not TaskConfig(shield=False).shielded
    assert not TaskConfig().shielded


async def test_task_settings_merge_over_the_global_config(make_app: Any) -> None:
    app = make_app(config=TaskConfig(name="global", shield=True, on_error=handler_a))
    async with serve(app):
        scheduler = get_tasks(app)
        plain = scheduler.schedule(print)
        renamed = scheduler.task(name="renamed").schedule(print)
        unshielded = scheduler.task(shield=False).schedule(print)
        chained = scheduler.task(name="a").task(on_error=handler_b).schedule(print)
        for task in (plain, renamed, unshielded, chained):
            await task.wait()
    assert plain.config == TaskConfig("global", True, handler_a)
    assert plain.name == "global"
    assert renamed.config == TaskConfig("renamed", True, handler_a)
    assert unshielded.config == TaskConfig("global", False, handler_a)
    assert chained.config == TaskConfig("a", True, handler_b)
    assert scheduler.task(name="x").config.name == "x"


async def test_task_rejects_bad_settings(make_app: Any) -> None:
    app = make_app()
    async with serve(app):
        with pytest.raises(TypeError, match="shield"):
            get_tasks(app).task(shield="always")  # type: ignore[arg-type]
