"""Run every benchmark scenario and report each figure as a ratio to a baseline measured in the
same run.

    python benchmarks/run.py                 # full run, a few minutes on 2 cores
    python benchmarks/run.py --quick         # smaller sizes, fewer rounds (well under a minute)
    python benchmarks/run.py --only isolation,shutdown --repeat 5 --chart

Writes ``benchmarks/results.json`` and ``benchmarks/results.md`` and prints the table. Timing
targets never decide the exit code unless ``--check`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import original_env
import report
import servers
from harness import Series

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SCENARIOS = ("scheduling", "isolation", "sync_throughput", "shutdown", "memory", "controls")
IN_PROCESS = {"scheduling", "sync_throughput", "shutdown", "memory"}
PACKAGES = ("fastapi", "starlette", "pydantic", "anyio", "uvicorn", "httpx", "asgi-lifespan")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="fastapi-tasks benchmarks: ratios against same-run baselines."
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer rounds")
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help="rounds per scenario (default 5 in-process / 5 with servers; --quick: 2 / 1)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these scenarios (comma-separated, repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--no-original",
        action="store_true",
        help="skip fastapi-tasks 0.1.0 (no virtualenv is created)",
    )
    parser.add_argument("--chart", action="store_true", help="draw benchmarks/results.png")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="also refresh the tables in benchmarks/README.md and docs/benchmarks.md "
        "(and docs/img/benchmarks.png with --chart)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if a target is missed"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=BENCH_DIR,
        metavar="DIR",
        help="where results.json, results.md and results.png go (default: benchmarks/)",
    )
    args = parser.parse_args(argv)
    only = {name for item in args.only or [",".join(SCENARIOS)] for name in item.split(",")}
    only.discard("")
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.only = only
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be >= 1")
    return args


# ------------------------------------------------------------------------ running
def run_in_process(python: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``inprocess.py`` with ``python`` in a fresh process and return its JSON."""
    only = sorted(args.only & IN_PROCESS)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [python, str(BENCH_DIR / "inprocess.py"), "--out", str(out)]
        command += ["--only", ",".join(only)]
        if args.quick:
            command.append("--quick")
        if args.repeat:
            command += ["--rounds", str(args.repeat)]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        subprocess.run(command, cwd=BENCH_DIR, env=env, check=True, timeout=1800)
        data: dict[str, Any] = json.loads(out.read_text())
    return data


def flatten(groups: dict[str, Series]) -> dict[str, list[float]]:
    """``{"memory": {"lib": [...]}}`` -> ``{"memory.lib": [...]}``."""
    return {
        f"{group}.{key}": values
        for group, series in groups.items()
        for key, values in series.items()
    }


def add_server_series(
    target: dict[str, dict[str, list[float]] | None], group: str, by_label: dict[str, Series]
) -> None:
    """Server scenarios measure ``ours``, ``original`` and ``naive`` side by side; each
    implementation's namespace gets its own figures as ``lib`` and the shared ``naive`` ones."""
    naive = by_label.get("naive", {})
    for impl in report.IMPLS:
        namespace = target.get(impl)
        if namespace is None or impl not in by_label:
            continue
        for metric, values in by_label[impl].items():
            namespace[f"{group}.lib:{metric}"] = values
        for metric, values in naive.items():
            namespace[f"{group}.naive:{metric}"] = values


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    quick = args.quick
    server_rounds = args.repeat or (1 if quick else 5)
    pythons: dict[str, str | None] = {"ours": sys.executable, "original": None}
    unavailable: dict[str, str] = {}
    original_message = "skipped (--no-original)"
    if not args.no_original:
        log("== fastapi-tasks 0.1.0 virtualenv")
        pythons["original"], original_message = original_env.ensure_original_env(log)
        log(f"   {original_message}")
        if pythons["original"] is None:
            log(f"   !! the original library is unavailable: {original_message}")
    if pythons["original"] is None:
        unavailable["original"] = "skipped" if args.no_original else "unavailable"

    series: dict[str, dict[str, list[float]] | None] = {impl: None for impl in report.IMPLS}
    impl_info: dict[str, Any] = {}
    if args.only & IN_PROCESS:
        for impl, python in pythons.items():
            if python is None:
                continue
            log(f"== in-process scenarios: {impl} ({python})")
            try:
                data = run_in_process(python, args)
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                log(f"   !! in-process run of {impl} failed: {exc}")
                unavailable[impl] = "in-process run failed"
                continue
            series[impl] = flatten(data["series"])
            impl_info[impl] = {k: data[k] for k in ("impl", "python", "sizes", "seconds")}
    for impl, python in pythons.items():
        if python is not None and series[impl] is None:
            series[impl] = {}

    specs = [
        servers.ServerSpec("ours", sys.executable, "lib"),
        servers.ServerSpec("naive", sys.executable, "naive"),
    ]
    if pythons["original"] is not None:
        specs.insert(1, servers.ServerSpec("original", pythons["original"], "lib"))
    if "isolation" in args.only:
        log("== isolation of def endpoints (uvicorn)")
        sizes = servers.IsolationSizes(
            pings=150 if quick else 300, load_tasks=200, load_seconds=0.25 if quick else 0.5
        )
        by_label = servers.isolation(specs, sizes, server_rounds, lambda m: log(f"   {m}"))
        add_server_series(series, "isolation", by_label)
        impl_info["isolation_sizes"] = sizes.__dict__
    if "shutdown" in args.only:
        log("== shutdown (uvicorn)")
        shutdown_sizes = servers.ShutdownSizes()
        by_label = servers.shutdown(specs, shutdown_sizes, server_rounds, lambda m: log(f"   {m}"))
        add_server_series(series, "shutdown", by_label)
        impl_info["shutdown_sizes"] = shutdown_sizes.__dict__

    if "controls" in args.only:  # this repository's library only: 0.1.0 has no controls
        import controls_overhead

        log("== controls: what tasks without timeouts, retries and limits pay for them")
        report.ROWS.extend(controls_overhead.ROWS)
        tasks, rounds = (5_000, 2) if quick else (20_000, 5)
        measured = anyio.run(controls_overhead.measure, tasks, args.repeat or rounds)
        series["ours"] = {**(series["ours"] or {}), **flatten(measured)}

    rows = report.build_rows(series, unavailable)
    return {
        "meta": metadata(args, time.perf_counter() - started, original_message),
        "implementations": impl_info,
        "labels": labels(impl_info),
        "rows": rows,
        "series": series,
    }


# ------------------------------------------------------------------------ describing
def labels(impl_info: dict[str, Any]) -> dict[str, str]:
    ours = impl_info.get("ours", {}).get("impl", {}).get("version")
    if ours is None:
        try:
            ours = importlib.metadata.version("fastapi-tasks")
        except importlib.metadata.PackageNotFoundError:
            ours = "?"
    return {"ours": f"this repo ({ours})", "original": f"PyPI {original_env.ORIGINAL_VERSION}"}


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        return ""


def metadata(args: argparse.Namespace, seconds: float, original_message: str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    argv = " ".join(sys.argv[1:])
    commit = _command_output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = _command_output(["git", "-C", str(REPO_DIR), "status", "--porcelain", "fastapi_tasks"])
    return {
        "commit": f"{commit}{' + uncommitted changes in fastapi_tasks/' if dirty else ''}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"python benchmarks/run.py {argv}".strip(),
        "seconds": round(seconds, 1),
        "quick": args.quick,
        "nproc": _command_output(["nproc"]) or str(os.cpu_count()),
        "lscpu": "\n".join(_command_output(["lscpu"]).splitlines()[:10]),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "original": original_message,
    }


def results_markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    packages = ", ".join(f"{k} {v}" for k, v in meta["packages"].items())
    cpu = re.search(r"Model name:\s*(.+)", meta["lscpu"])
    lines = [
        f"Measured {meta['date']} at commit {meta['commit'] or 'unknown'} with "
        f"`{meta['command']}` ({meta['seconds']} s): "
        f"{meta['nproc']} CPUs ({cpu.group(1) if cpu else 'unknown CPU'}), "
        f"Python {meta['python']}, {packages}. fastapi-tasks {original_env.ORIGINAL_VERSION}: "
        f"{meta['original']}.",
        "",
        "**Targets**",
        "",
        report.summary_markdown(result["rows"], result["labels"]),
        "",
        "**All figures**",
        "",
        report.markdown(result["rows"], result["labels"]),
        "",
        "Figures are medians over rounds; ratios are medians of per-round ratios to the "
        "baseline measured in the same round. ✅/❌: target met or missed. The 0.1.0 column "
        "is measured against its own baselines, taken in its own process (in-process "
        "scenarios) or side by side with this repo's server (uvicorn scenarios).",
    ]
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], args: argparse.Namespace) -> int:
    rows: list[report.Row] = result["rows"]
    print()
    print(report.text(rows, result["labels"]))
    print()
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    serializable = dict(result, rows=[row.to_dict() for row in rows])
    (out / "results.json").write_text(json.dumps(serializable, indent=1) + "\n")
    body = results_markdown(result)
    (out / "results.md").write_text(body + "\n")
    log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    png = out / "results.png"
    drawn = False
    if args.chart:
        problem = report.chart(rows, result["labels"], png)
        if problem:
            log(f"!! {problem}")
        else:
            drawn = True
            log(f"wrote {png}")
    if args.docs:
        update_docs(body, png if drawn else None)
    missed = [
        row.spec.figure
        for row in rows
        if row.cells[report.IMPLS[0]].met is False and row.spec.target is not None
    ]
    if missed:
        log("targets missed by this repo's library:\n  - " + "\n  - ".join(missed))
    return 1 if args.check and missed else 0


def update_docs(body: str, png: Path | None) -> None:
    """Replace the text between the results markers in the README (the docs page includes
    ``benchmarks/results.md`` itself) and copy the chart next to the docs page."""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    for path in (BENCH_DIR / "README.md",):
        if not path.exists():
            continue
        content = path.read_text()
        if start not in content or end not in content:
            log(f"!! {path} has no results markers; not updated")
            continue
        head, rest = content.split(start, 1)
        _, tail = rest.split(end, 1)
        path.write_text(f"{head}{start}\n{body}\n{end}{tail}")
        log(f"updated {path.relative_to(REPO_DIR)}")
    if png is not None:
        target = REPO_DIR / "docs" / "img" / "benchmarks.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        log(f"updated {target.relative_to(REPO_DIR)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    return write_outputs(result, args)


if __name__ == "__main__":
    sys.exit(main())
