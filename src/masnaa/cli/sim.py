"""``masnaa sim``: replay a trace through the scheduler core under several policies.

Owns the one verb ``sim``. It loads a trace (``--trace`` names a loader),
slices it, sizes the cluster (``--load`` or ``--gpus``), replays it once per
policy (``--repeat N``: N times, on jittered copies after the first), as many
replays at once as there are CPU cores (``--workers``), and prints a
side-by-side table (``--by-tenant``: and one per tenant); ``--json`` and
``--plots`` write the full report. Exit codes: 0 done; 2 bad input (unknown
policy or trace, a malformed trace line, a bad option), with the valid choices
named; 3 an invariant of the scheduler was broken during the replay (a bug).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from masnaa.cli.replay_options import (
    CheckpointOpt,
    DaysOpt,
    FileOpt,
    JobsOpt,
    JsonOpt,
    KnobOpt,
    LenientOpt,
    LimitOpt,
    PassIntervalOpt,
    QuietOpt,
    RestartOpt,
    SeedOpt,
    StartOpt,
    TenantsOpt,
    TimezoneOpt,
    TraceOpt,
    check_output,
    engine_config,
    input_errors,
    load_sliced,
    progress_bars,
    warn_skipped,
)

DEFAULT_POLICIES = "masnaa,las,fifo-backfill,srtf-oracle"


def sim(
    policy: Annotated[str, typer.Option(
        "--policy", "-p", help="Comma-separated policies to compare.")] = DEFAULT_POLICIES,
    trace: TraceOpt = "philly",
    file: FileOpt = None,
    load: Annotated[float | None, typer.Option(
        help="Size the cluster (whole nodes) for this mean load factor, never smaller than "
        "the largest job. Default 0.9. synthetic: also the load its arrivals aim at.")] = None,
    gpus: Annotated[int | None, typer.Option(
        help="Fix the cluster size in GPUs instead (synthetic: the cluster the trace is "
        "made for, its largest gang; default 1,024).")] = None,
    limit: LimitOpt = None,
    start: StartOpt = 0.0,
    days: DaysOpt = None,
    jobs: JobsOpt = 10_000,
    seed: SeedOpt = 0,
    tenants: TenantsOpt = 12,
    timezone: TimezoneOpt = "UTC",
    lenient: LenientOpt = False,
    checkpoint_interval: CheckpointOpt = 1800.0,
    restart_overhead: RestartOpt = 60.0,
    pass_interval: PassIntervalOpt = 0.0,
    knob: KnobOpt = None,
    repeat: Annotated[int, typer.Option(
        help="Replay each policy N times: the plain trace, then N−1 copies with submit times "
        "jittered by up to --jitter seconds; prints each key metric's mean and range.")] = 1,
    jitter: Annotated[float, typer.Option(
        help="With --repeat: the most seconds a submission is moved.")] = 60.0,
    json_out: JsonOpt = None,
    plots: Annotated[Path | None, typer.Option(
        help="Write PNG plots (JCT CDF, utilisation, per-tenant share) to this directory.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Replays run at once, each in its own process (default: one per CPU core, up to "
        "the number of replays; 1: one after another in this process).")] = None,
    by_tenant: Annotated[bool, typer.Option(
        "--by-tenant", help="Also print each tenant's mean JCT and fair ratio per policy: "
        "which tenants a difference between policies comes from.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Replay a trace under each policy and compare them side by side."""
    from masnaa.sim.compare import check_policies, check_repeats, check_workers, compare
    from masnaa.sim.errors import InvariantViolation, SimError
    from masnaa.sim.loaders import SYNTHETIC_GPUS
    from masnaa.sim.parallel import available_cpus
    from masnaa.sim.report import roomy_note, spread_table, table, tenant_table, write_json
    from masnaa.sim.shape import check_gpus, check_load, size_for

    console = Console()
    err = Console(stderr=True)
    names = [p.strip() for p in policy.split(",") if p.strip()]
    with input_errors(err):
        check_policies(names)
        if gpus is not None:
            check_gpus("--gpus", gpus)
        if load is not None:
            check_load(load)
        if load is not None and gpus is not None and trace != "synthetic":
            raise SimError(
                "bad-option",
                "give either --load or --gpus, not both (both only for --trace synthetic: "
                "the load its arrivals offer on that many GPUs)",
            )
        check_repeats(repeat, jitter)  # before the trace loads
        check_output(json_out, "--json")
        check_output(plots, "--plots", directory=True)
        if workers is not None:
            check_workers(workers)
        processes = workers or min(available_cpus(), len(names) * repeat)
        capacity = gpus if gpus is not None else SYNTHETIC_GPUS
        target = load if load is not None else 0.9
        loaded = load_sliced(
            trace, file, lenient=lenient, seed=seed, jobs=jobs, tenants=tenants,
            capacity_gpus=capacity, target_load=target, start=start, days=days, limit=limit,
            timezone=timezone,
        )
        # A synthetic trace with --gpus is made for and replayed on that cluster; without,
        # it is made for SYNTHETIC_GPUS and sized for the load like any trace.
        sizing = size_for(loaded, load=None if gpus is not None else target, gpus=gpus)
        cfg = engine_config(names, knob, checkpoint_interval, restart_overhead, pass_interval)

    warn_skipped(err, loaded)
    try:
        with progress_bars(err, len(loaded), quiet) as factory:
            doc = compare(
                loaded, names, sizing, cfg, progress=factory, repeats=repeat, jitter=jitter,
                workers=processes,
            )
    except InvariantViolation as e:
        err.print(f"[red]invariant broken[/red] \\[{e.code}] {escape(e.message)}")
        raise typer.Exit(3) from None

    console.print(table(doc))
    built = doc["cluster"]["gpus"]
    if gpus is not None and sizing.gpus > gpus:
        err.print(f"[yellow]note[/yellow]: {gpus:,} GPUs asked, {sizing.gpus:,} replayed: the "
                  f"cluster is whole nodes of {cfg.gpus_per_node}")
    if built > sizing.gpus:
        err.print(
            f"[yellow]note[/yellow]: {sizing.gpus:,} GPUs asked, {built:,} replayed: each of "
            "the trace's GPU types and sites gets nodes of its own, enough for the largest "
            "job that may run only there"
        )
    note = roomy_note(doc)
    if note is not None:
        err.print(f"[yellow]note[/yellow]: {note}")
    if by_tenant:
        console.print(tenant_table(doc))
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
