"""The public surface is a decision: pin it.

Each test fails on a real change of the surface: a name exported but missing, a public name
imported into a module but left out of its ``__all__`` (or the reverse), an error class that
loses its base or its builtin.
"""

import types

import pytest

import fastapi_tasks
import fastapi_tasks.errors
import fastapi_tasks.opentelemetry
import fastapi_tasks.prometheus
import fastapi_tasks.taskiq
import fastapi_tasks.testing

ERRORS = {
    "FastAPITasksAlreadyAddedError": RuntimeError,
    "FastAPITasksAppStartedError": RuntimeError,
    "FastAPITasksCancelledError": RuntimeError,
    "FastAPITasksNoRequestError": RuntimeError,
    "FastAPITasksNotFinishedError": RuntimeError,
    "FastAPITasksQueueFullError": RuntimeError,
    "FastAPITasksShutdownError": RuntimeError,
    "FastAPITasksTimeoutError": TimeoutError,
    "FastAPITasksUninitializedAppError": RuntimeError,
}


def public_names(module: types.ModuleType, home: str) -> list[str]:
    """The public classes and functions of ``module`` whose ``__module__`` starts with
    ``home``: what it defines (or, for the package, re-exports) rather than imports for itself
    (``typing`` helpers, anyio, the package's internals in an extra module)."""
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if getattr(value, "__module__", "").startswith(home):
            names.append(name)
    return sorted(names)


def test_the_package_exports_exactly_its_public_api() -> None:
    expected = [
        "AnyTask",
        "ErrorHandler",
        *sorted(["FastAPITasksError", *ERRORS]),
        "PeriodicTask",
        "Retry",
        "Task",
        "TaskConfig",
        "TaskScheduler",
        "TaskState",
        "TaskStats",
        "Tasks",
        "__version__",
        "add_tasks",
        "get_tasks",
        "task_runtime",
    ]
    assert fastapi_tasks.__all__ == expected
    # nothing public in the package namespace is left out of __all__, nothing listed is missing
    defined = public_names(fastapi_tasks, "fastapi_tasks.")
    aliases = {"AnyTask", "ErrorHandler", "Tasks"}  # typing aliases: their __module__ is typing
    assert sorted({*defined, *aliases, "__version__"}) == expected
    for name in expected:
        assert getattr(fastapi_tasks, name, None) is not None, name


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (fastapi_tasks.errors, sorted(["FastAPITasksError", *ERRORS])),
        (
            fastapi_tasks.testing,
            [
                "CapturedTask",
                "CapturedTasks",
                "capture_tasks",
                "wait_for_tasks",
                "wait_for_tasks_sync",
            ],
        ),
        (
            fastapi_tasks.prometheus,
            ["TaskMetrics", "add_metrics_route", "instrument", "metrics_app"],
        ),
        (fastapi_tasks.taskiq, ["add_durable_broker"]),
        (fastapi_tasks.opentelemetry, ["TaskTracer", "instrument"]),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_public_module_exports_exactly_what_it_defines(
    module: types.ModuleType, expected: list[str]
) -> None:
    assert sorted(module.__all__) == expected
    assert public_names(module, module.__name__) == expected


def test_the_package_reexports_the_objects_of_its_modules() -> None:
    from fastapi_tasks import _scheduler, _task

    assert fastapi_tasks.Task is _task.Task
    assert fastapi_tasks.TaskScheduler is _scheduler.TaskScheduler
    for name in fastapi_tasks.errors.__all__:
        assert getattr(fastapi_tasks, name) is getattr(fastapi_tasks.errors, name), name


@pytest.mark.parametrize(("name", "builtin"), sorted(ERRORS.items()))
def test_every_error_derives_from_the_base_and_its_builtin(
    name: str, builtin: type[Exception]
) -> None:
    cls = getattr(fastapi_tasks.errors, name)
    assert issubclass(cls, fastapi_tasks.errors.FastAPITasksError)
    assert issubclass(cls, builtin)
    assert not issubclass(fastapi_tasks.errors.FastAPITasksError, (RuntimeError, TimeoutError))
