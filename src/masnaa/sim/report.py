"""Reports of a comparison: the Rich tables (side by side, per tenant, the spread of
repeated replays) and the JSON document.

The JSON document is ``{"trace": {...}, "cluster": {...}, "policies": [summary, ...]}``
with one ``metrics.summarize`` dict per policy, in the order asked for. Oracle
policies carry ``"oracle": true`` and a label ending in ``(oracle)``. With
``--repeat`` it also has ``"spread"``: per policy label, each key metric's ``runs``
(the plain replay first, then the jittered ones), ``mean``, ``min`` and ``max``.
Where the trace records when its jobs started (a Slurm history), it also has
``"recorded"`` (``sim.recorded``): the same job metrics for the schedule the
trace's own cluster ran, shown in the tables as a last column, "as recorded"
(per tenant: its mean JCT only; a history does not tell shares over time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table


def duration(seconds: float | None) -> str:
    if seconds is None:  # no job to measure (none finished)
        return "—"
    if seconds >= 86400:
        return f"{seconds / 86400:.2f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def by_code(counts: dict[str, int]) -> str:
    """A count of jobs with the codes that make it up: ``3 (too-large 2, quota 1)``,
    or ``1 (too-large)`` where one code makes it all."""
    counts = {code: n for code, n in counts.items() if n}
    total = sum(counts.values())
    if not total:
        return "0"
    if len(counts) == 1:
        return f"{total:,} ({next(iter(counts))})"
    parts = ", ".join(f"{code} {n:,}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{total:,} ({parts})"


ROWS: tuple[tuple[str, Any], ...] = (
    ("JCT mean", lambda s: duration(s["jct"]["mean"])),
    ("JCT median", lambda s: duration(s["jct"]["median"])),
    ("JCT p99", lambda s: duration(s["jct"]["p99"])),
    ("queueing mean", lambda s: duration(s["queueing_delay"]["mean"])),
    ("queueing p99", lambda s: duration(s["queueing_delay"]["p99"])),
    ("queueing max", lambda s: duration(s["queueing_delay"]["max"])),
    ("utilisation (work)", lambda s: percent(s["utilisation"])),
    ("utilisation (busy)", lambda s: percent(s["busy_utilisation"])),
    ("makespan", lambda s: duration(s["makespan"])),
    ("Jain's index",
     lambda s: "—" if s["fairness"]["jain"] is None else f"{s['fairness']['jain']:.3f}"),
    ("min fair ratio", lambda s: percent(s["fairness"]["min_fair_ratio"])),
    ("min saturated ratio", lambda s: percent(s["fairness"]["min_saturated_ratio"])),
    ("preemptions", lambda s: f"{s['preemptions']:,}"),
    ("GPU-hours lost", lambda s: f"{s['gpu_hours_lost']:,.0f}"),
    ("jobs preempted (most times)",
     lambda s: f"{s['jobs_preempted']:,} ({s['most_preemptions_of_a_job']})"),
    ("unusable free GPUs", lambda s: percent(s["fragmentation"]["unusable_free_fraction"])),
    ("partial nodes (mean)", lambda s: f"{s['fragmentation']['partially_used_nodes']:.1f}"),
    ("finished / jobs", lambda s: f"{s['jobs']['finished']:,} / {s['jobs']['total']:,}"),
    # Jobs that asked for less time than they needed end at their limit, as on a real
    # cluster: finished, but with the work their limit allowed.
    ("killed at time limit", lambda s: f"{s['jobs']['killed_at_limit']:,}"),
    ("rejected", lambda s: by_code(s["jobs"]["rejected"])),
    ("stranded", lambda s: by_code(s["jobs"]["stranded"])),
    ("bounds hold", lambda s: "yes" if s["bounds"]["hold"] else "NO"),
    ("replay wall time",
     lambda s: f"{s['engine']['wall_seconds']:.1f} s ({s['engine']['core']} core)"),
)


def table(doc: dict[str, Any]) -> Table:
    c = doc["cluster"]
    t = doc["trace"]
    jobs = f"{t['jobs']:,} job{'' if t['jobs'] == 1 else 's'}"
    nodes = f"{c['nodes']:,} node{'' if c['nodes'] == 1 else 's'}"
    title = (
        f"{t['name']}: {jobs} over {duration(t['span_days'] * 86400)} on {c['gpus']:,} GPUs "
        f"({nodes}) — load factor {load_text(c['load_factor'])}"
    )
    out = Table(title=title)
    out.add_column("metric", style="bold")
    for s in doc["policies"]:
        out.add_column(s["label"], justify="right")
    history = doc.get("recorded")
    if history is not None:
        out.add_column(history["label"], justify="right", style="dim")
    for name, fn in ROWS:
        cells = [fn(s) for s in doc["policies"]]
        if history is not None:
            cells.append(_recorded_cell(fn, history))
        out.add_row(name, *cells)
    return out


def load_text(load: float | None) -> str:
    """A load factor for a table: ``—`` where it has no value (``None`` in the JSON, infinite
    here: every job submitted at one instant, so the span is zero)."""
    return "—" if load is None or not math.isfinite(load) else f"{load:.2f}"


def roomy_note(doc: dict[str, Any]) -> str | None:
    """A sentence when the cluster holds every job the moment it arrives, else ``None``.

    On a short slice of a heavy-tailed trace (``--start 40 --days 2`` of Philly) most
    of the offered GPU-time comes after the last submission, in a few jobs that run
    for weeks, so a cluster sized for a load over the span can be larger than the
    trace ever asks for at once: nothing waits and the policies hardly differ, which
    a reader of the table would not guess from "load factor 0.90".
    """
    peak = doc["trace"].get("peak_demand_gpus")
    gpus = doc["cluster"]["gpus"]
    if peak is None or peak > gpus:
        return None
    return (
        f"if every job started when submitted, at most {peak:,} GPUs would be busy at "
        f"once, and the cluster has {gpus:,}: jobs wait only where placement or quotas "
        f"keep them, so the policies differ little. For a busier cluster give fewer GPUs "
        f"(--gpus below {peak:,}) or a longer slice."
    )


def _recorded_cell(fn: Any, history: dict[str, Any]) -> str:
    """A row's value for the recorded schedule; "—" for what a history cannot tell."""
    try:
        return str(fn(history))
    except KeyError:
        return "—"


def tenant_rows(doc: dict[str, Any]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """Per tenant with finished jobs, most jobs first: its name, its finished jobs (under
    the first policy) and its ``fairness.tenants`` entry under each policy, in order."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for s in doc["policies"]:
        for t in s["fairness"]["tenants"]:
            rows.setdefault(t["tenant"], []).append(t)
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1][0]["jobs"], kv[0]))
    return [(name, per[0]["jobs"], per) for name, per in ordered if any(t["jobs"] for t in per)]


def tenant_table(doc: dict[str, Any]) -> Table:
    """Each tenant's mean JCT and fair ratio under each policy (``masnaa sim --by-tenant``).

    A policy's mean JCT is a mean over jobs, so a tenant that submits many jobs weighs
    on it most; this table shows which tenants a difference between policies comes
    from, and whether a tenant served faster was also served more than its fair share.
    Rows: tenants with finished jobs, most jobs first (the first policy's counts).
    With repeated replays each cell gives the tenant's mean JCT over them, its range,
    and its mean fair ratio: a tenant's figures move more than the policy's mean does.
    """
    policies = doc["policies"]
    spread: dict[str, Any] = doc.get("spread") or {}
    over = spread.get("tenants")
    if over is None:
        title = "per tenant: mean JCT (fair ratio: GPU-hours received ÷ fair share)"
    else:
        title = (
            f"per tenant over {spread['repeats']} replays: mean JCT, mean (min – max), and "
            "mean fair ratio (GPU-hours received ÷ fair share)"
        )
    out = Table(title=title)
    out.add_column("tenant", style="bold")
    out.add_column("jobs", justify="right")
    for s in policies:
        out.add_column(s["label"], justify="right")
    history = doc.get("recorded")
    seen: dict[str, Any] = {}
    if history is not None:
        # A history tells each tenant's waits, not its share over time.
        out.add_column(history["label"], justify="right", style="dim")
        seen = {t["tenant"]: t for t in history.get("tenants", ())}
    for name, jobs, per_policy in tenant_rows(doc):
        if over is None:
            cells = [
                "—" if not t["jobs"]
                else f"{duration(t['jct']['mean'])} ({percent(t['fair_ratio'])})"
                for t in per_policy
            ]
        else:
            cells = [_tenant_spread_cell(over[s["label"]].get(name)) for s in policies]
        if history is not None:
            cells.append(duration(seen[name]["jct"]["mean"]) if name in seen else "—")
        out.add_row(name, f"{jobs:,}", *cells)
    if over is None:
        totals = [duration(s["jct"]["mean"]) for s in policies]
    else:
        totals = [range_cell(spread["policies"][s["label"]]["jct_mean"]) for s in policies]
    if history is not None:
        totals.append(duration(history["jct"]["mean"]))
    out.add_row("all", f"{policies[0]['jobs']['finished']:,}", *totals, style="dim")
    return out


def range_cell(m: dict[str, Any], fmt: Any = duration) -> str:
    """``mean (min – max)`` of one range in ``spread`` (``compare``), each figure
    written by ``fmt``, the unit once where both ends share it (``7.99 h (7.73 – 8.35
    h)``), so that a table of four policies needs fewer lines in 80 columns. The spaces
    around the dash stay: a narrow cell breaks there rather than cutting a figure
    short. ``—``: no value in any run."""
    if m["mean"] is None:
        return "—"
    lo, hi = fmt(m["min"]), fmt(m["max"])
    lo_value, _, lo_unit = lo.rpartition(" ")
    hi_value, _, hi_unit = hi.rpartition(" ")
    if lo_unit == hi_unit or not (lo_value or hi_value):  # one unit, or none at all
        return f"{fmt(m['mean'])} ({lo_value or lo} – {hi})"
    return f"{fmt(m['mean'])} ({lo} – {hi})"


def _tenant_spread_cell(t: dict[str, Any] | None) -> str:
    if t is None or t["jct_mean"]["mean"] is None:
        return "—"
    return f"{range_cell(t['jct_mean'])}, {percent(t['fair_ratio']['mean'])}"


SPREAD_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("JCT mean", "jct_mean", duration),
    ("queueing p99", "queueing_p99", duration),
    ("queueing max", "queueing_max", duration),
    ("utilisation (work)", "utilisation", percent),
    ("Jain's index", "jain", lambda x: f"{x:.4f}"),
    ("min saturated ratio", "min_saturated_ratio", percent),
    ("preemptions", "preemptions", lambda x: f"{x:,.0f}"),
)


def spread_table(doc: dict[str, Any]) -> Table | None:
    """Mean and range of the key metrics over the repeated replays (``None``: none)."""
    spread = doc.get("spread")
    if spread is None:
        return None
    out = Table(
        title=f"over {spread['repeats']} replays, submit times jittered by up to "
        f"{spread['jitter_seconds']:g} s: mean (min – max)"
    )
    out.add_column("metric", style="bold")
    labels = list(spread["policies"])
    for label in labels:
        out.add_column(label, justify="right")
    for name, key, fmt in SPREAD_ROWS:
        out.add_row(name, *(range_cell(spread["policies"][label][key], fmt) for label in labels))
    return out


def write_json(doc: dict[str, Any], path: Path) -> None:
    """The report as strict JSON: a figure without a finite value (the load factor of a
    trace submitted at one instant) is ``null``, since JSON has no Infinity or NaN."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(doc), indent=1, sort_keys=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
