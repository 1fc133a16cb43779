"""What timeouts, retries and limits cost the tasks that do not use them: nothing measurable.

Microseconds per async task, scheduled with ``get_tasks(app).schedule()`` and run to the end,
for three variants measured in the same process, round by round (``harness.interleave``):

* ``plain``: a task without controls, with this build's code (the controls check in
  ``TaskRuntime.submit`` and the return value kept for ``task.result()``);
* ``without``: the same task with that code taken out: ``TaskRuntime.submit`` and
  ``AsyncRunner.run`` recompiled from this build's own source minus those lines, i.e. the
  short path as it was before the controls existed;
* ``timeout``: a task with ``timeout=60``, which takes the controlled path (for information).

The row compares ``plain`` with ``without``. ``run.py --only controls`` adds it to the results;
on its own (a few seconds)::

    python benchmarks/controls_overhead.py [--tasks 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import textwrap
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from harness import Measurement, Series, interleave, wait_until
from report import RowSpec, Target

from fastapi_tasks import _async_exec, _runtime, add_tasks, get_tasks
from fastapi_tasks._async_exec import AsyncRunner
from fastapi_tasks._runtime import TaskRuntime

__all__ = ["ROWS", "measure"]

GROUP = "controls"
SCENARIO = "6. Task controls (timeouts, retries, limits)"

ROWS = [
    RowSpec(
        SCENARIO,
        "per task without controls, scheduled and run: with the timeout/retry/limit code vs "
        "without it",
        "us",
        f"{GROUP}.plain:total_us",
        f"{GROUP}.without:total_us",
        "same build minus the controls hooks",
        Target("<=", 1.05),
    ),
    RowSpec(
        SCENARIO,
        "per task with `timeout=60` (the controlled path), scheduled and run, vs without",
        "us",
        f"{GROUP}.timeout:total_us",
        f"{GROUP}.plain:total_us",
        "a task without controls",
    ),
]

#: The ``if`` statements the controls added to ``TaskRuntime.submit`` (each with its one-line
#: body): the short path's check, and the async_limit branch of the slow path.
_STRIPPED_IFS = ("if task.config.controlled:", "if self.controls.async_limit is not None:")


def _recompiled(
    func: Callable[..., Any], module: types.ModuleType, edit: Callable[[str], str]
) -> Any:
    """``func`` compiled again from its own source after ``edit``, in its module's globals."""
    source = textwrap.dedent(inspect.getsource(func))
    edited = edit(source)
    if edited == source:
        raise RuntimeError(f"{func.__qualname__}: nothing to strip; update controls_overhead.py")
    namespace: dict[str, Any] = {}
    exec(
        compile(edited, inspect.getsourcefile(func) or "<controls>", "exec"),
        vars(module),
        namespace,
    )  # our own source
    return namespace[func.__name__]


def _strip_submit(source: str) -> str:
    kept: list[str] = []
    skip_next = False
    for line in source.splitlines(keepends=True):
        if skip_next:
            skip_next = False
        elif line.strip().startswith(_STRIPPED_IFS):
            skip_next = True
        else:
            kept.append(line)
    return "".join(kept)


def _strip_result(source: str) -> str:
    return source.replace("task._result = await task.func", "await task.func")


submit_without = _recompiled(TaskRuntime.submit, _runtime, _strip_submit)
run_without = _recompiled(AsyncRunner.run, _async_exec, _strip_result)


class RunnerWith(AsyncRunner):
    __slots__ = ()


class RunnerWithout(AsyncRunner):
    __slots__ = ()
    run = run_without


class Count:
    n = 0


async def noop() -> None:
    Count.n += 1


def _install(app: FastAPI, *, stripped: bool) -> None:
    """Both variants call ``submit`` through an instance attribute and ``run`` on a subclass,
    so they differ only in the code under test."""
    runtime: TaskRuntime = app.state.fastapi_tasks_runtime
    submit = submit_without if stripped else TaskRuntime.submit
    runtime.submit = types.MethodType(submit, runtime)  # type: ignore[method-assign]
    runner = (RunnerWithout if stripped else RunnerWith)(runtime.ledger)
    runner.limiter = runtime.runner.limiter
    runtime.runner = runner


async def measure(
    tasks: int, rounds: int, log: Callable[[str], None] | None = None
) -> dict[str, Series]:
    batch = 1_000
    apps = {name: FastAPI() for name in ("plain", "without", "timeout")}
    for app in apps.values():
        add_tasks(app)
    async with (
        LifespanManager(apps["plain"]),
        LifespanManager(apps["without"]),
        LifespanManager(apps["timeout"]),
    ):
        _install(apps["plain"], stripped=False)
        _install(apps["without"], stripped=True)
        schedulers = {
            "plain": get_tasks(apps["plain"]),
            "without": get_tasks(apps["without"]),
            "timeout": get_tasks(apps["timeout"]).task(timeout=60),
        }

        def timed(name: str) -> Callable[[], Awaitable[Measurement]]:
            schedule = schedulers[name].schedule

            async def run() -> Measurement:
                expected = Count.n + tasks
                start = time.perf_counter()
                for _ in range(tasks // batch):
                    for _ in range(batch):
                        schedule(noop)
                    await anyio.sleep(0)
                await wait_until(lambda: Count.n >= expected)
                return {"total_us": (time.perf_counter() - start) / tasks * 1e6}

            return run

        series = await interleave(
            {name: timed(name) for name in schedulers}, rounds=rounds, log=log
        )
    return {GROUP: series}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    result = anyio.run(measure, args.tasks, args.rounds)[GROUP]
    plain, without, timeout = (result[f"{n}:total_us"] for n in ("plain", "without", "timeout"))
    ratio = statistics.median(p / w for p, w in zip(plain, without, strict=True))
    print(f"plain task, scheduled and run:        {statistics.median(plain):.2f} us")
    print(f"same, without the controls code:      {statistics.median(without):.2f} us")
    print(f"ratio (median of per-round ratios):   {ratio:.3f}x")
    print(f"with timeout=60 (controlled path):    {statistics.median(timeout):.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
