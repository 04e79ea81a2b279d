"""A workload trace: what the twin replays, stored by column.

A trace is a list of jobs that were submitted at known times and ran for known
durations. It is held as NumPy columns (one row per job, sorted by submit
time) because a million-job replay must fit in well under 2 GB; the engine
makes a ``Job`` only when a row arrives.

Terms and invariants:
- ``submit`` is seconds since the trace's first submission (so ``submit[0]``
  is 0 for a non-empty trace) and is non-decreasing;
- ``runtime`` is the true duration in seconds (> 0). Only the twin knows it;
  the scheduler sees it only through oracle policies;
- ``time_limit`` is the limit the user asked for, or NaN where the trace has
  none (the twin then derives a planning estimate, see ``limits``);
- ``tenant`` and ``gpu_type`` index into ``tenants`` and ``gpu_types``;
  ``gpu_type`` is -1 where the trace names no type (any type will do);
- ``tasks`` is the number of nodes the user asked for, or 0 to let the twin
  shape the gang (``job_shape``);
- ``ids`` are the trace's own job ids (for reports), in row order;
- ``started``, where the trace records it (a Slurm history does), is when each
  job started on the cluster it came from, in the same seconds as ``submit``
  (NaN where unknown): what that cluster's own scheduler did, to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from masnaa.sim.errors import TraceError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line a lenient load dropped, with the reason."""

    line: int
    reason: str


@dataclass(slots=True)
class Trace:
    name: str
    submit: FloatArray
    runtime: FloatArray
    gpus: IntArray
    tenant: IntArray
    time_limit: FloatArray
    gpu_type: IntArray
    tasks: IntArray
    tenants: tuple[str, ...]
    gpu_types: tuple[str, ...] = ()
    ids: list[str] = field(default_factory=list)
    sites: list[tuple[str, ...] | None] | None = None
    """Per row, the sites the job may run at; ``None`` (the whole column): any."""
    skipped: list[SkippedLine] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    """Well-formed rows that are not GPU jobs to replay, by reason (e.g. CPU-only)."""
    notes: dict[str, int] = field(default_factory=dict)
    """Rows replayed with a field taken as unknown, by reason (e.g. a recorded start
    before the submit time)."""
    origin: str | None = None
    """Wall-clock time of ``submit == 0`` where the trace has one (ISO 8601)."""
    started: FloatArray | None = None
    """Recorded start per row (see the module docstring); ``None``: the trace records none."""

    def __len__(self) -> int:
        return int(self.submit.shape[0])

    @property
    def span(self) -> float:
        """Seconds from the first submission to the last."""
        return float(self.submit[-1] - self.submit[0]) if len(self) else 0.0

    def check_replayable(self) -> None:
        """Raise ``TraceError`` unless every submit time is finite, every runtime finite
        and > 0, and every limit NaN (none) or finite and > 0. The loaders refuse such
        lines already; this guards traces made in code, since a NaN event time would
        stop the engine's clock (no comparison with it is ever true) for ever."""
        limits = self.time_limit[~np.isnan(self.time_limit)]
        bad = [
            name for name, ok in (
                ("submit times", np.isfinite(self.submit).all()),
                ("runtimes", (np.isfinite(self.runtime) & (self.runtime > 0)).all()),
                ("time limits", (np.isfinite(limits) & (limits > 0)).all()),
            ) if not ok
        ]
        if bad:
            raise TraceError(
                "bad-trace", f"trace {self.name!r} has {' and '.join(bad)} that are not finite "
                "positive numbers; the twin cannot replay them"
            )

    def work(self) -> FloatArray:
        """Seconds of work each job does: its runtime, cut at its limit where it has one."""
        limited = np.where(np.isnan(self.time_limit), np.inf, self.time_limit)
        return np.minimum(self.runtime, limited)

    def offered_gpu_seconds(self) -> float:
        return float(np.sum(self.work() * self.gpus))

    def peak_demand(self) -> int:
        """The most GPUs busy at once if every job started when submitted and ran its
        work: a cluster at least this large never makes a job wait for GPUs (placement
        aside), whatever the load factor says. On a short slice of a heavy-tailed trace
        most of the offered GPU-time lies after the last submission, so sizing for a
        load over the span can give a cluster larger than this."""
        if not len(self):
            return 0
        gpus = self.gpus.astype(np.int64)
        times = np.concatenate([self.submit, self.submit + self.work()])
        deltas = np.concatenate([gpus, -gpus])
        # At one instant ends come first: a job that ends frees its GPUs for one that starts.
        order = np.lexsort((deltas, times))
        return int(np.max(np.cumsum(deltas[order])))

    def tenant_gpu_seconds(self) -> FloatArray:
        """Offered GPU-seconds per tenant (index = tenant index)."""
        return np.bincount(
            self.tenant, weights=self.work() * self.gpus, minlength=len(self.tenants)
        ).astype(np.float64)

    def take(self, rows: npt.NDArray[Any]) -> Trace:
        """A new trace of the given rows (sorted positions), rebased to start at 0."""
        rows = np.asarray(rows)
        submit = self.submit[rows]
        base = float(submit[0]) if submit.shape[0] else 0.0
        return Trace(
            name=self.name,
            submit=submit - base,
            runtime=self.runtime[rows],
            gpus=self.gpus[rows],
            tenant=self.tenant[rows],
            time_limit=self.time_limit[rows],
            gpu_type=self.gpu_type[rows],
            tasks=self.tasks[rows],
            tenants=self.tenants,
            gpu_types=self.gpu_types,
            ids=[self.ids[int(i)] for i in rows] if self.ids else [],
            sites=[self.sites[int(i)] for i in rows] if self.sites is not None else None,
            skipped=list(self.skipped),
            ignored=dict(self.ignored),
            notes=dict(self.notes),
            origin=self.origin,
            started=None if self.started is None else self.started[rows] - base,
        )

    def jittered(self, seed: int, seconds: float) -> Trace:
        """The same jobs, each submitted up to ``seconds`` later (uniform, seeded), in
        their new order (ties keep the old one).

        For ``masnaa sim --repeat``: how far a metric moves over a few such replays
        says how large a difference between two policies a moment's change can make.
        """
        rng = np.random.default_rng(seed)
        shifted = self.submit + rng.uniform(0.0, seconds, len(self))
        return replace(self, submit=shifted).take(np.argsort(shifted, kind="stable"))

    def slice(
        self, *, start_days: float = 0.0, days: float | None = None, limit: int | None = None
    ) -> Trace:
        """Jobs submitted in ``[start_days, start_days + days)`` (days after the first
        submission), then the first ``limit`` of them."""
        if start_days < 0 or (days is not None and days <= 0) or (limit is not None and limit <= 0):
            raise TraceError(
                "bad-slice",
                "--start must be ≥ 0 and --days and --limit must be positive",
            )
        lo = start_days * 86400.0
        hi = np.inf if days is None else lo + days * 86400.0
        rows = np.nonzero((self.submit >= lo) & (self.submit < hi))[0]
        if limit is not None:
            rows = rows[:limit]
        if rows.shape[0] == 0:
            raise TraceError(
                "empty-slice",
                f"no job of trace {self.name!r} was submitted in the chosen window "
                f"(the trace spans {self.span / 86400:.1f} days)",
            )
        return self.take(rows)


class TraceBuilder:
    """Collects rows in any order and builds a sorted ``Trace``.

    Ties in submit time keep the order rows were added in, so a trace loads to
    the same replay every time.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._submit: list[float] = []
        self._runtime: list[float] = []
        self._gpus: list[int] = []
        self._tenant: list[int] = []
        self._limit: list[float] = []
        self._type: list[int] = []
        self._tasks: list[int] = []
        self._ids: list[str] = []
        self._sites: list[tuple[str, ...] | None] = []
        self._started: list[float] = []
        self._any_started = False
        self._any_sites = False
        self._tenant_index: dict[str, int] = {}
        self._type_index: dict[str, int] = {}
        self.skipped: list[SkippedLine] = []
        self.ignored: dict[str, int] = {}
        self.notes: dict[str, int] = {}

    def add(
        self,
        *,
        submit: float,
        runtime: float,
        gpus: int,
        tenant: str,
        time_limit: float | None = None,
        gpu_type: str | None = None,
        tasks: int = 0,
        job_id: str | None = None,
        sites: Sequence[str] | None = None,
        started: float | None = None,
    ) -> None:
        t = self._tenant_index.setdefault(tenant, len(self._tenant_index))
        g = -1 if not gpu_type else self._type_index.setdefault(gpu_type, len(self._type_index))
        self._submit.append(submit)
        self._runtime.append(runtime)
        self._gpus.append(gpus)
        self._tenant.append(t)
        self._limit.append(np.nan if time_limit is None else time_limit)
        self._type.append(g)
        self._tasks.append(tasks)
        self._ids.append(job_id if job_id is not None else str(len(self._ids)))
        self._started.append(np.nan if started is None else started)
        self._any_started = self._any_started or started is not None
        if sites:
            self._any_sites = True
            self._sites.append(tuple(sites))
        else:
            self._sites.append(None)

    def skip(self, line: int, reason: str) -> None:
        self.skipped.append(SkippedLine(line, reason))

    def ignore(self, reason: str, jobs: int = 1) -> None:
        """Count ``jobs`` well-formed jobs left out of the replay for ``reason``."""
        self.ignored[reason] = self.ignored.get(reason, 0) + jobs

    def note(self, reason: str) -> None:
        """Count a replayed row with a field taken as unknown for ``reason``."""
        self.notes[reason] = self.notes.get(reason, 0) + 1

    def build(self, origin: str | None = None) -> Trace:
        if not self._submit:
            why = ""
            if self.skipped:  # with --lenient: say what was dropped, or the error is a riddle
                first = self.skipped[0]
                n = len(self.skipped)
                why = (f"; {n} malformed line{'s were' if n > 1 else ' was'} skipped, the "
                       f"first: line {first.line}: {first.reason}")
            if self.ignored:
                why += "; ignored: " + ", ".join(
                    f"{count} {reason}" for reason, count in sorted(self.ignored.items())
                )
            raise TraceError(
                "empty-trace", f"trace {self.name!r} holds no GPU job to replay{why}"
            )
        submit = np.asarray(self._submit, dtype=np.float64)
        order = np.argsort(submit, kind="stable")
        base = float(submit[order[0]])
        ids = [self._ids[int(i)] for i in order]
        return Trace(
            name=self.name,
            submit=submit[order] - base,
            runtime=np.asarray(self._runtime, dtype=np.float64)[order],
            gpus=np.asarray(self._gpus, dtype=np.int64)[order],
            tenant=np.asarray(self._tenant, dtype=np.int64)[order],
            time_limit=np.asarray(self._limit, dtype=np.float64)[order],
            gpu_type=np.asarray(self._type, dtype=np.int64)[order],
            tasks=np.asarray(self._tasks, dtype=np.int64)[order],
            tenants=tuple(self._tenant_index),
            gpu_types=tuple(self._type_index),
            ids=ids,
            sites=[self._sites[int(i)] for i in order] if self._any_sites else None,
            skipped=self.skipped,
            ignored=self.ignored,
            notes=self.notes,
            origin=origin,
            started=(
                np.asarray(self._started, dtype=np.float64)[order] - base
                if self._any_started else None
            ),
        )


def job_shape(gpus: int, tasks: int, gpus_per_node: int) -> tuple[int, int]:
    """``(tasks, gpus_per_task)`` for a gang of ``gpus`` GPUs.

    A job that fits in one node is one task. A larger one is split into the
    fewest equal tasks that each fit a node (32 → 4 × 8; 12 → 2 × 6), which is
    how such jobs are launched (one task per node). A trace that names the node
    count keeps it when the GPUs divide evenly.
    """
    if tasks > 0 and gpus % tasks == 0 and gpus // tasks <= gpus_per_node:
        return tasks, gpus // tasks
    if gpus <= gpus_per_node:
        return 1, gpus
    for per in range(gpus_per_node, 0, -1):
        if gpus % per == 0:
            return gpus // per, per
    return gpus, 1  # unreachable: per == 1 always divides
