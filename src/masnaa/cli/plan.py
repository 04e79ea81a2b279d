"""``masnaa plan``: the smallest cluster on which each policy meets delay targets.

Owns the one verb ``plan``. It loads and slices a trace as ``masnaa sim`` does,
then replays it under each policy on clusters of whole nodes between
``--min-gpus`` and ``--max-gpus`` (by default the sizes of a mean load of 1 and
of 0.3), searching for the smallest that meets every ``--target``
(``sim.plan``). Each round of the searches replays as many sizes as there are
workers, side by side. It prints every size replayed and each policy's answer.
Exit codes: 0 every policy has an answer; 2 bad input; 3 an invariant of the
scheduler was broken (a bug); 4 under some policy even the largest size searched
misses a target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from masnaa.cli import replay_options as opts

NOT_MET = 4


def plan(
    target: Annotated[list[str], typer.Option(
        "--target", "-t", help="A delay bound every replay must meet, as METRIC<=DURATION "
        "(repeatable), e.g. 'queueing-p99<=24h'. Metrics: jct-mean, jct-median, jct-p99, "
        "queueing-mean, queueing-p99, queueing-max; units s, min, h, d.")],
    policy: Annotated[str, typer.Option(
        "--policy", "-p", help="Comma-separated policies to size the cluster for, each "
        "searched on its own.")] = "masnaa",
    min_gpus: Annotated[int | None, typer.Option(
        help="Smallest cluster to consider, in GPUs (default: a mean load of 1, or the "
        "largest job).")] = None,
    max_gpus: Annotated[int | None, typer.Option(
        help="Largest cluster to consider, in GPUs (default: a mean load of 0.3).")] = None,
    trace: opts.TraceOpt = "philly",
    file: opts.FileOpt = None,
    limit: opts.LimitOpt = None,
    start: opts.StartOpt = 0.0,
    days: opts.DaysOpt = None,
    jobs: opts.JobsOpt = 10_000,
    seed: opts.SeedOpt = 0,
    tenants: opts.TenantsOpt = 12,
    timezone: opts.TimezoneOpt = "UTC",
    lenient: opts.LenientOpt = False,
    checkpoint_interval: opts.CheckpointOpt = 1800.0,
    restart_overhead: opts.RestartOpt = 60.0,
    pass_interval: opts.PassIntervalOpt = 0.0,
    knob: opts.KnobOpt = None,
    workers: Annotated[int | None, typer.Option(
        help="Cluster sizes replayed at once in each round of the search, each in its own "
        "process (default: one per CPU core).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the search to this JSON file: the targets, the sizes searched "
        "and, per policy, each size replayed (GPUs, load factor, whether it met, rejected "
        "jobs, each target's figure, utilisation, mean JCT, p99 queueing, preemptions) and "
        "the answer. Not every metric: masnaa sim --gpus N --json gives those.")] = None,
    quiet: opts.QuietOpt = False,
) -> None:
    """Find the smallest cluster on which each policy meets delay targets, by replaying."""
    from masnaa.sim.compare import check_policies, check_workers
    from masnaa.sim.errors import InvariantViolation, SimError
    from masnaa.sim.loaders import SYNTHETIC_GPUS
    from masnaa.sim.parallel import available_cpus
    from masnaa.sim.plan import default_bounds, parse_target
    from masnaa.sim.plan import plan as search
    from masnaa.sim.report import load_text, write_json
    from masnaa.sim.shape import MAX_GPUS, check_gpus

    console = Console()
    err = Console(stderr=True)
    names = [p.strip() for p in policy.split(",") if p.strip()]
    with opts.input_errors(err):
        check_policies(names, repeatable=False)
        targets = [parse_target(t) for t in target]
        opts.check_output(json_out, "--json")
        if workers is not None:
            check_workers(workers)
        for name, value in (("--min-gpus", min_gpus), ("--max-gpus", max_gpus)):
            if value is not None:
                check_gpus(name, value)
        cfg = opts.engine_config(names, knob, checkpoint_interval, restart_overhead,
                                 pass_interval)
        gpn = cfg.gpus_per_node
        loaded = opts.load_sliced(
            trace, file, lenient=lenient, seed=seed, jobs=jobs, tenants=tenants,
            capacity_gpus=max_gpus or min_gpus or SYNTHETIC_GPUS, target_load=0.8,
            start=start, days=days, limit=limit, timezone=timezone,
        )
        if not len(loaded):
            raise SimError("bad-option", "the trace (after --start/--days/--limit) has no jobs")
        if min_gpus is None or max_gpus is None:
            low, high = default_bounds(loaded, gpn)
        if min_gpus is not None:
            low = math.ceil(min_gpus / gpn)
        if max_gpus is not None:
            high = math.ceil(max_gpus / gpn)
        else:  # a mean load of 0.3 may ask for more than the twin builds
            high = min(high, max(low, MAX_GPUS // gpn))
        if low * gpn > MAX_GPUS:
            raise SimError("bad-option", f"the smallest cluster to search ({low * gpn:,} GPUs) "
                           f"is larger than the {MAX_GPUS:,} the twin builds; give a slice")
        if low > high:
            raise SimError(
                "bad-option",
                f"the smallest cluster ({low * gpn} GPUs) is larger than the largest "
                f"({high * gpn} GPUs); give --min-gpus below --max-gpus",
            )

    opts.warn_skipped(err, loaded)
    processes = workers or available_cpus()
    try:
        with opts.progress_bars(err, len(loaded), quiet) as factory:
            doc = search(loaded, names, targets, cfg, low=low, high=high,
                         workers=processes, progress=factory)
    except InvariantViolation as e:
        err.print(f"[red]invariant broken[/red] \\[{e.code}] {escape(e.message)}")
        raise typer.Exit(3) from None

    for one in doc["policies"]:
        console.print(_table(doc, one))
    if json_out is not None:
        write_json(doc, json_out)
        console.print(f"wrote {json_out}")
    wanted = " and ".join(t["text"] for t in doc["targets"])
    missed = False
    for one in doc["policies"]:
        name, answer = one["policy"], one["answer"]
        if answer is None:
            missed = True
            err.print(
                f"[red]not met[/red]: under {name}, even {high * gpn:,} GPUs miss {wanted}; "
                "give a larger --max-gpus, or loosen the target"
            )
            continue
        console.print(
            f"[bold]{answer['gpus']:,} GPUs[/bold] ({_nodes(answer['gpus'] // gpn)} of {gpn}, load "
            f"factor {load_text(answer['load_factor'])}) is the smallest cluster on which {name} "
            f"meets {wanted}."
        )
        if answer["at_lower_bound"]:
            console.print(
                f"That is the smallest size searched: give a smaller --min-gpus to look "
                f"below {low * gpn:,} GPUs."
            )
    if missed:
        raise typer.Exit(NOT_MET)


def _table(doc: dict[str, Any], one: dict[str, Any]) -> Table:
    """One policy's probes, a row per size. Made to fit 80 columns with two targets:
    no node count (the answer's sentence gives it), rejections only where some size
    rejected a job, and headers of words that wrap rather than get cut short."""
    from masnaa.sim.report import duration, load_text, percent

    trace = doc["trace"]
    out = Table(title=f"{trace['name']}: {trace['jobs']:,} jobs under {one['policy']}, "
                f"each size replayed")
    out.add_column("GPUs", justify="right")
    out.add_column("load", justify="right")
    texts = [t["text"] for t in doc["targets"]]
    for t in doc["targets"]:
        bound = duration(t["at_most_seconds"])
        metric = t["metric"].replace("-", " ").replace("jct", "JCT")
        out.add_column(f"{metric} ≤ {bound}", justify="right")
    rejections = any(p["rejected"] for p in one["probes"])
    out.add_column("meets", justify="right")
    if rejections:
        out.add_column("rejected", justify="right")
    for name in ("util.", "JCT mean", "stops"):
        out.add_column(name, justify="right")
    for p in one["probes"]:
        out.add_row(
            f"{p['gpus']:,}", load_text(p["load_factor"]),
            *(duration(p["targets"][t]) for t in texts),
            "[green]yes[/green]" if p["meets"] else "[red]no[/red]",
            *((f"{p['rejected']:,}",) if rejections else ()),
            percent(p["utilisation"]), duration(p["jct_mean"]), f"{p['preemptions']:,}",
        )
    out.caption = "load: the load factor; util.: utilisation (work); stops: preemptions"
    return out


def _nodes(n: int) -> str:
    return f"{n:,} node{'' if n == 1 else 's'}"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
