"""Replay one trace under several policies on the same cluster: the comparison document.

Every policy gets a fresh engine on the same trace, cluster, tenants and
quotas, so the runs differ only in the policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from masnaa.scheduler import POLICIES
from masnaa.sim.engine import Engine, EngineConfig
from masnaa.sim.errors import SimError
from masnaa.sim.metrics import summarize
from masnaa.sim.shape import Sizing, build_cluster, tenancy
from masnaa.sim.trace import Trace

ProgressFactory = Callable[[str], Callable[[int, int], None]]


def check_policies(names: Sequence[str]) -> None:
    bad = [p for p in names if p not in POLICIES]
    if bad or not names:
        raise SimError(
            "unknown-policy",
            f"unknown policy {', '.join(map(repr, bad)) or '(none given)'}; "
            f"valid policies: {', '.join(sorted(POLICIES))}",
        )


def compare(
    trace: Trace,
    policies: Sequence[str],
    sizing: Sizing,
    config: EngineConfig,
    *,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    check_policies(policies)
    cluster = build_cluster(trace, sizing.nodes, gpus_per_node=config.gpus_per_node)
    tenants, quotas = tenancy(trace, cluster)
    summaries = []
    for policy in policies:
        engine = Engine(
            trace, cluster, tenants, quotas, dataclasses.replace(config, policy=policy),
            progress=progress(policy) if progress else None,
        )
        summaries.append(summarize(engine.run()))
    return {
        "trace": {
            "name": trace.name,
            "jobs": len(trace),
            "span_days": trace.span / 86400,
            "offered_gpu_hours": trace.offered_gpu_seconds() / 3600,
            "tenants": len(trace.tenants),
            "skipped_lines": [{"line": s.line, "reason": s.reason} for s in trace.skipped[:100]],
            "skipped_count": len(trace.skipped),
            "ignored": trace.ignored,
            "origin": trace.origin,
        },
        "cluster": {
            "gpus": cluster.total_gpus,
            "nodes": len(cluster.nodes),
            "gpus_per_node": config.gpus_per_node,
            "sites": [s.name for s in cluster.sites],
            "gpu_types": [t.name for t in cluster.gpu_types],
            "load_factor": sizing.load_factor,
        },
        "policies": summaries,
    }
