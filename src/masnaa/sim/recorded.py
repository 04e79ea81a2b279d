"""What the trace's own cluster did: the recorded schedule, measured like a replay.

A Slurm history records when each job started as well as when it was submitted
(``Trace.started``). Measured with the twin's definitions (``metrics``), that is
the site's own scheduler at work, a reference beside the replays: an operator
sees whether the twin's ``fifo-backfill`` comes close to what Slurm did (the
twin is then a fair judge of the other policies), and what the site would gain.

Only jobs whose start is recorded count, in the whole and per tenant (``tenants``).
JCT = recorded start + runtime − submit;
queueing delay = recorded start − submit (a job requeued by Slurm is recorded once,
with its last start); makespan = last recorded end − first submission. Utilisation
divides by the GPUs of the replayed cluster, so it means something only when
those are the GPUs the history ran on (``--gpus``); above 1, they were not.
What a history cannot tell (fair share over time, preemptions, fragmentation) is
left out, not guessed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from masnaa.sim.metrics import jct_quantiles, job_stats, tenant_jobs
from masnaa.sim.trace import Trace

LABEL = "as recorded"


def recorded(trace: Trace, gpus: int) -> dict[str, Any] | None:
    """The recorded schedule's metrics (``None``: the trace records no start)."""
    if trace.started is None:
        return None
    known = ~np.isnan(trace.started)
    if not known.any():
        return None
    submit = trace.submit[known]
    started = trace.started[known]
    work = trace.work()[known]
    end = started + work
    jct = end - submit
    queueing = started - submit
    makespan = float(end.max())
    offered = float(np.sum(work * trace.gpus[known]))
    tenant_of = trace.tenant[known]
    tenants = []
    for k, name in enumerate(trace.tenants):
        mine = tenant_of == k
        if mine.any():
            tenants.append({"tenant": name, **tenant_jobs(mine, jct, queueing)})
    return {
        "label": LABEL,
        "jobs": {"total": len(trace), "finished": int(known.sum())},
        "jct": job_stats(jct),
        "queueing_delay": job_stats(queueing),
        "makespan": makespan,
        "utilisation": offered / (gpus * makespan) if makespan > 0 and gpus > 0 else 0.0,
        "tenants": tenants,
        "series": {"jct_quantiles": jct_quantiles(jct)},
    }
