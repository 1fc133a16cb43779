"""The public surface is a decision: pin it."""

import fastapi_tasks
import fastapi_tasks.errors
import fastapi_tasks.testing


def test_all_lists_the_public_api() -> None:
    assert fastapi_tasks.__all__ == [
        "AnyTask",
        "ErrorHandler",
        "FastAPITasksAlreadyAddedError",
        "FastAPITasksAppStartedError",
        "FastAPITasksError",
        "FastAPITasksNoRequestError",
        "FastAPITasksQueueFullError",
        "FastAPITasksShutdownError",
        "FastAPITasksTimeoutError",
        "FastAPITasksUninitializedAppError",
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
    for name in fastapi_tasks.__all__:
        assert hasattr(fastapi_tasks, name), name


def test_task_is_importable_from_the_package() -> None:
    from fastapi_tasks import Task

    assert Task.__module__.startswith("fastapi_tasks")


def test_every_error_derives_from_the_base_and_a_builtin() -> None:
    base = fastapi_tasks.errors.FastAPITasksError
    for name in fastapi_tasks.errors.__all__:
        cls = getattr(fastapi_tasks.errors, name)
        assert issubclass(cls, base)
        if cls is not base:
            assert issubclass(cls, (RuntimeError, TimeoutError)), name
        assert getattr(fastapi_tasks, name) is cls


def test_testing_module_surface() -> None:
    assert sorted(fastapi_tasks.testing.__all__) == [
        "CapturedTask",
        "CapturedTasks",
        "capture_tasks",
        "wait_for_tasks",
        "wait_for_tasks_sync",
    ]
