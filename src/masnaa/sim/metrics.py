"""Metrics of one replay, as a plain JSON-able dict (``summarize``).

Definitions (times in seconds; only jobs that finished count in job metrics):
- **JCT** = finish − submit; mean, median, p99 and max (as for queueing delay:
  the max is the longest any job waited, which starvation protection bounds);
- **runtime** = the work the job did (its trace runtime, cut at a requested
  limit); **queueing delay** = JCT − runtime: every second the job was not
  doing useful work, including time after a preemption, restart overhead and
  work redone after a lost checkpoint;
- **makespan** = last finish − first submission;
- **utilisation** = Σ GPU·s of useful work ÷ (GPUs × makespan), so leaving
  big gangs to the end is not free; **busy utilisation** = Σ GPU·s held
  (useful, lost and restart overhead) ÷ (GPUs × makespan);
- **preemptions** and **GPU-hours lost** (held but not saved by a checkpoint);
  **jobs preempted** (at least once) and the **most preemptions of one job**;
- **fragmentation**, sampled at each time-series bin while jobs wait: of the
  free GPUs summed over the samples, the fraction on nodes with fewer free
  GPUs than the smallest waiting task (unusable by any waiting job); the mean
  number of partially used nodes and of free GPUs;
- **fair share**: see ``timeline``; per tenant received ÷ entitled
  (``share_ratio``), ÷ demand-capped max-min fair (``fair_ratio``), and
  ÷ entitled while it had enough demand (``saturated_ratio``); **Jain's index**
  over the tenants' ``fair_ratio`` capped at 1 (``jain``), and uncapped
  (``jain_uncapped``, reported for comparison);
- **per tenant**, beside its fair-share figures: its finished ``jobs`` and their
  ``jct`` and ``queueing_delay`` (as above), which say which tenant a policy's
  means come from;
- **bounds**: every JCT ≥ its runtime; makespan ≥ max(Σ GPU·s ÷ GPUs,
  max(submit + runtime)). ``bounds.hold`` says whether they did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from masnaa.sim.engine import DONE
from masnaa.sim.records import RunResult

CDF_POINTS = 200
EPS = 1e-6


def jain(values: npt.ArrayLike) -> float | None:
    """Jain's fairness index (Σx)² ÷ (n·Σx²): 1 when all equal, 1/n when one takes all;
    ``None`` over no tenant (no tenant had demand long enough to be measured)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None
    sq = float(np.sum(x * x))
    return float(np.sum(x)) ** 2 / (x.size * sq) if sq > 0 else 1.0


def label(policy: str, oracle: bool) -> str:
    return f"{policy} (oracle)" if oracle else policy


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def job_stats(x: npt.NDArray[np.float64]) -> dict[str, float | None]:
    """Mean, median, p99 and max of a per-job figure (all ``None`` for no job: a zero
    would read as jobs that completed at once)."""
    if x.size == 0:
        return {"mean": None, "median": None, "p99": None, "max": None}
    return {
        "mean": float(np.mean(x)),
        "median": float(np.median(x)),
        "p99": float(np.percentile(x, 99)),
        "max": float(np.max(x)),
    }


def tenant_jobs(
    mine: npt.NDArray[np.bool_], jct: npt.NDArray[np.float64], queueing: npt.NDArray[np.float64]
) -> dict[str, Any]:
    """One tenant's finished ``jobs`` (``mine``: which of the jobs are its) and their
    ``jct`` and ``queueing_delay`` (``job_stats``)."""
    return {
        "jobs": int(np.count_nonzero(mine)),
        "jct": job_stats(jct[mine]),
        "queueing_delay": job_stats(queueing[mine]),
    }


def jct_quantiles(jct: npt.NDArray[np.float64]) -> list[float]:
    """``CDF_POINTS`` evenly spaced quantiles of the JCTs, for the CDF plot."""
    if not jct.size:
        return []
    points: list[float] = np.quantile(np.sort(jct), np.linspace(0, 1, CDF_POINTS)).tolist()
    return points


def summarize(r: RunResult) -> dict[str, Any]:
    status = np.frombuffer(bytes(r.status), dtype=np.uint8)
    done = status == DONE
    submit = np.asarray(r.submit)[done]
    work = np.asarray(r.work)[done]
    end = np.asarray(r.end)[done]
    gpus = np.asarray(r.gpus)[done].astype(np.float64)
    tenant_of = np.asarray(r.tenant)[done]
    requeues = np.asarray(r.requeues)
    jct = end - submit
    queueing = jct - work
    cap = r.capacity
    makespan = float(end.max()) if end.size else 0.0
    offered = float(np.sum(work * gpus))
    lower = max(offered / cap, float(np.max(submit + work))) if end.size else 0.0
    tl = r.timeline
    span_cap = cap * makespan

    tenants: list[dict[str, Any]] = []
    fair_ratios: list[float] = []
    for k, name in enumerate(r.tenants):
        fair = float(tl.fair[k])
        fr = _ratio(float(tl.received[k]), fair)
        if fr is not None:
            fair_ratios.append(fr)
        tenants.append({
            "tenant": name,
            **tenant_jobs(tenant_of == k, jct, queueing),
            "entitled_share": r.shares[k],
            "demand_hours": float(tl.demand_seconds[k]) / 3600,
            "received_gpu_hours": float(tl.received[k]) / 3600,
            "entitled_gpu_hours": float(tl.entitled[k]) / 3600,
            "fair_gpu_hours": fair / 3600,
            "share_ratio": _ratio(float(tl.received[k]), float(tl.entitled[k])),
            "fair_ratio": fr,
            "saturated_ratio": _ratio(float(tl.received_saturated[k]),
                                      float(tl.entitled_saturated[k])),
            "saturated_hours_gpu": float(tl.entitled_saturated[k]) / 3600,
        })
    saturated: list[float] = [
        t["saturated_ratio"] for t in tenants if t["saturated_ratio"] is not None
    ]

    samples = np.asarray(tl.samples, dtype=np.float64).reshape(-1, 5)
    free_total = float(samples[:, 1].sum())
    stranded_frac = float(samples[:, 3].sum()) / free_total if free_total > 0 else 0.0
    partial = float(np.mean(samples[:, 2])) if samples.size else 0.0

    bw = tl.bin_width
    return {
        "policy": r.policy,
        "label": label(r.policy, r.oracle),
        "oracle": r.oracle,
        "gpus": cap,
        "jobs": {
            "total": r.jobs,
            "finished": int(done.sum()),
            "rejected": r.rejected,
            "stranded": r.stranded,
            "killed_at_limit": r.killed_at_limit,
            "skipped_lines": r.skipped_lines,
        },
        "jct": job_stats(jct),
        "queueing_delay": job_stats(queueing),
        "utilisation": offered / span_cap if span_cap > 0 else 0.0,
        "busy_utilisation": tl.busy_gpu_seconds / span_cap if span_cap > 0 else 0.0,
        "makespan": makespan,
        "preemptions": r.preemptions,
        "gpu_hours_lost": r.lost_gpu_seconds / 3600,
        "jobs_preempted": int(np.count_nonzero(requeues)),
        "most_preemptions_of_a_job": int(requeues.max()) if requeues.size else 0,
        "fragmentation": {
            "unusable_free_fraction": stranded_frac,
            "partially_used_nodes": partial,
            "free_gpus_while_waiting": float(np.mean(samples[:, 1])) if samples.size else 0.0,
            "samples": int(samples.shape[0]),
        },
        "fairness": {
            # Capped: a tenant served beyond its fair split took capacity that was idle
            # or someone else's, and the someone else's ratio below 1 already counts it.
            # Uncapped, tenants with a sliver of demand (a few GPU-hours over months of
            # Philly) reach ratios of 10-200 and alone decide the index.
            "jain": jain([min(1.0, x) for x in fair_ratios]),
            "jain_uncapped": jain(fair_ratios),
            "min_fair_ratio": min(fair_ratios) if fair_ratios else None,
            "min_saturated_ratio": min(saturated) if saturated else None,
            "tenants": tenants,
        },
        "bounds": {
            "makespan_lower": lower,
            "jct_min_slack": float(np.min(queueing)) if queueing.size else 0.0,
            "hold": bool((queueing >= -EPS).all() and makespan >= lower - EPS),
        },
        "engine": {
            "passes": r.passes,
            "passes_skipped": r.passes_skipped,
            "decide_seconds": r.decide_seconds,
            "wall_seconds": r.wall_seconds,
            "core": r.core,
            "invariant_checks": r.invariant_checks,
            "estimate_extensions": r.estimate_extensions,
            **r.config,
        },
        "series": {
            "bin_seconds": bw,
            "utilisation": [round(float(b) / (cap * bw), 5) for b in tl.busy],
            "tenant_share": {
                name: [round(float(v) / (cap * bw), 5) for v in tl.tenant_gpu_seconds[:, k]]
                for k, name in enumerate(r.tenants)
            },
            "jct_quantiles": jct_quantiles(jct),
        },
    }
