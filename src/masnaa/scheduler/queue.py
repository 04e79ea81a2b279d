"""``PendingQueue``: pending jobs kept ordered incrementally, in sub-queues.

Owns: every job waiting to start, with its attained service (GPU-seconds
received in earlier runs) and the time it entered the queue (``since``).

Jobs are kept in **sub-queues** keyed by ``(tenant, priority class, service
level, GPU types, sites, tasks, GPUs per task)``; each sub-queue is sorted by
``(since, arrival sequence)``. The job's eligibility (its GPU types and sites)
and its gang shape are part of the key so that a pass can pass over every job
that asks for hardware with no room left, or for a gang no smaller than one that
already failed to fit, in one step rather than one job at a time: the sub-queues
are an index of the queue by shape, each in policy order. Every
policy's order is monotone inside a sub-queue, so a scheduling pass merges only
the sub-queue *heads* with a small heap (as Kueue does with its cluster queue
heads) and never sorts the whole queue: a pass costs O(jobs it looks at ×
log sub-queues), not O(pending).

The *service level* is the index of the first threshold in
``level_thresholds`` (GPU-seconds) that the attained service is below:
attained ``< t[0]`` → level 0, ``< t[1]`` → 1, ..., else ``len(t)``. Levels are
the discretised least-attained-service queues of Tiresias; ``decide()``
requires the queue's thresholds to equal ``SchedulerConfig.las_thresholds``.

Invariants: a job id appears once; ``since`` defaults to the job's submit time
and a requeued job should be added with the time it was requeued. The top of
each time-limit heap (the whole queue's, and one per sub-queue) is always a
pending job: stale entries are dropped when they surface, so
``min_time_limit`` and ``queue_min_time_limit`` are O(1) and pure.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from masnaa.domain.job import Job

DEFAULT_LAS_THRESHOLDS: tuple[float, ...] = (3_600.0, 36_000.0)
"""Service-level thresholds in GPU-seconds: 1 GPU-hour and 10 GPU-hours."""

SubQueueKey = tuple[str, str, int, tuple[str, ...], tuple[str, ...] | None, int, int]
"""``(tenant, priority class, service level, GPU types, sites, tasks, GPUs per task)``."""

Shape = tuple[tuple[str, ...], tuple[str, ...] | None, int, int]
"""``(gpu_types, sites, tasks, gpus_per_task)``: what decides whether a job can ever fit."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending job in a sub-queue."""

    since: float
    seq: int
    job: Job
    attained: float

    @property
    def sort_key(self) -> tuple[float, int]:
        return (self.since, self.seq)


def service_level(attained: float, thresholds: tuple[float, ...]) -> int:
    """Index of the first threshold ``attained`` is below (``len(thresholds)`` if none)."""
    return bisect.bisect_right(thresholds, attained)


class PendingQueue:
    """Pending jobs in per (tenant, class, level, eligibility, shape) sub-queues, each
    in arrival order.

    ``add`` and ``remove`` cost O(log n) plus a memmove; ``__iter__`` yields
    jobs by ``(since, arrival)`` across all sub-queues.
    """

    __slots__ = (
        "_demand_per_task",
        "_entries",
        "_keys",
        "_level_thresholds",
        "_limits",
        "_project_jobs",
        "_projects",
        "_queue_limits",
        "_queues",
        "_seq",
        "_shapes",
    )

    def __init__(self, *, level_thresholds: tuple[float, ...] = DEFAULT_LAS_THRESHOLDS) -> None:
        if list(level_thresholds) != sorted(level_thresholds) or any(
            t <= 0 for t in level_thresholds
        ):
            raise ValueError(
                f"level_thresholds must be positive and ascending, got {level_thresholds!r}"
            )
        self._level_thresholds = tuple(level_thresholds)
        self._queues: dict[SubQueueKey, list[tuple[float, int]]] = {}
        self._entries: dict[str, Entry] = {}
        self._keys: dict[tuple[float, int], str] = {}
        self._seq = 0
        self._demand_per_task: dict[int, int] = {}
        self._shapes: dict[Shape, dict[str, None]] = {}
        self._limits: list[tuple[float, int, str]] = []
        self._queue_limits: dict[SubQueueKey, list[tuple[float, int, str]]] = {}
        self._projects: dict[SubQueueKey, dict[str, int]] = {}
        """Per sub-queue: project → its jobs there (what ``admit`` needs to pass over a
        sub-queue whose projects have all spent their allocation)."""
        self._project_jobs: dict[str, int] = {}
        """Project → its pending jobs, over all sub-queues."""

    @property
    def level_thresholds(self) -> tuple[float, ...]:
        return self._level_thresholds

    def add(self, job: Job, attained_service: float = 0.0, *, since: float | None = None) -> None:
        """Enqueue ``job``. ``since``: when it (re-)entered the queue; default its submit time.

        Raises ``ValueError`` if the id is already pending or the attained service
        is negative.
        """
        if job.id in self._entries:
            raise ValueError(f"job {job.id!r} is already pending")
        if attained_service < 0:
            raise ValueError(
                f"job {job.id!r}: attained_service must be ≥ 0, got {attained_service}"
            )
        entry = Entry(
            since=job.submit_time if since is None else since,
            seq=self._seq,
            job=job,
            attained=attained_service,
        )
        self._seq += 1
        key = self._key(job, attained_service)
        q = self._queues.setdefault(key, [])
        sk = entry.sort_key
        if not q or q[-1] < sk:
            q.append(sk)
        else:
            bisect.insort(q, sk)
        self._entries[job.id] = entry
        self._keys[sk] = job.id
        g = job.gpus_per_task
        self._demand_per_task[g] = self._demand_per_task.get(g, 0) + 1
        self._shapes.setdefault(_shape(job), {})[job.id] = None
        item = (job.time_limit, entry.seq, job.id)
        heapq.heappush(self._limits, item)
        heapq.heappush(self._queue_limits.setdefault(key, []), item)
        projects = self._projects.setdefault(key, {})
        projects[job.project] = projects.get(job.project, 0) + 1
        self._project_jobs[job.project] = self._project_jobs.get(job.project, 0) + 1

    def remove(self, job_id: str) -> Job:
        """Dequeue and return a job (it starts, or is cancelled). ``KeyError`` if absent."""
        entry = self._entries.pop(job_id, None)
        if entry is None:
            raise KeyError(f"job {job_id!r} is not pending")
        job = entry.job
        key = self._key(job, entry.attained)
        q = self._queues[key]
        sk = entry.sort_key
        k = bisect.bisect_left(q, sk)
        del q[k]
        if not q:
            del self._queues[key]
            del self._queue_limits[key]
            del self._projects[key]
        else:
            self._queue_limits[key] = self._drop_stale(self._queue_limits[key], len(q))
            projects = self._projects[key]
            projects[job.project] -= 1
            if not projects[job.project]:
                del projects[job.project]
        del self._keys[sk]
        left = self._project_jobs[job.project] - 1
        if left:
            self._project_jobs[job.project] = left
        else:
            del self._project_jobs[job.project]
        g = job.gpus_per_task
        self._demand_per_task[g] -= 1
        if not self._demand_per_task[g]:
            del self._demand_per_task[g]
        shape = _shape(job)
        ids = self._shapes[shape]
        del ids[job.id]
        if not ids:
            del self._shapes[shape]
        self._limits = self._drop_stale(self._limits, len(self._entries))
        return job

    def _drop_stale(
        self, limits: list[tuple[float, int, str]], live: int
    ) -> list[tuple[float, int, str]]:
        """Pop entries of jobs no longer pending off the top of a time-limit heap;
        rebuild it when stale entries outnumber the ``live`` ones."""
        entries = self._entries
        if len(limits) > 2 * live + 64:
            limits = [x for x in limits if (e := entries.get(x[2])) is not None and e.seq == x[1]]
            heapq.heapify(limits)
            return limits
        while limits:
            _, seq, job_id = limits[0]
            e = entries.get(job_id)
            if e is not None and e.seq == seq:
                break
            heapq.heappop(limits)
        return limits

    def _key(self, job: Job, attained: float) -> SubQueueKey:
        level = service_level(attained, self._level_thresholds)
        return (
            job.tenant, job.priority_class, level, job.gpu_types, job.sites, job.tasks,
            job.gpus_per_task,
        )

    def get(self, job_id: str) -> Job:
        entry = self._entries.get(job_id)
        if entry is None:
            raise KeyError(f"job {job_id!r} is not pending")
        return entry.job

    def attained(self, job_id: str) -> float:
        """GPU-seconds the job received in earlier runs."""
        entry = self._entries.get(job_id)
        if entry is None:
            raise KeyError(f"job {job_id!r} is not pending")
        return entry.attained

    def since(self, job_id: str) -> float:
        """When the job (re-)entered the queue."""
        entry = self._entries.get(job_id)
        if entry is None:
            raise KeyError(f"job {job_id!r} is not pending")
        return entry.since

    def entry(self, job_id: str) -> Entry:
        entry = self._entries.get(job_id)
        if entry is None:
            raise KeyError(f"job {job_id!r} is not pending")
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def __iter__(self) -> Iterator[Job]:
        """Jobs by (since, arrival), i.e. submit order for jobs never requeued."""
        for sk in heapq.merge(*self._queues.values()):
            yield self._entries[self._keys[sk]].job

    # ------------------------------------------------- for the scheduling pass
    def sub_queues(self) -> dict[SubQueueKey, list[tuple[float, int]]]:
        """The sub-queues (read-only by convention): key → sorted ``(since, seq)`` keys."""
        return self._queues

    def entry_at(self, sort_key: tuple[float, int]) -> Entry:
        return self._entries[self._keys[sort_key]]

    def shapes(self) -> dict[Shape, dict[str, None]]:
        """Pending job ids by shape, in arrival order (read-only by convention)."""
        return self._shapes

    def tasks_by_size(self) -> dict[int, int]:
        """Pending jobs per ``gpus_per_task`` (read-only by convention)."""
        return self._demand_per_task

    def min_gpus_per_task(self) -> int | None:
        """The smallest ``gpus_per_task`` of any pending job (``None`` when empty)."""
        return min(self._demand_per_task) if self._demand_per_task else None

    def min_time_limit(self) -> float | None:
        """The shortest time limit of any pending job (``None`` when empty)."""
        return self._limits[0][0] if self._limits else None

    def projects(self) -> dict[str, int]:
        """Projects with pending jobs, with how many (read-only by convention)."""
        return self._project_jobs

    def queue_projects(self, key: SubQueueKey) -> dict[str, int]:
        """Projects with jobs in one sub-queue, with how many (read-only by convention;
        ``KeyError`` if it is empty)."""
        return self._projects[key]

    def queue_min_time_limit(self, key: SubQueueKey) -> float:
        """The shortest time limit in one sub-queue (``KeyError`` if it is empty)."""
        return self._queue_limits[key][0][0]


def _shape(job: Job) -> Shape:
    return (job.gpu_types, job.sites, job.tasks, job.gpus_per_task)
