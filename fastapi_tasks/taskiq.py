"""Durable hand-off to a taskiq broker (``pip install 'fastapi-tasks[taskiq]'``).

In-process tasks die with their process. Work that must survive a crash, be retried, or run on
other machines belongs on a queue. With one line at start-up, the same call sites hand jobs to
taskiq::

    broker = ListQueueBroker("redis://...")          # your taskiq broker

    @broker.task
    async def send_invoice(order_id: int) -> None: ...

    add_tasks(app)
    add_durable_broker(app, broker)

    @app.post("/orders")
    async def order(tasks: Tasks) -> None:
        tasks.durable.after_response.schedule(send_invoice, 42)

The timing modes apply to the *enqueue*, which runs as a shielded in-process task (see
``fastapi_tasks._durable``). Jobs must be taskiq tasks registered with this broker (decorated
with ``@broker.task``) so that workers know them too; anything else is refused with a
``TypeError`` at the call. ``stats()`` counts ``enqueued`` and ``enqueue_failed``.

The broker is started before the application's own startup and shut down after its teardown,
which comes after the task drain: enqueues still in flight at shutdown complete first. Pass
``manage_broker=False`` if your own lifespan starts and stops the broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask

from ._lifespan import get_runtime
from ._runtime import TaskRuntime
from ._stats import notify
from .errors import FastAPITasksAlreadyAddedError

__all__ = ["add_durable_broker"]


class _TaskiqBackend:
    """Enqueues jobs on a taskiq broker; counts successes and failures on the runtime."""

    def __init__(self, runtime: TaskRuntime, broker: AsyncBroker) -> None:
        self.runtime = runtime
        self.broker = broker
        self._enqueuers: dict[str, Callable[..., Awaitable[None]]] = {}

    def enqueuer(self, job: object) -> tuple[Callable[..., Awaitable[None]], str]:
        if not isinstance(job, AsyncTaskiqDecoratedTask):
            name = getattr(job, "__qualname__", type(job).__name__)
            raise TypeError(
                f"{name} is not a taskiq task: decorate it with @broker.task (workers must know "
                "it too) before scheduling it with tasks.durable"
            )
        task_name = job.task_name
        if self.broker.find_task(task_name) is None:
            raise TypeError(
                f"taskiq task {task_name!r} is not registered with the broker given to "
                "add_durable_broker()"
            )
        enqueue = self._enqueuers.get(task_name)
        if enqueue is None:
            enqueue = self._enqueuers[task_name] = self._make_enqueuer(job)
        return enqueue, f"enqueue {task_name}"

    def _make_enqueuer(
        self, job: AsyncTaskiqDecoratedTask[..., Any]
    ) -> Callable[..., Awaitable[None]]:
        runtime = self.runtime

        async def enqueue(*args: Any, **kwargs: Any) -> None:
            try:
                await job.kiq(*args, **kwargs)
            except BaseException:
                runtime.counters.enqueue_failed += 1
                _tell_observer(runtime, ok=False)
                raise
            runtime.counters.enqueued += 1
            _tell_observer(runtime, ok=True)

        enqueue.__qualname__ = f"enqueue[{job.task_name}]"
        enqueue.__module__ = __name__
        return enqueue


def _tell_observer(runtime: TaskRuntime, *, ok: bool) -> None:
    """Let the Prometheus exporter (if ``instrument()`` was called) count the enqueue."""
    notify(runtime.observer, "enqueue_done", ok)


def add_durable_broker(app: FastAPI, broker: AsyncBroker, *, manage_broker: bool = True) -> None:
    """Let ``tasks.durable`` enqueue on ``broker``. Call after ``add_tasks(app)``.

    :param manage_broker: start the broker before the app's startup and shut it down after its
        teardown (and so after the task drain). Set ``False`` if your lifespan does it.
    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called first.
    :raises TypeError: if ``broker`` is not a taskiq ``AsyncBroker``.
    :raises FastAPITasksAlreadyAddedError: if a broker was registered already.
    """
    runtime = get_runtime(app)
    if not isinstance(broker, AsyncBroker):
        raise TypeError(f"broker must be a taskiq AsyncBroker, not {type(broker).__name__}")
    if runtime.durable is not None:
        raise FastAPITasksAlreadyAddedError(
            "add_durable_broker() was already called for this app; call it once per application"
        )
    runtime.durable = _TaskiqBackend(runtime, broker)
    if not manage_broker:
        return
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        await broker.startup()
        try:
            async with inner(lifespan_app) as state:
                yield state
        finally:
            await broker.shutdown()

    app.router.lifespan_context = lifespan
