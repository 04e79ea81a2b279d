"""The twin's replay settings and results as plain data: ``EngineConfig`` in,
``RunResult`` out (``sim.engine`` runs one, ``sim.metrics`` summarises the other).

Kept apart from the engine so that its event loop may be compiled with the core
(``setup.py``) while these stay ordinary dataclasses for every caller.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

from masnaa.sim.timeline import TimelineResult


@dataclass(frozen=True, slots=True)
class EngineConfig:
    policy: str = "masnaa"
    checkpoint_interval: float | None = 1800.0
    """Seconds of work between checkpoints; ``None``: a preempted job restarts from zero."""
    restart_overhead: float = 60.0
    """Seconds a restarted job spends reloading its checkpoint before doing work."""
    limit_percentile: float = 0.9
    default_limit: float = 4 * 3600.0
    half_life: float = 7 * 86400.0
    min_pass_interval: float = 0.0
    """0: a pass after every batch of events. Otherwise at most one pass per this many
    virtual seconds, as a periodic control loop would (documented in docs/twin.md)."""
    series_bins: int = 400
    gpus_per_node: int = 8
    knobs: tuple[tuple[str, float | int | bool], ...] = ()
    """``SchedulerConfig`` knobs set for this replay (``scheduler.config.knob``)."""
    skip_full_passes: bool = True
    """Skip a pass that cannot change anything (see ``Engine._futile``); the result is
    the same either way, only faster. ``False`` runs every pass (tests compare both)."""
    reuse_walks: bool = True
    """Hand reservation walks from pass to pass while the cluster is unchanged
    (``scheduler.PassMemo``); the decisions are the same either way (tests compare)."""

    def __post_init__(self) -> None:
        # Checked here, not in the event loop: a NaN overhead or a negative interval
        # would otherwise give a traceback, a replay that never ends, or negative work.
        if self.checkpoint_interval is not None and not (
            0 < self.checkpoint_interval < math.inf
        ):
            raise ValueError(
                f"the checkpoint interval must be a positive number of seconds (or none), "
                f"got {self.checkpoint_interval}"
            )
        for name in ("restart_overhead", "min_pass_interval"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name.replace('_', ' ')} must be ≥ 0 seconds, got {value}")


@dataclass(slots=True)
class RunResult:
    policy: str
    oracle: bool
    capacity: int
    jobs: int
    submit: array[float]
    work: array[float]
    end: array[float]
    gpus: array[int]
    tenant: array[int]
    tenants: tuple[str, ...]
    shares: tuple[float, ...]
    status: bytearray
    killed_at_limit: int
    rejected: dict[str, int]
    stranded: dict[str, int]
    preemptions: int
    requeues: array[int]
    """Per job: the times it was preempted and sent back to the queue."""
    lost_gpu_seconds: float
    useful_gpu_seconds: float
    estimate_extensions: int
    passes: int
    decide_seconds: float
    wall_seconds: float
    core: str
    """``core_build()``: the time fields depend on it."""
    invariant_checks: int
    timeline: TimelineResult
    skipped_lines: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    passes_skipped: int = 0
