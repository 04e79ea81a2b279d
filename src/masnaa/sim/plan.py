"""Capacity planning: the smallest cluster on which a policy meets the operator's targets.

An operator asks "how many nodes do we need so that 99 % of jobs wait less than a
day?". The answer comes from replays, not from a formula: the twin replays the
trace under one policy on clusters of different sizes (whole nodes) and keeps the
smallest on which every target holds.

Owns: the targets (``parse_target``, ``Target``), the search over sizes
(``smallest``), and the probes' replays (``plan``).

Targets bound the delays a user feels, each from above: JCT or queueing delay
(mean, median, p99, max) at most some duration. They are the figures that only
improve as GPUs are added. Utilisation and fairness are reported beside each probe
but are not targets: utilisation falls as the cluster grows, so it would bound the
size from the other side.

The search assumes that a target met on *n* nodes is met on every larger cluster.
On a bursty trace that holds only roughly (one job starting a moment earlier can
move a whole busy period), so every size replayed is reported with its figures,
and the answer is the smallest size that met the targets whose next smaller size
was replayed and did not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from masnaa.sim.engine import EngineConfig
from masnaa.sim.errors import SimError
from masnaa.sim.parallel import Run, Setup, replay, run_parallel
from masnaa.sim.shape import load_factor
from masnaa.sim.trace import Trace

METRICS: dict[str, tuple[str, str]] = {
    "jct-mean": ("jct", "mean"),
    "jct-median": ("jct", "median"),
    "jct-p99": ("jct", "p99"),
    "queueing-mean": ("queueing_delay", "mean"),
    "queueing-p99": ("queueing_delay", "p99"),
    "queueing-max": ("queueing_delay", "max"),
}
"""Target name → where its value sits in a replay's summary (seconds)."""

_UNITS = {"s": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_TARGET = re.compile(r"^\s*([a-z0-9-]+)\s*<=\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class Target:
    """``metric`` at most ``seconds`` (as the operator wrote it: ``text``)."""

    metric: str
    seconds: float
    text: str

    def value(self, summary: dict[str, Any]) -> float:
        group, name = METRICS[self.metric]
        return float(summary[group][name])

    def met(self, summary: dict[str, Any]) -> bool:
        return self.value(summary) <= self.seconds


def parse_target(text: str) -> Target:
    """``"queueing-p99<=24h"``: a metric of ``METRICS``, ``<=``, a duration (s, min, h, d)."""
    m = _TARGET.match(text.lower())
    if m is None:
        raise SimError(
            "bad-target",
            f"target {text!r} is not METRIC<=DURATION; write e.g. 'queueing-p99<=24h' "
            f"(metrics: {', '.join(METRICS)}; units: s, min, h, d)",
        )
    metric, number, unit = m.groups()
    if metric not in METRICS:
        raise SimError(
            "bad-target",
            f"unknown metric {metric!r} in target {text!r}; valid metrics: {', '.join(METRICS)}",
        )
    if unit not in _UNITS and unit != "":
        raise SimError(
            "bad-target",
            f"unknown unit {unit!r} in target {text!r}; use s, min, h or d (none: seconds)",
        )
    seconds = float(number) * _UNITS.get(unit, 1.0)
    if seconds <= 0:
        raise SimError("bad-target", f"target {text!r} must allow a positive duration")
    return Target(metric, seconds, text.strip())


@dataclass(frozen=True, slots=True)
class Search:
    """What ``smallest`` found: ``nodes`` (``None``: no size tried met the targets)."""

    nodes: int | None
    tried: dict[int, bool]
    at_lower_bound: bool


def smallest(
    low: int, high: int, meets: Callable[[Sequence[int]], Sequence[bool]], width: int = 1
) -> Search:
    """The smallest node count in ``[low, high]`` for which ``meets`` holds.

    ``meets`` is asked for ``width`` sizes at a time (the replays of one round run
    side by side). ``high`` is asked in the first round: if it fails, the search
    ends there, whatever else that round found. Each later round splits the
    interval between the largest size known to fail and the smallest known to meet
    into ``width + 1`` parts.
    """
    if not 1 <= low <= high:
        raise SimError("bad-option", f"the sizes to search must satisfy 1 <= low <= high, "
                       f"not {low} and {high}")
    tried: dict[int, bool] = {}
    fail, ok = low - 1, None
    while True:
        if ok is None:
            points = [high, *_between(fail, high, width - 1)]
        elif ok - fail <= 1:
            return Search(ok, tried, at_lower_bound=ok == low)
        else:
            points = _between(fail, ok, width)
        for n, good in zip(points, meets(points), strict=True):
            tried[n] = bool(good)
        if ok is None and not tried[high]:
            return Search(None, tried, at_lower_bound=False)
        met = [n for n in points if tried[n]]
        if met:
            ok = min(met) if ok is None else min(ok, *met)
        assert ok is not None
        fail = max([fail, *(n for n in points if not tried[n] and n < ok)])


def _between(a: int, b: int, k: int) -> list[int]:
    """Up to ``k`` distinct integers strictly between ``a`` and ``b``, evenly spread."""
    if k <= 0 or b - a <= 1:
        return []
    if b - a - 1 <= k:
        return list(range(a + 1, b))
    out = sorted({a + round((b - a) * i / (k + 1)) for i in range(1, k + 1)})
    return [n for n in out if a < n < b]


def default_bounds(trace: Trace, gpus_per_node: int) -> tuple[int, int]:
    """Nodes at a mean load of 1 (fewer, and the queue never drains while work arrives),
    but no fewer than the largest job needs; and nodes at a mean load of 0.3."""
    biggest = math.ceil(int(trace.gpus.max()) / gpus_per_node) if len(trace) else 1
    offered, span = trace.offered_gpu_seconds(), trace.span
    if span <= 0:
        raise SimError(
            "bad-option",
            "the trace spans one instant, so no load factor sizes it; give --min-gpus and "
            "--max-gpus",
        )
    low = max(biggest, math.floor(offered / (span * gpus_per_node)), 1)
    high = max(low, math.ceil(offered / (0.3 * span * gpus_per_node)))
    return low, high


Progress = Callable[[str], Callable[[int, int], None]]


def _rejected(summary: dict[str, Any]) -> int:
    return int(sum(summary["jobs"]["rejected"].values()))


def plan(
    trace: Trace,
    policy: str,
    targets: Sequence[Target],
    config: EngineConfig,
    *,
    low: int,
    high: int,
    workers: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``trace`` under ``policy`` on clusters between ``low`` and ``high`` nodes;
    the document holds every size replayed and the smallest that meets ``targets``."""
    if not targets:
        raise SimError("bad-target", "give at least one --target, e.g. 'queueing-p99<=24h'")
    setup = Setup(trace, low, config, 60.0)
    probes: dict[int, dict[str, Any]] = {}

    def meets(sizes: Sequence[int]) -> list[bool]:
        runs = [Run(policy, f"{policy} on {n * config.gpus_per_node:,} GPUs", 0, n)
                for n in sizes]
        if workers > 1 and len(runs) > 1:
            results = run_parallel(setup, runs, workers, progress)
        else:
            results = []
            for run in runs:
                bar = progress(run.label) if progress else None
                results.append(replay(setup, setup.world(run.nodes), run, progress=bar))
        for n, summary in zip(sizes, results, strict=True):
            probes[n] = summary
        # A cluster too small for some job rejects it, and a rejected job has no delay
        # to count: such a size never meets a target.
        return [not _rejected(s) and all(t.met(s) for t in targets) for s in results]

    found = smallest(low, high, meets, width=max(1, workers))
    gpn = config.gpus_per_node
    rows = []
    for n in sorted(probes):
        s = probes[n]
        rows.append({
            "nodes": n,
            "gpus": n * gpn,
            "load_factor": load_factor(trace, n * gpn),
            "meets": found.tried[n],
            "rejected": _rejected(s),
            "targets": {t.text: t.value(s) for t in targets},
            "utilisation": s["utilisation"],
            "jct_mean": s["jct"]["mean"],
            "queueing_p99": s["queueing_delay"]["p99"],
            "preemptions": s["preemptions"],
            "wall_seconds": s["engine"]["wall_seconds"],
        })
    answer = None
    if found.nodes is not None:
        answer = {
            "nodes": found.nodes,
            "gpus": found.nodes * gpn,
            "load_factor": load_factor(trace, found.nodes * gpn),
            "at_lower_bound": found.at_lower_bound,
        }
    return {
        "trace": {"name": trace.name, "jobs": len(trace), "span_days": trace.span / 86400},
        "policy": policy,
        "targets": [{"text": t.text, "metric": t.metric, "at_most_seconds": t.seconds}
                    for t in targets],
        "search": {"low_nodes": low, "high_nodes": high, "gpus_per_node": gpn},
        "probes": rows,
        "answer": answer,
    }
