"""Scheduling outside a request: the application-level scheduler."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import HTTPConnection

from ._lifespan import get_runtime
from ._request_hooks import QUEUES_KEY
from ._scheduler import RequestQueues, TaskScheduler

__all__ = ["get_tasks"]


def get_tasks(app_or_connection: FastAPI | HTTPConnection) -> TaskScheduler:
    """The application's scheduler, for use outside an endpoint's ``Tasks`` dependency.

    Pass the FastAPI app, or a ``Request``/``WebSocket`` (its app is used). The scheduler offers
    ``schedule()``, ``task(...)`` and ``stats()`` with the same accounting, limits and shutdown
    rules as request schedulers; ``after_route``/``after_response`` need a request and raise.
    Useful from startup code, from inside a task (to schedule a follow-up), and for a health
    endpoint (``get_tasks(app).stats()``).

    :raises FastAPITasksUninitializedAppError: if ``add_tasks(app)`` was not called.
    """
    if isinstance(app_or_connection, HTTPConnection):
        queues: RequestQueues | None = app_or_connection.scope.get(QUEUES_KEY)
        if queues is not None:  # the runtime serving this request (also in a mounted app)
            runtime = queues.runtime
            return TaskScheduler._create(runtime, runtime.config)
        app: Any = app_or_connection.app
    else:
        app = app_or_connection
    runtime = get_runtime(app)
    return TaskScheduler._create(runtime, runtime.config)
