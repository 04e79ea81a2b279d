"""The pure scheduler core: driver-owned state, the snapshot, the policies and ``decide()``.

Driver contract (``docs/architecture.md``, ``docs/scheduler.md``):

- ``ClusterState(cluster)``: the driver's incremental index of free GPUs (per
  node, GPU type, topology domain, site) and running jobs. ``allocate`` raises
  ``ValueError`` rather than ever letting a GPU be held twice or a job land on an
  unavailable node; ``release``, ``mark_preempting``, ``update_expected_end``,
  ``set_node_available`` keep the indexes current in O(GPUs touched).
- ``PendingQueue()``: pending jobs in per (tenant, priority class, service level,
  eligibility, gang shape) sub-queues, each in arrival order; a pass merges only
  the heads.
- ``UsageLedger(half_life)``: decayed GPU-seconds per tenant (fair share); pure.
- ``Snapshot``: what a pass reads; ``SchedulerConfig``: the policy and its knobs.
- ``decide(snapshot, pending, now, config, memo=None) -> Decision``: one pass
  (order → admit → place → preempt → backfill → explain). Never mutates its
  inputs; deterministic; strips ``Snapshot.oracle`` unless the policy is an oracle.
  ``PassMemo``: a driver may keep one and pass it to every pass, to reuse
  reservation walks while ``ClusterState.version`` is unchanged; decisions are
  the same without it.
- ``POLICIES``: ``fifo``, ``fifo-backfill``, ``las``, ``srtf-oracle`` (ORACLE), ``masnaa``.

No IO, no clock (``now`` is an argument), no globals, no randomness.
"""

from masnaa.scheduler.config import SchedulerConfig
from masnaa.scheduler.core import decide
from masnaa.scheduler.decision import (
    Decision,
    Preemption,
    Reservation,
    Start,
    Wait,
    WaitCode,
)
from masnaa.scheduler.memo import PassMemo
from masnaa.scheduler.policies import POLICIES, Policy
from masnaa.scheduler.queue import DEFAULT_LAS_THRESHOLDS, PendingQueue
from masnaa.scheduler.snapshot import Snapshot
from masnaa.scheduler.state import ClusterState
from masnaa.scheduler.usage import UsageLedger

__all__ = [
    "DEFAULT_LAS_THRESHOLDS",
    "POLICIES",
    "ClusterState",
    "Decision",
    "PassMemo",
    "PendingQueue",
    "Policy",
    "Preemption",
    "Reservation",
    "SchedulerConfig",
    "Snapshot",
    "Start",
    "UsageLedger",
    "Wait",
    "WaitCode",
    "decide",
]
