"""Capacity planning: the smallest cluster on which a policy meets the operator's targets.

An operator asks "how many nodes do we need so that 99 % of jobs wait less than a
day?". The answer comes from replays, not from a formula: the twin replays the
trace under each policy on clusters of different sizes (whole nodes) and keeps,
per policy, the smallest on which every target holds.

Owns: the targets (``parse_target``, ``Target``), the search over sizes
(``Bisection``, ``smallest``), and the probes' replays (``plan``), where the
policies' searches share rounds of replays run side by side.

Targets bound the delays a user feels, each from above: JCT or queueing delay
(mean, median, p99, max) at most some duration. They are the figures that only
improve as GPUs are added. Utilisation and fairness are reported beside each probe
but are not targets: utilisation falls as the cluster grows, so it would bound the
size from the other side.

The search assumes that a target met on *n* nodes is met on every larger cluster.
On a bursty trace that holds only roughly (one job starting a moment earlier can
move a whole busy period), so every size replayed is reported with its figures,
and the answer is a size that met the targets whose next smaller size was
replayed and did not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from masnaa.sim.errors import SimError
from masnaa.sim.parallel import Run, Setup, replay, run_parallel
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import build_cluster, load_factor, served
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

_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""No ``m``: an operator may read it as months (or metres); minutes are ``min``."""
_TARGET = re.compile(r"^\s*([a-z0-9-]+)\s*<=\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class Target:
    """``metric`` at most ``seconds`` (as the operator wrote it: ``text``)."""

    metric: str
    seconds: float
    text: str

    def value(self, summary: dict[str, Any]) -> float:
        """The figure the target bounds; infinite where no job finished to measure it."""
        group, name = METRICS[self.metric]
        figure = summary[group][name]
        return math.inf if figure is None else float(figure)

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


class Bisection:
    """The search for the smallest node count in ``[low, high]`` that meets, a round at
    a time: ``sizes`` says what to replay next (``[]``: done), ``record`` takes the
    answers, ``result`` gives what was found. Several searches can so share rounds.

    Each round asks ``width`` sizes. ``high`` is asked in the first round: if it
    fails, the search ends there, whatever else that round found. Each later round
    splits the interval between the largest size known to fail and the smallest
    known to meet into ``width + 1`` parts.
    """

    def __init__(self, low: int, high: int, width: int = 1) -> None:
        if not 1 <= low <= high:
            raise SimError("bad-option", f"the sizes to search must satisfy 1 <= low <= high, "
                           f"not {low} and {high}")
        self.low, self.high, self.width = low, high, max(1, width)
        self.tried: dict[int, bool] = {}
        self._fail = low - 1
        self._ok: int | None = None
        self._done = False

    def sizes(self) -> list[int]:
        fail, ok = self._fail, self._ok
        if self._done or (ok is not None and ok - fail <= 1):
            return []
        if ok is None:
            return [self.high, *_between(fail, self.high, self.width - 1)]
        return _between(fail, ok, self.width)

    def record(self, sizes: Sequence[int], met: Sequence[bool]) -> None:
        for n, good in zip(sizes, met, strict=True):
            self.tried[n] = bool(good)
        if self._ok is None and not self.tried.get(self.high, True):
            self._done = True  # the largest size misses: nothing to find below it
            return
        good_ones = [n for n in sizes if self.tried[n]]
        if good_ones:
            self._ok = min(good_ones if self._ok is None else [self._ok, *good_ones])
        ok = self._ok
        assert ok is not None
        self._fail = max([self._fail, *(n for n in sizes if not self.tried[n] and n < ok)])

    def result(self) -> Search:
        ok = None if self._done else self._ok
        return Search(ok, self.tried, at_lower_bound=ok == self.low)


def smallest(
    low: int, high: int, meets: Callable[[Sequence[int]], Sequence[bool]], width: int = 1
) -> Search:
    """The smallest node count in ``[low, high]`` for which ``meets`` holds
    (``Bisection``, asking ``meets`` for a round of sizes at a time)."""
    search = Bisection(low, high, width)
    while sizes := search.sizes():
        search.record(sizes, meets(sizes))
    return search.result()


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
    policies: Sequence[str],
    targets: Sequence[Target],
    config: EngineConfig,
    *,
    low: int,
    high: int,
    workers: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay ``trace`` under each policy on clusters between ``low`` and ``high``
    nodes; the document holds, per policy, every size replayed and the smallest that
    meets ``targets``. The policies' searches share rounds, so that ``workers``
    replays run side by side even when each search asks for fewer."""
    if not targets:
        raise SimError("bad-target", "give at least one --target, e.g. 'queueing-p99<=24h'")
    setup = Setup(trace, low, config, 60.0)
    gpn = config.gpus_per_node
    width = max(1, workers // max(1, len(policies)))
    searches = {p: Bisection(low, high, width) for p in policies}
    probes: dict[str, dict[int, dict[str, Any]]] = {p: {} for p in policies}
    while True:
        asked = [(p, search.sizes()) for p, search in searches.items()]
        runs = [Run(p, f"{p} on {n * gpn:,} GPUs", 0, n) for p, sizes in asked for n in sizes]
        if not runs:
            break
        if workers > 1 and len(runs) > 1:
            results = run_parallel(setup, runs, workers, progress)
        else:
            results = []
            for run in runs:
                bar = progress(run.label) if progress else None
                results.append(replay(setup, setup.world(run.nodes), run, progress=bar))
        got = iter(results)
        for p, sizes in asked:
            summaries = [next(got) for _ in sizes]
            probes[p].update(zip(sizes, summaries, strict=True))
            # A cluster too small for some job rejects it, and a rejected job has no
            # delay to count: such a size never meets a target.
            searches[p].record(
                sizes, [not _rejected(s) and all(t.met(s) for t in targets) for s in summaries]
            )
    return {
        "trace": {"name": trace.name, "jobs": len(trace), "span_days": trace.span / 86400},
        "targets": [{"text": t.text, "metric": t.metric, "at_most_seconds": t.seconds}
                    for t in targets],
        "search": {"low_nodes": low, "high_nodes": high, "gpus_per_node": gpn},
        "policies": [
            _policy_doc(trace, p, searches[p].result(), probes[p], targets, gpn)
            for p in policies
        ],
    }


def _policy_doc(
    trace: Trace, policy: str, found: Search, probes: dict[int, dict[str, Any]],
    targets: Sequence[Target], gpn: int,
) -> dict[str, Any]:
    rows = []
    for n in sorted(probes):
        s = probes[n]
        rows.append({
            "nodes": n,
            "gpus": s["gpus"],  # the cluster built (``shape.apportion``)
            "load_factor": _load(trace, n, s, gpn),
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
            "gpus": probes[found.nodes]["gpus"],
            "load_factor": _load(trace, found.nodes, probes[found.nodes], gpn),
            "at_lower_bound": found.at_lower_bound,
        }
    return {"policy": policy, "probes": rows, "answer": answer}


def _load(trace: Trace, nodes: int, summary: dict[str, Any], gpn: int) -> float:
    """The load factor of the probe on ``nodes`` nodes, over the jobs that cluster can hold
    (``shape.served``: a job too large for it is rejected, not offered)."""
    if summary["jobs"]["rejected"].get("too-large"):
        trace = served(trace, build_cluster(trace, nodes, gpus_per_node=gpn), gpn)
    return load_factor(trace, summary["gpus"])
