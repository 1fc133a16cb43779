"""CPU instructions per request, counted by valgrind: scenario 1 without timing noise.

Wall-clock ratios move with whatever else the machine runs. Instruction counts do not: the
same code path executes the same instructions, run after run. This script counts them with
``valgrind --tool=callgrind`` for each endpoint variant of scenario 1 (raw ASGI calls, the app
and the tasks' own work included) and prints the counts and the ratios that matter:

* ``Tasks`` x10 vs ``BackgroundTasks`` x10 (the >= 0.8x target, in instructions);
* the *ceiling*, a dependency returning a scheduler that is only ``loop.create_task`` plus a
  strong reference (see ``inprocess.Ceiling``), vs ``BackgroundTasks`` x10: what any library
  that gives every task a real asyncio task, behind a FastAPI dependency, can reach at best;
* ``Tasks`` x10 vs that ceiling: what this library's own bookkeeping costs.

Each variant runs twice, with 0 and with ``--requests`` requests after a warm-up, and the
difference divided by the request count is the cost of one request: start-up costs cancel out.

    python benchmarks/instructions.py [--requests 1000]

Needs ``valgrind`` on the PATH (Debian: ``apt-get install valgrind``). About 2 minutes.
"""

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("bare", "bg10", "ceiling0", "ceiling10", "lib_bare", "lib_inject0", "lib_tasks10")
WARM_UP = 50


async def serve(variant: str, requests: int) -> None:
    """Child process: ``requests`` raw ASGI requests to the variant's app (after a warm-up)."""
    sys.path.insert(0, str(HERE))
    import inprocess
    from asgi_lifespan import LifespanManager
    from harness import RawASGI

    endpoint, lib = {
        "bare": (inprocess.bare, False),
        "bg10": (inprocess.bg10, False),
        "ceiling0": (inprocess.ceiling0, False),
        "ceiling10": (inprocess.ceiling10, False),
        "lib_bare": (inprocess.bare, True),
        "lib_inject0": (inprocess.inject0, True),
        "lib_tasks10": (inprocess.tasks10, True),
    }[variant]
    app = inprocess.make_app(endpoint, lib=lib)
    async with LifespanManager(app) as manager:
        get = RawASGI(app, inprocess.lifespan_state(manager)).get
        for _ in range(WARM_UP + requests):
            if await get("/") != 200:
                raise RuntimeError(f"{variant}: GET / failed")
            await asyncio.sleep(0)  # the tasks run here, as in inprocess.scheduling
        for _ in range(3):
            await asyncio.sleep(0)


def count(variant: str, requests: int) -> int:
    """Instructions executed by a child serving ``requests`` requests."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        variant,
        "--requests",
        str(requests),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(serve(args.child, args.requests))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    per_request: dict[str, float] = {}
    for variant in VARIANTS:
        base = count(variant, 0)
        loaded = count(variant, args.requests)
        per_request[variant] = (loaded - base) / args.requests
        print(f"{variant:12s} {per_request[variant]:>11,.0f} instructions per request", flush=True)
    bg10, ceiling, lib = (per_request[k] for k in ("bg10", "ceiling10", "lib_tasks10"))
    print()
    print(f"Tasks x10 vs BackgroundTasks x10 (throughput ratio): {bg10 / lib:.3f}x")
    print(f"ceiling x10 vs BackgroundTasks x10:                  {bg10 / ceiling:.3f}x")
    print(f"Tasks x10 vs ceiling x10:                            {ceiling / lib:.3f}x")
    print(
        "per request, dependency and hooks (x0 vs bare): "
        f"Tasks {per_request['lib_inject0'] - per_request['bare']:,.0f}, "
        f"ceiling {per_request['ceiling0'] - per_request['bare']:,.0f}; "
        f"BackgroundTasks x10 vs bare: {bg10 - per_request['bare']:,.0f}"
    )
    print(
        "per task (x10 vs x0, / 10): "
        f"Tasks {(lib - per_request['lib_inject0']) / 10:,.0f}, "
        f"ceiling {(ceiling - per_request['ceiling0']) / 10:,.0f}"
    )


if __name__ == "__main__":
    main()
