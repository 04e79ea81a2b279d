"""``masnaa sim``: replay a trace through the scheduler core under several policies.

Owns the one verb ``sim``. It loads a trace (``--trace`` names a loader),
slices it, sizes the cluster (``--load`` or ``--gpus``), replays it once per
policy (``--repeat N``: N times, on jittered copies after the first), as many
replays at once as there are CPU cores (``--workers``), and prints
a side-by-side table; ``--json`` and ``--plots`` write the full report. Exit
codes: 0 done; 2 bad input (unknown policy or trace, a malformed trace line, a
bad option), with the valid choices named; 3 an invariant of the scheduler was
broken during the replay (a bug).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_POLICIES = "masnaa,las,fifo-backfill,srtf-oracle"


def sim(
    policy: Annotated[str, typer.Option(
        "--policy", "-p", help="Comma-separated policies to compare.")] = DEFAULT_POLICIES,
    trace: Annotated[str, typer.Option(
        help="Trace loader: philly (bundled), csv, sacct, synthetic.")] = "philly",
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Trace file for csv/sacct (or another Philly-format file).")] = None,
    load: Annotated[float | None, typer.Option(
        help="Size the cluster (whole nodes) for this mean load factor. Default 0.9.")] = None,
    gpus: Annotated[int | None, typer.Option(help="Fix the cluster size in GPUs instead.")] = None,
    limit: Annotated[int | None, typer.Option(help="Replay only the first N jobs.")] = None,
    start: Annotated[float, typer.Option(help="Skip the first D days of the trace.")] = 0.0,
    days: Annotated[float | None, typer.Option(help="Replay only D days from --start.")] = None,
    jobs: Annotated[int, typer.Option(help="synthetic: number of jobs.")] = 10_000,
    seed: Annotated[int, typer.Option(help="synthetic: random seed.")] = 0,
    tenants: Annotated[int, typer.Option(help="synthetic: number of tenants.")] = 12,
    lenient: Annotated[bool, typer.Option(
        help="Skip malformed trace lines (counted and listed) instead of stopping.")] = False,
    checkpoint_interval: Annotated[float, typer.Option(
        help="Seconds of work between checkpoints; 0 = a preempted job restarts from zero."
    )] = 1800.0,
    restart_overhead: Annotated[float, typer.Option(
        help="Seconds a restarted job spends loading its checkpoint.")] = 60.0,
    pass_interval: Annotated[float, typer.Option(
        help="Least virtual seconds between scheduling passes (0: after every event).")] = 0.0,
    knob: Annotated[list[str] | None, typer.Option(
        "--knob", help="Set a scheduler knob for every policy that reads it, as NAME=VALUE "
        "(repeatable), e.g. --knob short_first_in_tenant=true; docs/scheduler.md lists them."
    )] = None,
    repeat: Annotated[int, typer.Option(
        help="Replay each policy N times: the plain trace, then N−1 copies with submit times "
        "jittered by up to --jitter seconds; prints each key metric's mean and range.")] = 1,
    jitter: Annotated[float, typer.Option(
        help="With --repeat: the most seconds a submission is moved.")] = 60.0,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write every metric of every policy to this JSON file.")] = None,
    plots: Annotated[Path | None, typer.Option(
        help="Write PNG plots (JCT CDF, utilisation, per-tenant share) to this directory.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Replays run at once, each in its own process (default: one per CPU core, up to "
        "the number of replays; 1: one after another in this process).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Replay a trace under each policy and compare them side by side."""
    from masnaa.scheduler import SchedulerConfig
    from masnaa.scheduler.config import knob as parse_knob
    from masnaa.sim.compare import check_policies, check_repeats, check_workers, compare
    from masnaa.sim.engine import EngineConfig
    from masnaa.sim.errors import InvariantViolation, SimError, TraceError
    from masnaa.sim.loaders import TraceSource, load_trace
    from masnaa.sim.parallel import available_cpus
    from masnaa.sim.report import spread_table, table, write_json
    from masnaa.sim.shape import size_for

    console = Console()
    err = Console(stderr=True)
    names = [p.strip() for p in policy.split(",") if p.strip()]
    try:
        check_policies(names)
        if load is not None and gpus is not None:
            raise SimError("bad-option", "give either --load or --gpus, not both")
        check_repeats(repeat, jitter)  # before the trace loads
        if workers is not None:
            check_workers(workers)
        processes = workers or min(available_cpus(), len(names) * repeat)
        source = TraceSource(
            path=file, lenient=lenient, seed=seed, jobs=jobs,
            capacity_gpus=gpus or 1024, target_load=load or 0.8, tenants=tenants,
        )
        loaded = load_trace(trace, source)
        if start or days is not None or limit is not None:
            loaded = loaded.slice(start_days=start, days=days, limit=limit)
        sizing = size_for(loaded, load=None if gpus else (load or 0.9), gpus=gpus)
        try:
            knobs = tuple(parse_knob(k) for k in knob or ())
            given: dict[str, Any] = dict(knobs)
            for name in names:  # range errors now, not after a long replay
                SchedulerConfig(policy=name, **given)
        except ValueError as e:
            raise SimError("bad-knob", str(e)) from None
        cfg = EngineConfig(
            checkpoint_interval=checkpoint_interval or None,
            restart_overhead=restart_overhead,
            min_pass_interval=pass_interval,
            knobs=knobs,
        )
    except TraceError as e:
        err.print(f"[red]error[/red] \\[{e.code}] {escape(e.message)}")
        if e.code == "malformed-line":
            err.print("Fix the line, or pass --lenient to skip and count malformed lines.")
        raise typer.Exit(2) from None
    except SimError as e:
        err.print(f"[red]error[/red] \\[{e.code}] {escape(e.message)}")
        raise typer.Exit(2) from None

    if loaded.skipped:
        err.print(f"[yellow]skipped {len(loaded.skipped)} malformed line(s)[/yellow], first: "
                  f"line {loaded.skipped[0].line}: {loaded.skipped[0].reason}")
    try:
        if quiet:
            doc = compare(loaded, names, sizing, cfg, repeats=repeat, jitter=jitter,
                          workers=processes)
        else:
            with Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}"
                "/{task.total:,} jobs"), TimeElapsedColumn(), console=err, transient=True,
            ) as bar:
                def factory(name: str) -> Callable[[int, int], None]:
                    # Started by its first report: a run may wait for a free worker.
                    task = bar.add_task(name, total=len(loaded), start=False)

                    def update(done: int, total: int) -> None:
                        bar.start_task(task)
                        bar.update(task, completed=done, total=total)
                    return update

                doc = compare(
                    loaded, names, sizing, cfg, progress=factory, repeats=repeat, jitter=jitter,
                    workers=processes,
                )
    except InvariantViolation as e:
        err.print(f"[red]invariant broken[/red] \\[{e.code}] {escape(e.message)}")
        raise typer.Exit(3) from None

    console.print(table(doc))
    spread = spread_table(doc)
    if spread is not None:
        console.print(spread)
    if json_out is not None:
        write_json(doc, json_out)
        console.print(f"wrote {json_out}")
    if plots is not None:
        from masnaa.sim.plots import write_plots

        for p in write_plots(doc, plots):
            console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)
