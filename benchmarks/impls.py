"""One small adapter over whichever ``fastapi_tasks`` this interpreter imports.

The benchmark runs the same scenario code against this repository's library (``ours``) and
against ``fastapi-tasks==0.1.0`` from PyPI (``original``), installed in its own virtualenv
because both use the import name ``fastapi_tasks``. The two share ``add_tasks(app)``, the
``Tasks`` dependency, ``tasks.schedule(fn, *args)`` and ``tasks.task(shield=True)``; they
differ in how to get a scheduler outside a request, which is all this module hides.
"""

import importlib
import importlib.metadata
from typing import Any, Protocol

from fastapi import FastAPI

import fastapi_tasks
from fastapi_tasks import Tasks

__all__ = ["IMPL", "Impl", "Scheduler", "Tasks"]


class Scheduler(Protocol):
    """What both libraries' schedulers offer (the subset the benchmarks use)."""

    def schedule(self, func: Any, /, *args: Any) -> Any: ...

    def task(self, *, shield: bool) -> Any: ...


class Impl:
    """The library under test in this interpreter."""

    def __init__(self) -> None:
        self.version = importlib.metadata.version("fastapi-tasks")
        self.path = str(fastapi_tasks.__file__)
        #: ``ours`` has an application-level scheduler (``get_tasks``); 0.1.0 does not.
        self.name = "ours" if hasattr(fastapi_tasks, "get_tasks") else "original"

    def install(self, app: FastAPI, *, thread_limit: int = 40) -> None:
        """``add_tasks(app)``. 0.1.0 has no thread limit of its own: its sync tasks use anyio's
        default limiter, which also has 40 tokens."""
        add_tasks: Any = fastapi_tasks.add_tasks
        if self.name == "ours":
            add_tasks(app, thread_limit=thread_limit)
        else:
            add_tasks(app)

    def app_scheduler(self, app: FastAPI, lifespan_state: dict[str, Any]) -> Scheduler:
        """A scheduler usable outside a request, on the event loop thread.

        Ours: ``get_tasks(app)``. 0.1.0: its public ``TasksScheduler`` class around the task
        group its lifespan put in the lifespan state (what its ``Tasks`` dependency does).
        """
        if self.name == "ours":
            scheduler: Scheduler = importlib.import_module("fastapi_tasks").get_tasks(app)
            return scheduler
        tasks_module = importlib.import_module("fastapi_tasks.tasks")
        scheduler = tasks_module.TasksScheduler(lifespan_state["fastapi_tasks_tg"])
        return scheduler

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "path": self.path}


IMPL = Impl()
