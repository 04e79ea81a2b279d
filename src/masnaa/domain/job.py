"""Jobs and their placements.

A job is a gang of ``tasks`` × ``gpus_per_task`` GPUs that starts all at once
or not at all. ``gpu_types`` is an ordered preference list of acceptable GPU
types. ``time_limit`` is what the user asked for (seconds): the only duration
any non-oracle policy may use. A job's true runtime is deliberately *not* a
field: only the simulator knows it, and it hands it only to oracle policies.

A placement names exact GPU indices on exact nodes. One slice per node; a task
never spans nodes, several tasks may share a node.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    tenant: str
    project: str
    tasks: int
    gpus_per_task: int
    gpu_types: tuple[str, ...]
    time_limit: float
    priority_class: str = "normal"
    submit_time: float = 0.0
    sites: tuple[str, ...] | None = None
    """Sites this job may run at (after residency); ``None``: any site."""

    total_gpus: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tasks <= 0 or self.gpus_per_task <= 0:
            raise ValueError(
                f"job {self.id!r}: tasks and gpus_per_task must be positive, "
                f"got {self.tasks}×{self.gpus_per_task}"
            )
        if not self.gpu_types:
            raise ValueError(f"job {self.id!r}: name at least one acceptable GPU type")
        if self.time_limit <= 0:
            raise ValueError(f"job {self.id!r}: time_limit must be positive, got {self.time_limit}")
        object.__setattr__(self, "total_gpus", self.tasks * self.gpus_per_task)


@dataclass(frozen=True, slots=True)
class PlacementSlice:
    node: str
    gpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    slices: tuple[PlacementSlice, ...]

    @property
    def gpu_count(self) -> int:
        return sum(len(s.gpus) for s in self.slices)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.slices)


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding GPUs since ``start_time``.

    ``attained_service`` is GPU-seconds received before this run (for LAS and
    fair share across restarts). ``expected_end`` is the driver's current
    estimate (start + time limit, or an extended estimate in the twin); the
    scheduler uses it for reservations and start-time estimates.
    ``last_checkpoint`` is the last checkpoint the driver knows of and, with
    ``checkpoint_every``, the run is taken to checkpoint again every that many
    seconds after it: together they say what a preemption would lose now. The
    twin knows both (a run resumes from a checkpoint once its restart overhead is
    paid); a driver that knows neither leaves them unset, and then a victim is
    taken to lose everything since its start.
    ``requeues`` counts the times the job was stopped and sent back to the queue
    before this run (preempted, or its node lost).
    """

    job: Job
    placement: Placement
    gpu_type: str
    start_time: float
    expected_end: float
    attained_service: float = 0.0
    last_checkpoint: float | None = None
    preempt_deadline: float | None = None
    """Set once a preemption was issued: the GPUs free up by then."""
    checkpoint_every: float | None = None
    requeues: int = 0
