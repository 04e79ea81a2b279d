"""``review``: when a pass that did not let a job do something would, by the clock alone.

Owns ``Decision.review_at`` (``SchedulerConfig.review_times``): the earliest time a
rule that reads the clock (a wait limit, a victim's age or service) says yes where
this pass said no. The rules themselves are the policies' (``Policy.wait_limits``,
``Policy.review``); this module only asks them at the end of a pass.
"""

from __future__ import annotations

import bisect
import math

from masnaa.scheduler.context import Pass
from masnaa.scheduler.queue import Entry


def review(p: Pass) -> None:
    """``Decision.review_at``: the earliest time at which a clock-driven rule would let a
    job do what this pass did not let it do (``SchedulerConfig.review_times``).

    It reads the state as the pass leaves it and the sub-queues, never what the scan
    happened to look at, so a pass that explains and one that does not give the same
    time (the twin's replays must not depend on explanations). Waits: in each
    sub-queue (by arrival), the first job yet to reach each of its tenant's
    ``Policy.wait_limits``, found by bisection. Victims: ``Policy.review``, which may
    ask for the head of each sub-queue. It may be early (a job whose wait reaches
    ``reclaim_after`` may still find no victim); a review in excess costs one pass
    that changes nothing.
    """
    pending, policy, now = p.pending, p.policy, p.now
    # By sort key: a sub-queue holds sort keys, so no entry need be looked up.
    started = {pending.entry(s.job_id).sort_key for s in p.decision.starts}
    limits: dict[str, tuple[float, ...]] = {}
    soonest = math.inf  # ``p.revisit`` once, with the earliest
    for key, q in pending.sub_queues().items():
        tenant = key[0]
        mine = limits.get(tenant)
        if mine is None:
            mine = limits[tenant] = policy.wait_limits(tenant, p)
        for limit in mine:
            # The first job of the sub-queue (in arrival order) not yet at the limit.
            j = _not_started(q, bisect.bisect_right(q, (now - limit, math.inf)), started)
            if j < len(q):
                at = q[j][0] + limit
                if now < at < soonest:
                    soonest = at
    p.revisit(soonest)

    def heads() -> list[Entry]:
        out = []
        for q in pending.sub_queues().values():
            i = _not_started(q, 0, started)
            if i < len(q):
                out.append(pending.entry_at(q[i]))
        return out

    policy.review(heads, p)
    if p.review_at != math.inf:
        p.decision.review_at = p.review_at


def _not_started(q: list[tuple[float, int]], i: int, started: set[tuple[float, int]]) -> int:
    """The first position from ``i`` on whose job this pass did not start."""
    while i < len(q) and q[i] in started:
        i += 1
    return i
