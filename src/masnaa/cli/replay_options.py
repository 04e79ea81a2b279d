"""What ``masnaa sim`` and ``masnaa plan`` share: the trace options and how they are read.

Owns the options that load and slice a trace and set up the twin (as ``Annotated``
types, so both verbs declare them alike), the reading of those options into a
``Trace`` and an ``EngineConfig``, the progress bars of replays, and how bad input
is reported (its code and sentence on stderr, exit code 2).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from masnaa.sim.records import EngineConfig
    from masnaa.sim.trace import Trace

TraceOpt = Annotated[str, typer.Option(
    help="Trace loader: philly (bundled), csv, sacct, synthetic.")]
FileOpt = Annotated[Path | None, typer.Option(
    "--file", "-f", help="Trace file for csv/sacct (or another Philly-format file).")]
LimitOpt = Annotated[int | None, typer.Option(help="Replay only the first N jobs.")]
StartOpt = Annotated[float, typer.Option(help="Skip the first D days of the trace.")]
DaysOpt = Annotated[float | None, typer.Option(help="Replay only D days from --start.")]
JobsOpt = Annotated[int, typer.Option(help="synthetic: number of jobs.")]
SeedOpt = Annotated[int, typer.Option(help="synthetic: random seed.")]
TenantsOpt = Annotated[int, typer.Option(help="synthetic: number of tenants.")]
TimezoneOpt = Annotated[str, typer.Option(
    help="csv/sacct: the IANA time zone of date-times written without one, e.g. "
    "Europe/Berlin (sacct prints local time; or run TZ=UTC sacct ...).")]
LenientOpt = Annotated[bool, typer.Option(
    help="Skip malformed trace lines (counted and listed) instead of stopping.")]
CheckpointOpt = Annotated[float, typer.Option(
    help="Seconds of work between checkpoints; 0 = a preempted job restarts from zero.")]
RestartOpt = Annotated[float, typer.Option(
    help="Seconds a restarted job spends loading its checkpoint.")]
PassIntervalOpt = Annotated[float, typer.Option(
    help="Least virtual seconds between scheduling passes (0: after every event).")]
KnobOpt = Annotated[list[str] | None, typer.Option(
    "--knob", help="Set a scheduler knob for every policy that reads it, as NAME=VALUE "
    "(repeatable), e.g. --knob short_first_in_tenant=true; docs/scheduler.md lists them.")]
JsonOpt = Annotated[Path | None, typer.Option(
    "--json", help="Write every metric of every replay to this JSON file.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]


@contextmanager
def input_errors(err: Console) -> Iterator[None]:
    """Bad input (an unknown name, a malformed line, a bad option): its code and
    sentence on stderr, and exit code 2."""
    from masnaa.sim.errors import SimError, TraceError

    try:
        yield
    except TraceError as e:
        err.print(f"[red]error[/red] \\[{e.code}] {escape(e.message)}")
        if e.code == "malformed-line":
            err.print("Fix the line, or pass --lenient to skip and count malformed lines.")
        raise typer.Exit(2) from None
    except SimError as e:
        err.print(f"[red]error[/red] \\[{e.code}] {escape(e.message)}")
        raise typer.Exit(2) from None


def check_output(path: Path | None, option: str, *, directory: bool = False) -> None:
    """Refuse an output that cannot be written before the replay, not after it: a long
    replay's result would otherwise be lost to a typo."""
    from masnaa.sim.errors import SimError

    if path is None:
        return
    kind = "a directory (created if missing)" if directory else "a file"
    if path.exists() and path.is_dir() != directory:
        found = "a file" if directory else "a directory"
        raise SimError("bad-option", f"{option} {path} is {found}: name {kind}")
    existing = path if path.exists() else next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir() and existing != path:
        raise SimError("bad-option", f"{option} {path}: {existing} is a file, so nothing can be "
                       f"written under it; name {kind}")
    if not os.access(existing, os.W_OK):
        raise SimError("bad-option", f"{option} {path}: {existing} is not writable by this user")


def load_sliced(
    name: str, file: Path | None, *, lenient: bool, seed: int, jobs: int, tenants: int,
    capacity_gpus: int, target_load: float, start: float, days: float | None, limit: int | None,
    timezone: str = "UTC",
) -> Trace:
    """The trace ``--trace`` names, cut to ``--start``/``--days``/``--limit``."""
    from masnaa.sim.loaders import TraceSource, load_trace

    source = TraceSource(
        path=file, lenient=lenient, seed=seed, jobs=jobs,
        capacity_gpus=capacity_gpus, target_load=target_load, tenants=tenants,
        timezone=timezone,
    )
    loaded = load_trace(name, source)
    if start or days is not None or limit is not None:
        loaded = loaded.slice(start_days=start, days=days, limit=limit)
    return loaded


def engine_config(
    policies: list[str], knobs: list[str] | None, checkpoint_interval: float,
    restart_overhead: float, pass_interval: float,
) -> EngineConfig:
    """The twin's settings, with every ``--knob`` checked for each policy before a replay."""
    from masnaa.scheduler import SchedulerConfig
    from masnaa.scheduler.config import knobs as parse_knobs
    from masnaa.sim.errors import SimError
    from masnaa.sim.records import EngineConfig

    try:
        parsed = parse_knobs(knobs or ())
        given: dict[str, Any] = dict(parsed)
        for name in policies:  # range errors now, not after a long replay
            SchedulerConfig(policy=name, **given)
    except ValueError as e:
        raise SimError("bad-knob", str(e)) from None
    try:
        return EngineConfig(
            checkpoint_interval=checkpoint_interval or None,
            restart_overhead=restart_overhead,
            min_pass_interval=pass_interval,
            knobs=parsed,
        )
    except ValueError as e:
        raise SimError("bad-option", str(e)) from None


IGNORED_WHY = {
    "job-step": "job steps (parts of a job)",
    "unfinished": "unfinished when the history was taken",
    "never-started": "never started",
    "no-runtime": "started but ran for no measurable time",
    "cpu-only": "without GPUs",
    "het-job-mixed": "heterogeneous jobs whose components differ in GPUs per node, GPU type "
    "or account (no one gang expresses them)",
}
"""How ``warn_skipped`` names each ``Trace.ignored`` reason (the loaders' docstrings
define them)."""


def warn_skipped(err: Console, loaded: Trace) -> None:
    """Say what of the file is not replayed: malformed lines (``--lenient``) and the
    lines a loader leaves out by rule, so that a history replayed is known whole."""
    if loaded.skipped:
        err.print(f"[yellow]skipped {len(loaded.skipped)} malformed line(s)[/yellow], first: "
                  f"line {loaded.skipped[0].line}: {loaded.skipped[0].reason}")
    if loaded.ignored:
        parts = ", ".join(
            f"{n:,} {IGNORED_WHY.get(reason, reason)}"
            for reason, n in sorted(loaded.ignored.items(), key=lambda kv: -kv[1])
        )
        err.print(f"[yellow]note[/yellow]: not replayed: {parts}")
    if loaded.notes.get("start-before-submit"):
        n = loaded.notes["start-before-submit"]
        err.print(f"[yellow]note[/yellow]: {n:,} job{'s' if n > 1 else ''} started before "
                  "submitted, as written: replayed, with the recorded start unknown (was the "
                  "history printed in another zone than --timezone? TZ=UTC sacct ... avoids it)")


@contextmanager
def progress_bars(
    err: Console, jobs: int, quiet: bool
) -> Iterator[Callable[[str], Callable[[int, int], None]] | None]:
    """A factory of one progress bar per replay (``None`` with ``quiet``)."""
    if quiet:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"
        "/{task.total:,} jobs"), TimeElapsedColumn(), console=err, transient=True,
    ) as bar:
        def factory(name: str) -> Callable[[int, int], None]:
            # Started by its first report: a run may wait for a free worker.
            task = bar.add_task(name, total=jobs, start=False)

            def update(done: int, total: int) -> None:
                bar.start_task(task)
                bar.update(task, completed=done, total=total)
            return update

        yield factory
