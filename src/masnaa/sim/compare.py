"""Replay one trace under several policies on the same cluster: the comparison document.

Every policy gets a fresh engine on the same trace, cluster, tenants and
quotas, so the runs differ only in the policy. With ``repeats`` each policy is also
replayed on copies of the trace with submit times jittered by a few seconds: on a
bursty trace one job starting a moment earlier moves the whole busy period, and the
spread of a metric over such replays is the noise any difference must exceed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from masnaa.scheduler import POLICIES
from masnaa.sim.errors import SimError
from masnaa.sim.parallel import Run, Setup, replay, run_parallel
from masnaa.sim.recorded import recorded
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import Sizing, load_factor, served
from masnaa.sim.trace import Trace

ProgressFactory = Callable[[str], Callable[[int, int], None]]


def check_policies(names: Sequence[str], *, repeatable: bool = True) -> None:
    """Known names, each once (``repeatable``: the verb has ``--repeat`` to suggest)."""
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise SimError(
            "unknown-policy",
            f"unknown policy {', '.join(map(repr, bad)) or '(none given)'}; "
            f"valid policies: {', '.join(sorted(POLICIES))}",
        )
    twice = sorted({p for p in names if names.count(p) > 1})
    if twice:
        raise SimError(
            "duplicate-policy",
            f"policy {', '.join(map(repr, twice))} named more than once; name each policy "
            "once" + (" (use --repeat to replay a policy again)" if repeatable else ""),
        )


def check_repeats(repeats: int, jitter: float) -> None:
    if repeats < 1 or not 0 < jitter < math.inf:  # NaN fails the comparison too
        raise SimError(
            "bad-option", "--repeat must be at least 1 and --jitter a positive number of seconds"
        )


def check_workers(workers: int) -> None:
    if workers < 1:
        raise SimError("bad-option", f"--workers must be at least 1, not {workers}")


def compare(
    trace: Trace,
    policies: Sequence[str],
    sizing: Sizing,
    config: EngineConfig,
    *,
    progress: ProgressFactory | None = None,
    repeats: int = 1,
    jitter: float = 60.0,
    workers: int = 1,
) -> dict[str, Any]:
    """``repeats`` > 1 replays each policy again on ``repeats − 1`` copies of the trace
    whose submit times are jittered by up to ``jitter`` seconds (seeds 1, 2, …), on
    the same cluster, and adds ``"spread"``: the key metrics of every run, the first
    being the plain one, and each tenant's mean JCT and fair ratio in every run
    (``spread["tenants"][label][tenant]``). ``workers`` > 1 runs the replays in that
    many processes (``parallel``); the document is the same either way."""
    check_policies(policies)
    check_repeats(repeats, jitter)
    check_workers(workers)
    setup = Setup(trace, sizing.nodes, config, jitter)
    world = setup.world()
    cluster = world.cluster
    runs = [
        Run(policy, policy if seed == 0 else f"{policy} #{seed + 1}", seed)
        for seed in range(repeats)
        for policy in policies
    ]
    if workers > 1 and len(runs) > 1:
        results = run_parallel(setup, runs, workers, progress)
    else:
        results, moved = [], trace
        for run in runs:
            if run.seed and run.policy == policies[0]:
                moved = trace.jittered(run.seed, jitter)  # once per copy, for every policy
            bar = progress(run.label) if progress else None
            if bar is not None:
                bar(0, len(moved))
            results.append(replay(setup, world, run, moved, bar))
    summaries = results[: len(policies)]
    # The workload figures are over the jobs the cluster can hold: one too large is
    # rejected at arrival and counted (``too_large_jobs``), not offered.
    held = served(trace, cluster, config.gpus_per_node)
    spread: dict[str, Any] | None = None
    if repeats > 1:
        spread = {
            "repeats": repeats,
            "jitter_seconds": jitter,
            "policies": {
                s["label"]: _ranges([key_metrics(r) for r in results[i :: len(policies)]])
                for i, s in enumerate(summaries)
            },
            "tenants": {
                s["label"]: _tenant_ranges(results[i :: len(policies)])
                for i, s in enumerate(summaries)
            },
        }
    doc: dict[str, Any] = {
        "trace": {
            "name": trace.name,
            "jobs": len(trace),
            "span_days": trace.span / 86400,
            "offered_gpu_hours": held.offered_gpu_seconds() / 3600,
            "peak_demand_gpus": held.peak_demand(),
            "too_large_jobs": len(trace) - len(held),
            "tenants": len(trace.tenants),
            "skipped_lines": [{"line": s.line, "reason": s.reason} for s in trace.skipped[:100]],
            "skipped_count": len(trace.skipped),
            "ignored": trace.ignored,
            "notes": trace.notes,
            "origin": trace.origin,
        },
        "cluster": {
            "gpus": cluster.total_gpus,
            "nodes": len(cluster.nodes),
            "gpus_per_node": config.gpus_per_node,
            "sites": [s.name for s in cluster.sites],
            "gpu_types": [t.name for t in cluster.gpu_types],
            # The cluster built, which may be larger than asked (one node per GPU type
            # at least: ``shape.apportion``).
            "load_factor": load_factor(held, cluster.total_gpus),
        },
        "policies": summaries,
    }
    if spread is not None:
        doc["spread"] = spread
    history = recorded(trace, cluster.total_gpus)
    if history is not None:
        doc["recorded"] = history
    return doc


def key_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The metrics the quality targets compare, from one summary."""
    fairness = summary["fairness"]
    return {
        "jct_mean": summary["jct"]["mean"],
        "queueing_p99": summary["queueing_delay"]["p99"],
        "queueing_max": summary["queueing_delay"]["max"],
        "utilisation": summary["utilisation"],
        "jain": fairness["jain"],
        "min_saturated_ratio": fairness["min_saturated_ratio"],
        "preemptions": summary["preemptions"],
    }


def tenant_metrics(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Each tenant's mean JCT (``None`` when none of its jobs finished) and fair ratio,
    from one summary."""
    return {
        t["tenant"]: {
            "jct_mean": t["jct"]["mean"] if t["jobs"] else None,
            "fair_ratio": t["fair_ratio"],
        }
        for t in summary["fairness"]["tenants"]
    }


def _tenant_ranges(summaries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``_ranges`` of ``tenant_metrics`` per tenant, over one policy's runs (every copy
    of a trace has the same tenants, and every summary lists them all)."""
    runs = [tenant_metrics(s) for s in summaries]
    return {name: _ranges([r[name] for r in runs]) for name in runs[0]}


def _ranges(runs: Sequence[Mapping[str, float | None]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in runs[0]:
        values = [r[name] for r in runs]
        finite = [v for v in values if v is not None]
        out[name] = {
            "runs": values,
            "mean": sum(finite) / len(finite) if finite else None,
            "min": min(finite, default=None),
            "max": max(finite, default=None),
        }
    return out
