"""Turn per-round measurements into the results table (text, Markdown, JSON rows, chart).

Every figure is the median over rounds; every ratio is the median of the per-round ratios
``subject / baseline`` (both measured in the same round of the same run). A row's target is
either on that ratio or on the raw figure (seconds to exit, number of side effects).
"""

from __future__ import annotations

import importlib
import math
import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "IMPLS",
    "ROWS",
    "Cell",
    "Row",
    "RowSpec",
    "build_rows",
    "chart",
    "markdown",
    "summary_markdown",
    "text",
]

#: Column order: this repository's library, then the original from PyPI.
IMPLS = ("ours", "original")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    op: str  # ">=", "<=" or "<"
    value: float
    on: str = "ratio"  # "ratio" or "value"

    def met(self, ratio: float | None, value: float | None) -> bool | None:
        figure = ratio if self.on == "ratio" else value
        if figure is None or math.isnan(figure):
            return None
        return _OPS[self.op](figure, self.value)

    def describe(self, unit: str) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        if self.on == "ratio":
            return f"{op} {self.value:g}x"
        return f"{op} {fmt_value(self.value, unit)}"


@dataclass(frozen=True)
class RowSpec:
    scenario: str
    figure: str
    unit: str  # how to print the raw figure: req/s, us, ms, s, B, tasks/s, count
    subject: str  # series key of the measured figure
    baseline: str | None = None  # series key of the same-round baseline
    baseline_label: str = ""
    target: Target | None = None
    #: Measured once for all columns (a no-library contrast): shown in the first column only.
    shared: bool = False
    #: ``(series key, minimum)``: the row is invalid when that figure's median is lower.
    requires: tuple[str, float] | None = None
    #: Shown when invalid; ``{got}`` and ``{minimum}`` are filled in.
    requires_note: str = "invalid"


def _sched_rows(transport: str, label: str) -> list[RowSpec]:
    group = f"sched_{transport}"
    scenario = f"1. Scheduling overhead, {label}"
    return [
        RowSpec(
            scenario,
            "10 async tasks per request: `Tasks` vs `BackgroundTasks`",
            "req/s",
            f"{group}.lib_tasks10",
            f"{group}.bg10",
            "BackgroundTasks x10",
            Target(">=", 0.8),
        ),
        RowSpec(
            scenario,
            "10 async tasks per request: `Tasks` vs the ceiling below",
            "req/s",
            f"{group}.lib_tasks10",
            f"{group}.ceiling10",
            "ceiling x10",
        ),
        RowSpec(
            scenario,
            "ceiling: a dependency + `loop.create_task` per task (no accounting) vs "
            "`BackgroundTasks`",
            "req/s",
            f"{group}.ceiling10",
            f"{group}.bg10",
            "BackgroundTasks x10",
            shared=True,
        ),
        RowSpec(
            scenario,
            "`Tasks` injected, nothing scheduled, vs bare endpoint",
            "req/s",
            f"{group}.lib_inject0",
            f"{group}.bare",
            "bare endpoint",
        ),
        RowSpec(
            scenario,
            "bare endpoint on an app with `add_tasks` vs without",
            "req/s",
            f"{group}.lib_bare",
            f"{group}.bare",
            "bare endpoint",
        ),
        RowSpec(
            scenario,
            "reference: `BackgroundTasks` x10 vs bare endpoint (no library)",
            "req/s",
            f"{group}.bg10",
            f"{group}.bare",
            "bare endpoint",
        ),
    ]


ROWS: list[RowSpec] = [
    *_sched_rows("httpx", "httpx ASGITransport"),
    *_sched_rows("raw", "raw ASGI calls"),
    RowSpec(
        "1. Scheduling overhead, one call",
        "`schedule()` call vs anyio `TaskGroup.start_soon`",
        "us",
        "schedule_cost.lib:call_us",
        "schedule_cost.anyio:call_us",
        "start_soon",
    ),
    RowSpec(
        "1. Scheduling overhead, one call",
        "`schedule()` call vs asyncio `create_task`",
        "us",
        "schedule_cost.lib:call_us",
        "schedule_cost.asyncio:call_us",
        "create_task",
    ),
    RowSpec(
        "1. Scheduling overhead, one call",
        "per task, scheduled and run, vs anyio `start_soon`",
        "us",
        "schedule_cost.lib:total_us",
        "schedule_cost.anyio:total_us",
        "start_soon",
    ),
    RowSpec(
        "1. Scheduling overhead, one call",
        "per task, scheduled and run, vs asyncio `create_task`",
        "us",
        "schedule_cost.lib:total_us",
        "schedule_cost.asyncio:total_us",
        "create_task",
    ),
    RowSpec(
        "1. Scheduling overhead, one call",
        "loop held by a 100,000-step follow-up chain vs asyncio `create_task`",
        "ms",
        "loop_hold.lib:max_gap_ms",
        "loop_hold.asyncio:max_gap_ms",
        "create_task chain",
    ),
    RowSpec(
        "2. Isolation of `def` endpoints (uvicorn)",
        "p99 latency under 200 queued sync tasks vs idle p99",
        "ms",
        "isolation.lib:load_p99",
        "isolation.lib:idle_p99",
        "idle p99, same server",
        Target("<=", 1.5),
        requires=("isolation.lib:load_outstanding_after", 1),
        requires_note="invalid: the load was over before the last ping",
    ),
    RowSpec(
        "2. Isolation of `def` endpoints (uvicorn)",
        "p50 latency under load vs idle p50",
        "ms",
        "isolation.lib:load_p50",
        "isolation.lib:idle_p50",
        "idle p50, same server",
    ),
    RowSpec(
        "2. Isolation of `def` endpoints (uvicorn)",
        "contrast, no library: the load on anyio's default pool, p99 vs idle p99",
        "ms",
        "isolation.naive:load_p99",
        "isolation.naive:idle_p99",
        "idle p99, same server",
        shared=True,
    ),
    RowSpec(
        "3. Sync throughput",
        "2,000 trivial sync tasks vs raw `to_thread.run_sync` + `CapacityLimiter(40)`",
        "tasks/s",
        "sync_throughput.lib",
        "sync_throughput.raw",
        "raw to_thread.run_sync",
        Target(">=", 0.9),
    ),
    RowSpec(
        "4. Shutdown (uvicorn, SIGTERM to exit)",
        "idle server vs no-library server",
        "s",
        "shutdown.lib:idle_exit_s",
        "shutdown.naive:idle_exit_s",
        "no-library server, idle",
    ),
    RowSpec(
        "4. Shutdown (uvicorn, SIGTERM to exit)",
        "10,000 sleeping unshielded async tasks",
        "s",
        "shutdown.lib:unshielded:exit_s",
        "shutdown.naive:unshielded:exit_s",
        "task group in lifespan, same tasks",
        Target("<", 1.0, on="value"),
        requires=("shutdown.lib:unshielded:started", 10_000),
        requires_note="invalid: only {got:.0f}/{minimum:.0f} tasks started before SIGTERM",
    ),
    RowSpec(
        "4. Shutdown (uvicorn, SIGTERM to exit)",
        "5 shielded tasks of 1 s each",
        "s",
        "shutdown.lib:shielded:exit_s",
        "shutdown.naive:shielded:exit_s",
        "task group in lifespan, CancelScope(shield=True)",
        Target("<=", 1.3, on="value"),
    ),
    RowSpec(
        "4. Shutdown (uvicorn, SIGTERM to exit)",
        "shielded side effects present after exit (of 5)",
        "count",
        "shutdown.lib:shielded:side_effects",
        target=Target(">=", 5, on="value"),
    ),
    RowSpec(
        "4. Shutdown (uvicorn, SIGTERM to exit)",
        "exit after the last shielded task finished",
        "s",
        "shutdown.lib:shielded:exit_after_last_task_s",
        "shutdown.naive:shielded:exit_after_last_task_s",
        "task group in lifespan",
    ),
    RowSpec(
        "4. Shutdown, in-process drain",
        "lifespan exit with 10k sleeping async + 1,000 sync tasks (40 running)",
        "s",
        "drain.lib",
        "drain.raw",
        "task group in lifespan, same tasks",
    ),
    RowSpec(
        "5. Memory",
        "bytes per pending async task (10,000 waiting on one Event)",
        "B",
        "memory.lib",
        "memory.raw",
        "TaskGroup.start_soon",
        Target("<=", 1.25),
    ),
]


#: Short names of the scenarios, for the chart and the summary table.
TAGS = {
    "1. Scheduling overhead, httpx ASGITransport": "Scheduling, httpx",
    "1. Scheduling overhead, raw ASGI calls": "Scheduling, raw ASGI",
    "1. Scheduling overhead, one call": "Per call",
    "2. Isolation of `def` endpoints (uvicorn)": "Isolation",
    "3. Sync throughput": "Sync throughput",
    "4. Shutdown (uvicorn, SIGTERM to exit)": "Shutdown, uvicorn",
    "4. Shutdown, in-process drain": "Shutdown, in-process",
    "5. Memory": "Memory",
}


def tag(spec: RowSpec) -> str:
    return TAGS.get(spec.scenario, spec.scenario)


@dataclass
class Cell:
    value: float | None = None
    baseline: float | None = None
    ratio: float | None = None
    met: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Row:
    spec: RowSpec
    cells: dict[str, Cell]

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "scenario": spec.scenario,
            "figure": spec.figure,
            "unit": spec.unit,
            "subject": spec.subject,
            "baseline": spec.baseline,
            "baseline_label": spec.baseline_label,
            "target": spec.target.describe(spec.unit) if spec.target else None,
            "shared": spec.shared,
            "cells": {impl: cell.to_dict() for impl, cell in self.cells.items()},
        }


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _cell(spec: RowSpec, series: dict[str, list[float]] | None, unavailable: str) -> Cell:
    if series is None:
        return Cell(note=unavailable)
    subject = series.get(spec.subject)
    if not subject:
        return Cell(note="not run")
    cell = Cell(value=_median(subject))
    base = series.get(spec.baseline) if spec.baseline else None
    if base:
        cell.baseline = _median(base)
        ratios = [s / b for s, b in zip(subject, base, strict=False) if b]
        cell.ratio = _median(ratios)
    if spec.requires is not None:
        key, minimum = spec.requires
        got = _median(series.get(key))
        if got is None or got < minimum:
            cell.note = spec.requires_note.format(got=got or 0, minimum=minimum)
            cell.met = False
            return cell
    if spec.target is not None:
        cell.met = spec.target.met(cell.ratio, cell.value)
    return cell


def build_rows(
    series_by_impl: dict[str, dict[str, list[float]] | None], unavailable: dict[str, str]
) -> list[Row]:
    """``series_by_impl[impl]`` is ``None`` when that implementation could not run."""
    rows = []
    for spec in ROWS:
        cells = {}
        for impl in IMPLS:
            if spec.shared and impl != IMPLS[0]:
                cells[impl] = Cell(note="same as left")
                continue
            cells[impl] = _cell(spec, series_by_impl.get(impl), unavailable.get(impl, "n/a"))
        if any(cell.value is not None for cell in cells.values()):
            rows.append(Row(spec, cells))
    return rows


# ------------------------------------------------------------------------ formatting
def fmt_value(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "—"
    if unit == "ms":
        return f"{value * 1000:.2f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "us":
        return f"{value:.2f} µs"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "count":
        return f"{value:.0f}"
    return f"{value:,.0f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x"


def _mark(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: ""}[met]


def _cell_text(cell: Cell, unit: str) -> tuple[str, str]:
    value = fmt_value(cell.value, unit) if cell.value is not None else ""
    if cell.note:
        value = f"{value} ({cell.note})" if value else cell.note
    return value, fmt_ratio(cell.ratio)


def table(rows: list[Row], labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["Scenario", "Figure", "Baseline (same run)", "Target"]
    for impl in IMPLS:
        header += [labels[impl], "ratio", ""]
    body = []
    for row in rows:
        spec = row.spec
        first = row.cells[IMPLS[0]]
        baseline = ""
        if spec.baseline:
            baseline = f"{spec.baseline_label}: {fmt_value(first.baseline, spec.unit)}"
        line = [
            spec.scenario,
            spec.figure,
            baseline,
            spec.target.describe(spec.unit) if spec.target else "",
        ]
        for impl in IMPLS:
            cell = row.cells[impl]
            value, ratio = _cell_text(cell, spec.unit)
            line += [value, ratio, _mark(cell.met)]
        body.append(line)
    return header, body


def summary_markdown(rows: list[Row], labels: dict[str, str]) -> str:
    """The rows that carry a target, in four columns (short enough for a README)."""
    lines = [
        f"| Claim | Target | {labels[IMPLS[0]]} | {labels[IMPLS[1]]} |",
        "|---|---|---|---|",
    ]
    for row in rows:
        spec = row.spec
        if spec.target is None:
            continue
        cells = []
        for impl in IMPLS:
            cell = row.cells[impl]
            value, ratio = _cell_text(cell, spec.unit)
            shown = ratio if spec.target.on == "ratio" and ratio else value
            cells.append(f"{shown} {_mark(cell.met)}".strip())
        claim = f"{tag(spec)}: {spec.figure}"
        lines.append(f"| {claim} | {spec.target.describe(spec.unit)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def markdown(rows: list[Row], labels: dict[str, str]) -> str:
    header, body = table(rows, labels)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in body:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
    return "\n".join(lines)


def text(rows: list[Row], labels: dict[str, str]) -> str:
    """A plain-text table for the terminal (scenario printed once per group)."""
    header, body = table(rows, labels)
    header = header[1:]
    widths = [len(h) for h in header]
    trimmed = [line[1:] for line in body]
    for line in trimmed:
        widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    out, last_scenario = [], None
    rule = "  ".join("-" * w for w in widths)
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    out.append(rule)
    for full, line in zip(body, trimmed, strict=True):
        if full[0] != last_scenario:
            out.append(f"[{full[0].replace('`', '')}]")
            last_scenario = full[0]
        out.append(
            "  ".join(c.replace("`", "").ljust(w) for c, w in zip(line, widths, strict=True))
        )
    return "\n".join(out)


def chart(rows: list[Row], labels: dict[str, str], path: Path) -> str | None:
    """Draw the ratios (log scale) with their targets. Returns an error message if matplotlib
    is not installed (it is an optional dependency), else ``None``."""
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart drawn"
    plotted = [row for row in rows if any(c.ratio for c in row.cells.values())]
    names = [f"{tag(row.spec)}: {row.spec.figure}".replace("`", "") for row in plotted]
    fig, ax = plt.subplots(figsize=(12, 0.42 * len(plotted) + 1.6))
    height = 0.38
    colors = {"ours": "#2a7ab0", "original": "#c9a227", "shared": "#8c8c8c"}
    for offset, impl in zip((-height / 2, height / 2), IMPLS, strict=True):
        for i, row in enumerate(plotted):
            ratio = row.cells[impl].ratio
            if not ratio:
                continue
            color = colors["shared" if row.spec.shared else impl]
            ax.barh(i + offset, ratio, height=height, color=color)
            ax.annotate(
                fmt_ratio(ratio),
                (ratio, i + offset),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    patch = importlib.import_module("matplotlib.patches").Patch
    line = importlib.import_module("matplotlib.lines").Line2D
    handles = [patch(color=colors[impl], label=labels[impl]) for impl in IMPLS]
    handles.append(patch(color=colors["shared"], label="no library (contrast)"))
    handles.append(line([], [], color="#c0392b", linewidth=2, label="target"))
    for i, row in enumerate(plotted):
        target = row.spec.target
        if target is not None and target.on == "ratio":
            ax.plot([target.value] * 2, [i - 0.45, i + 0.45], color="#c0392b", linewidth=2)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yticks(range(len(plotted)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "ratio to the same-run baseline (log scale, 1.0 = same as baseline)\n"
        "higher is better for req/s and tasks/s; lower is better for µs, latency, seconds, bytes"
    )
    ax.set_title("fastapi-tasks benchmarks: medians of per-round ratios")
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
