"""The twin's discrete-event engine: the second driver of the scheduler core.

It replays a ``Trace`` on a ``Cluster`` with a virtual clock. Arrivals are
read from the sorted trace by a cursor; every other event sits in a heap:
completions (END), the end of a preemption's grace period (GRACE), a running
job reaching its planning estimate (ESTIMATE) and the time the last pass asked to
be looked at again (REVIEW, ``Decision.review_at``: a rule that reads the clock,
such as ``reclaim_after``, says yes then). After each batch of events with the
same time, the engine builds a ``Snapshot`` and calls ``decide()`` once (only
when jobs are pending and something happened: events of runs already stopped are
dropped lazily and bring none), then applies the ``Decision``. Passes run with
``estimate_depth=0`` and ``explain_waits=False``: start estimates and wait
reasons only explain, never change what starts, and the twin does not read them.

- **starts**: the job leaves the ``PendingQueue``, takes its placement in the
  ``ClusterState``, accrues usage in the ``UsageLedger``; its END is scheduled
  at start + restart overhead (on restarts) + its remaining work;
- **preemptions**: ``mark_preempting``; at the grace end the job releases its
  GPUs and is requeued with its attained service (GPU-seconds held so far).
  It keeps the work saved at its last periodic checkpoint (every
  ``checkpoint_interval`` seconds of work since its run began) and loses the
  rest; the lost GPU-seconds are counted;
- **rejected**: the job fails with the scheduler's reason, counted by code.

True runtimes live only here. ``Snapshot.oracle`` (a lazy mapping job id →
true remaining seconds) is passed only when the policy declares ``oracle``.

Time limits: a trace's requested limit is the job's ``time_limit``, per run as in
Slurm and the live service: each run, restarts included, may last that long from
its own start (reload time included), and a run that reaches it kills the job (its
work is cut there, counted in ``killed_at_limit``). Without one, the limit is a
planning estimate from the tenant's completed jobs (``LimitEstimator``); a job that
outruns it is not killed: at its expected end the engine doubles the time it has run
so far as the new expected end (``update_expected_end``), so the reservations that
leaned on it are recomputed at the next pass.

Invariants, checked on every start and release (a violation raises
``InvariantViolation``): the placement is the whole gang (each slice a whole
number of tasks, on nodes of an acceptable type and site); no GPU is held
twice (the engine keeps its own count and bitmask per node, ``sim.holdings``,
independent of ``ClusterState``'s checks); GPUs held never exceed the cluster.

A batch that leaves jobs pending with no event ahead and no start or
preemption is a dead end: those jobs are counted as **stranded** with the
scheduler's wait reason, and the run ends. A job stopped ``RUNS_LOST_LIMIT`` times
in a row before saving any work is stranded too, with ``lost-every-run``: under las,
jobs that outlast the starvation limit and checkpoint less often than promoted jobs
take turns lose every run for ever, and the replay would never end (sparing them
instead changes what las does where jobs checkpoint: docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import gc
import heapq
import math
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mypy_extensions import mypyc_attr

from masnaa.domain import Cluster, Job, PriorityClass, Quota, RunningJob, Tenant
from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES
from masnaa.scheduler import (
    POLICIES,
    ClusterState,
    PendingQueue,
    SchedulerConfig,
    Snapshot,
    UsageLedger,
    decide,
)
from masnaa.scheduler.decision import Decision, WaitCode
from masnaa.scheduler.memo import PassMemo
from masnaa.sim.build import core_build
from masnaa.sim.errors import InvariantViolation, SimError
from masnaa.sim.fit import Pools
from masnaa.sim.holdings import Holdings
from masnaa.sim.limits import LimitEstimator
from masnaa.sim.records import EngineConfig, RunResult
from masnaa.sim.timeline import Timeline
from masnaa.sim.trace import Trace, job_shape

END, GRACE, ESTIMATE, TICK, REVIEW = 0, 1, 2, 3, 4
FUTURE, PENDING, RUNNING, DONE, REJECTED, STRANDED = 0, 1, 2, 3, 4, 5
RUNS_LOST_LIMIT = 1000
"""Runs in a row that saved nothing after which a job is given up: far more than any
job of whole Philly was stopped at all (356 times, under las at load 0.9)."""
LOST_EVERY_RUN = "lost-every-run"
INF = math.inf


class _Oracle(Mapping[str, float]):
    """True remaining seconds of pending and running jobs, computed on demand."""

    def __init__(self, engine: Engine) -> None:
        self._e = engine

    def __getitem__(self, job_id: str) -> float:
        e = self._e
        try:
            i = int(job_id)
        except ValueError:
            raise KeyError(job_id) from None
        if not 0 <= i < e.n:
            raise KeyError(job_id)
        st = e.status[i]
        if st == RUNNING:
            return max(0.0, e.end_at[i] - e.now)
        if st == PENDING:
            overhead = e.cfg.restart_overhead if e.attempts[i] else 0.0
            rest = float(e.work[i] - e.progress[i] + overhead)
            limit = e.limit_col[i]
            return rest if math.isnan(limit) else min(rest, limit)  # a run ends at its limit
        raise KeyError(job_id)

    def __iter__(self) -> Iterator[str]:
        e = self._e
        for i in range(e.n):
            if e.status[i] in (PENDING, RUNNING):
                yield str(i)

    def __len__(self) -> int:
        return sum(1 for _ in self)


# Compiled with the core (``setup.py``): drivers such as ``residency_scenario``
# subclass it to watch a replay, which mypyc allows only when asked.
@mypyc_attr(allow_interpreted_subclasses=True)
class Engine:
    """One replay of one trace under one policy. Build, ``run()`` once."""

    def __init__(
        self,
        trace: Trace,
        cluster: Cluster,
        tenants: tuple[Tenant, ...],
        quotas: tuple[Quota, ...],
        config: EngineConfig,
        *,
        priority_classes: tuple[PriorityClass, ...] = DEFAULT_PRIORITY_CLASSES,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if config.policy not in POLICIES:
            raise SimError(
                "unknown-policy",
                f"unknown policy {config.policy!r}; valid policies: {', '.join(sorted(POLICIES))}",
            )
        trace.check_replayable()
        self.cfg = config
        self.trace = trace
        self.cluster = cluster
        self.n = n = len(trace)
        # Passes skip start estimates and most wait reasons (``estimate_depth=0``,
        # ``explain_waits=False``): the twin reads only starts, preemptions and
        # rejections, which neither changes. The dead-end pass that names why stranded
        # jobs wait keeps the service's settings.
        knobs: dict[str, Any] = dict(config.knobs)
        self.explain_cfg = SchedulerConfig(policy=config.policy, **knobs)
        self.sched_cfg = dataclasses.replace(
            self.explain_cfg, estimate_depth=0, explain_waits=False, review_times=True
        )
        self.oracle_on = bool(getattr(POLICIES[config.policy], "oracle", False))
        thresholds = getattr(self.sched_cfg, "las_thresholds", None)
        self.queue = (
            PendingQueue(level_thresholds=thresholds) if thresholds is not None else PendingQueue()
        )
        self.state = ClusterState(cluster)
        self.usage = UsageLedger(half_life=config.half_life)
        self.tenant_map = {t.name: t for t in tenants}
        self.quotas = quotas
        self.classes = {p.name: p for p in priority_classes}
        self.limits = LimitEstimator(
            percentile=config.limit_percentile, default=config.default_limit
        )
        self.progress_cb = progress

        # Trace columns as Python containers: element access on NumPy arrays is slow.
        self.submit = array("d", trace.submit.tolist())
        # The work each job does: its runtime, until a run is killed at its limit.
        self.work = array("d", trace.runtime.tolist())
        self.limit_col = trace.time_limit.tolist()
        self.killing = bytearray(n)  # the current run ends at the job's requested limit
        self.gpus_col = array("q", trace.gpus.tolist())
        self.tenant_col = array("q", trace.tenant.tolist())
        self.type_col = trace.gpu_type.tolist()
        self.tasks_col = trace.tasks.tolist()
        self.tenant_names = trace.tenants
        self.shapes: dict[tuple[int, int], tuple[int, int]] = {}
        self.sites_col = trace.sites

        self.status = bytearray(n)
        self.progress = array("d", bytes(8 * n))
        self.attained = array("d", bytes(8 * n))
        self.run_start = array("d", bytes(8 * n))
        self.run_overhead = array("d", bytes(8 * n))
        self.end_at = array("d", bytes(8 * n))
        self.token = array("q", bytes(8 * n))
        self.attempts = array("q", bytes(8 * n))
        self.runs_lost = array("q", bytes(8 * n))  # the last runs in a row that saved nothing
        self.preempting = bytearray(n)
        self.finish = array("d", [math.nan]) * n

        # Independent bookkeeping for the invariant checks and fragmentation.
        self.holdings = Holdings(cluster)
        self.capacity = self.holdings.capacity
        self.all_types = tuple(t.name for t in cluster.gpu_types)
        self.pools = Pools(cluster)

        nt = len(trace.tenants)
        self.running_t = [0] * nt
        self.demand_t = [0] * nt
        shares = [self.tenant_map[t].share if t in self.tenant_map else 1.0 for t in trace.tenants]
        self.shares = tuple(shares)
        span = max(trace.span, 1.0)
        self.timeline = Timeline(
            shares, self.capacity, span / max(1, config.series_bins), 2 * max(1, config.series_bins)
        )
        self.next_sample = 0.0

        self.heap: list[tuple[float, int, int, int]] = []
        self.now = 0.0
        self.last_pass = -INF
        self.tick_at = INF
        self.review_at = INF
        """When the scheduled REVIEW is due (``Decision.review_at`` of the last pass)."""
        self.review_token = 0
        self.oracle = _Oracle(self)
        # The snapshot holds references to the live state objects (and the lazy oracle),
        # so one snapshot serves every pass.
        self.snapshot = Snapshot(
            state=self.state,
            usage=self.usage,
            tenants=self.tenant_map,
            quotas=self.quotas,
            priority_classes=self.classes,
            oracle=self.oracle if self.oracle_on else None,
        )
        self.done = 0
        self.killed_at_limit = 0
        self.rejected: dict[str, int] = {}
        self.stranded: dict[str, int] = {}
        self.preemptions = 0
        self.lost = 0.0
        self.useful = 0.0
        self.extensions = 0
        self.passes = 0
        self.passes_skipped = 0
        self.skip_full = config.skip_full_passes and not POLICIES[config.policy].preemptive
        # Shapes some pass has already run through ``reject`` (the cluster never changes,
        # so a shape once accepted stays accepted).
        self.checked_shapes: set[object] = set()
        self.decide_seconds = 0.0
        self.memo = PassMemo() if config.reuse_walks else None

    # ------------------------------------------------------------------ loop
    def run(self) -> RunResult:
        # A pass allocates many short-lived objects while the trace and cluster live for
        # the whole replay: collecting young objects rarely keeps the cyclic collector
        # from rescanning the trace again and again. The thresholds are restored when
        # the replay ends, however it ends. (No gc.freeze(): it cannot be undone for
        # only our objects once someone else in the process has frozen theirs, and the
        # portal runs replays inside the server.)
        thresholds = gc.get_threshold()
        gc.set_threshold(100_000, 50, 1_000)
        try:
            return self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> RunResult:
        wall = time.perf_counter()
        heap = self.heap
        submit = self.submit
        status = self.status
        token = self.token
        n = self.n
        ptr = 0
        batches = 0
        while True:
            if ptr >= n and not self.holdings.held and not len(self.queue):
                # Every job is over. What the heap still holds is stale (an estimate
                # past a job's end, a review): following it would stretch the time
                # series past the makespan with idle bins.
                break
            ta = submit[ptr] if ptr < n else INF
            te = heap[0][0] if heap else INF
            t = ta if ta < te else te
            if t != t:  # NaN: every test against it is false, so the clock would stand still
                raise SimError("bad-time", f"an event of the replay fell at {t} seconds")
            if t == INF:
                if len(self.queue):  # the last events were stale: no pass stranded them
                    self._strand(self.now)
                break
            if t > self.now:
                self._advance(t)
            live = False
            while heap and heap[0][0] <= t:
                _, kind, i, tok = heapq.heappop(heap)
                if kind == TICK:
                    self.tick_at = INF
                elif kind == REVIEW:
                    if tok != self.review_token:
                        continue  # a later pass asked for another time
                    self.review_at = INF
                elif status[i] != RUNNING or token[i] != tok:
                    continue  # stale: the run it belonged to is over
                elif kind == END:
                    self._complete(i, t)
                elif kind == GRACE:
                    self._requeue(i, t)
                else:
                    self._extend(i, t)
                live = True
            while ptr < n and submit[ptr] <= t:
                self._arrive(ptr, t)
                ptr += 1
                live = True
            # Only stale events came due: nothing happened, so no pass (a pass here would
            # read the clock at an instant no event chose; ``Decision.review_at`` does that).
            if live and len(self.queue):
                # The same sum as ``tick_at``: ``t - last_pass`` may round below the
                # interval at the very tick that was set for it, and the tick would then
                # be set again at the same instant, for ever.
                if t >= self.last_pass + self.cfg.min_pass_interval:
                    self._pass(t)
                    if len(self.queue) and not heap and ptr >= n:
                        self._strand(t)
                elif self.tick_at == INF:
                    self.tick_at = self.last_pass + self.cfg.min_pass_interval
                    heapq.heappush(heap, (self.tick_at, TICK, -1, 0))
            batches += 1
            if self.progress_cb is not None and not batches & 2047:
                self.progress_cb(self.done, n)
        if self.progress_cb is not None:
            self.progress_cb(self.done, n)
        return self._result(time.perf_counter() - wall)

    # ---------------------------------------------------------------- events
    def _advance(self, t: float) -> None:
        while self.next_sample <= t:
            self._sample(self.next_sample)
            self.next_sample += self.timeline.bin_width
        self.timeline.advance(self.now, t, self.running_t, self.demand_t)
        self.now = t

    def _arrive(self, i: int, t: float) -> None:
        k = self.tenant_col[i]
        tenant = self.tenant_names[k]
        gpus = self.gpus_col[i]
        key = (gpus, self.tasks_col[i])
        shape = self.shapes.get(key)
        if shape is None:
            shape = self.shapes[key] = job_shape(gpus, key[1], self.cfg.gpus_per_node)
        tasks, per_task = shape
        ti = self.type_col[i]
        types = (self.trace.gpu_types[ti],) if ti >= 0 else self.all_types
        sites = self.sites_col[i] if self.sites_col is not None else None
        limit = self.limit_col[i]
        if math.isnan(limit):
            limit = self.limits.estimate(tenant)
        job = Job(
            id=str(i), tenant=tenant, project=tenant, tasks=tasks, gpus_per_task=per_task,
            gpu_types=types, time_limit=limit, submit_time=t, sites=sites,
        )
        if not self.pools.fits(job.total_gpus, job.gpus_per_task, types, sites):
            self._fail(i, WaitCode.TOO_LARGE.value)
            return
        self.status[i] = PENDING
        self.demand_t[k] += gpus
        self.queue.add(job, 0.0)

    def _complete(self, i: int, t: float) -> None:
        running = self._release(i, t)
        self.status[i] = DONE
        self.finish[i] = t
        self.done += 1
        k = self.tenant_col[i]
        self.demand_t[k] -= running.job.total_gpus
        if self.killing[i]:
            self.killed_at_limit += 1
            self.work[i] = self.progress[i] + max(0.0, t - self.run_start[i] - self.run_overhead[i])
        self.useful += self.work[i] * self.gpus_col[i]
        self.limits.completed(running.job.tenant, self.work[i])

    def _requeue(self, i: int, t: float) -> None:
        running = self._release(i, t)
        ran = t - self.run_start[i]
        worked = max(0.0, ran - self.run_overhead[i])
        interval = self.cfg.checkpoint_interval
        saved = math.floor(worked / interval) * interval if interval else 0.0
        self.progress[i] += saved
        self.lost += (ran - saved) * running.job.total_gpus
        self.attempts[i] += 1
        if saved > 0.0:
            self.runs_lost[i] = 0
        else:
            self.runs_lost[i] += 1
            if self.runs_lost[i] >= RUNS_LOST_LIMIT:
                self._give_up(i, running.job.total_gpus, LOST_EVERY_RUN)
                return
        self.status[i] = PENDING
        self.queue.add(running.job, self.attained[i], since=t)

    def _extend(self, i: int, t: float) -> None:
        ran = t - self.run_start[i]
        new_end = t + max(ran, 60.0)
        self.state.update_expected_end(str(i), new_end)
        self.extensions += 1
        if new_end < self.end_at[i]:
            heapq.heappush(self.heap, (new_end, ESTIMATE, i, self.token[i]))

    # ------------------------------------------------------------------ pass
    def _futile(self) -> bool:
        """True when a pass can change nothing, so the engine may skip it.

        Only for policies that never preempt: such a pass can only start jobs or
        reject them. No job can start when fewer GPUs are free in the whole cluster
        than the smallest task of any pending job asks for (a task lives on one node).
        No job would be rejected when every pending shape already went through an
        earlier pass (rejection depends on the shape and the cluster alone). Start
        estimates and wait reasons differ, but the twin reads neither.
        """
        smallest = self.queue.min_gpus_per_task()
        return (
            smallest is not None
            and self.capacity - self.holdings.held < smallest
            and self.queue.shapes().keys() <= self.checked_shapes
        )

    def _pass(self, t: float) -> None:
        if self.skip_full:
            if self._futile():
                self.passes_skipped += 1
                self.last_pass = t  # as if it ran: pass pacing stays the same
                return
            self.checked_shapes.update(self.queue.shapes())
        t0 = time.perf_counter()
        decision = decide(self.snapshot, self.queue, t, self.sched_cfg, self.memo)
        self.decide_seconds += time.perf_counter() - t0
        self.passes += 1
        self.last_pass = t
        self._apply(decision, t)
        if self.sched_cfg.hold_reservation:
            held = decision.reserved_for(self.snapshot.reserved_for, self.queue)
            if held != self.snapshot.reserved_for:
                self.snapshot = dataclasses.replace(self.snapshot, reserved_for=held)
        # One review at a time: the latest pass's (an earlier pass's is dropped).
        review = INF if decision.review_at is None else decision.review_at
        if review != self.review_at:
            self.review_at = review
            self.review_token += 1
            if review != INF:
                heapq.heappush(self.heap, (review, REVIEW, -1, self.review_token))

    def _apply(self, d: Decision, t: float) -> None:
        for job_id, wait in d.rejected.items():
            if job_id in self.queue:
                job = self.queue.remove(job_id)
                i = int(job_id)
                self.demand_t[self.tenant_col[i]] -= job.total_gpus
                self._fail(i, wait.code.value)
        for s in d.starts:
            self._start(s.job_id, s.placement, s.gpu_type, s.site, t)
        for p in d.preemptions:
            i = int(p.job_id)
            if self.status[i] != RUNNING or self.preempting[i]:
                continue
            self.preempting[i] = 1
            deadline = t + max(0.0, p.grace_seconds)
            self.state.mark_preempting(p.job_id, deadline)
            self.preemptions += 1
            heapq.heappush(self.heap, (deadline, GRACE, i, self.token[i]))

    def _start(self, job_id: str, placement: Any, gpu_type: str, site: str, t: float) -> None:
        i = int(job_id)
        try:
            job = self.queue.remove(job_id)
        except KeyError:
            raise InvariantViolation(
                "start-not-pending", f"the decision starts job {job_id} which is not pending"
            ) from None
        self.holdings.hold(job, placement, gpu_type)
        overhead = self.cfg.restart_overhead if self.attempts[i] else 0.0
        remaining = self.work[i] - self.progress[i]
        end = t + overhead + remaining
        if math.isnan(self.limit_col[i]):
            expected = t + overhead + max(job.time_limit - self.progress[i], 60.0)
        else:
            expected = t + job.time_limit  # a requested limit is per run, as in Slurm
        # A run that would outlast its requested limit is killed there, ending the job.
        self.killing[i] = not math.isnan(self.limit_col[i]) and expected < end
        if self.killing[i]:
            end = expected
        try:
            self.state.allocate(
                # The run resumes from its last checkpoint once the restart is paid.
                RunningJob(job, placement, gpu_type, t, expected,
                           attained_service=self.attained[i], last_checkpoint=t + overhead,
                           checkpoint_every=self.cfg.checkpoint_interval,
                           requeues=self.attempts[i])
            )
        except ValueError as e:
            raise InvariantViolation("bad-placement", str(e)) from None
        self.usage.start(job_id, job.tenant, job.total_gpus, t)
        self.status[i] = RUNNING
        self.preempting[i] = 0
        self.token[i] += 1
        tok = self.token[i]
        self.run_start[i] = t
        self.run_overhead[i] = overhead
        self.end_at[i] = end
        self.running_t[self.tenant_col[i]] += job.total_gpus
        heapq.heappush(self.heap, (end, END, i, tok))
        if expected < end:
            heapq.heappush(self.heap, (expected, ESTIMATE, i, tok))

    def _release(self, i: int, t: float) -> RunningJob:
        job_id = str(i)
        running = self.state.release(job_id)
        self.usage.stop(job_id, t)
        g = running.job.total_gpus
        self.attained[i] += (t - self.run_start[i]) * g
        self.running_t[self.tenant_col[i]] -= g
        self.holdings.release(running.placement)
        self.preempting[i] = 0
        self.status[i] = FUTURE
        return running

    def _fail(self, i: int, code: str) -> None:
        self.status[i] = REJECTED
        self.rejected[code] = self.rejected.get(code, 0) + 1

    def _strand(self, t: float) -> None:
        decision = decide(self.snapshot, self.queue, t, self.explain_cfg)
        for job in list(self.queue):
            code = decision.wait_for(job.id, job.project).code.value
            self.queue.remove(job.id)
            self._give_up(int(job.id), job.total_gpus, code)

    def _give_up(self, i: int, gpus: int, code: str) -> None:
        """Count job ``i`` (out of the queue, holding nothing) as stranded for ``code``."""
        self.status[i] = STRANDED
        self.demand_t[self.tenant_col[i]] -= gpus
        self.stranded[code] = self.stranded.get(code, 0) + 1

    def _sample(self, t: float) -> None:
        if not len(self.queue):
            return
        free, partial, stranded = self.holdings.fragments(self.queue.min_gpus_per_task() or 1)
        self.timeline.sample(t, free, partial, stranded, len(self.queue))

    def _result(self, wall: float) -> RunResult:
        return RunResult(
            policy=self.cfg.policy,
            oracle=self.oracle_on,
            capacity=self.capacity,
            jobs=self.n,
            submit=self.submit,
            work=self.work,
            end=self.finish,
            gpus=self.gpus_col,
            tenant=self.tenant_col,
            tenants=self.tenant_names,
            shares=self.shares,
            status=self.status,
            killed_at_limit=self.killed_at_limit,
            rejected=dict(sorted(self.rejected.items())),
            stranded=dict(sorted(self.stranded.items())),
            preemptions=self.preemptions,
            requeues=self.attempts,
            lost_gpu_seconds=self.lost,
            useful_gpu_seconds=self.useful,
            estimate_extensions=self.extensions,
            passes=self.passes,
            decide_seconds=self.decide_seconds,
            wall_seconds=wall,
            core=core_build(),
            invariant_checks=self.holdings.checks,
            timeline=self.timeline.finish(max((e for e in self.finish if e == e), default=0.0)),
            skipped_lines=len(self.trace.skipped),
            config={
                "checkpoint_interval": self.cfg.checkpoint_interval,
                "restart_overhead": self.cfg.restart_overhead,
                "limit_percentile": self.cfg.limit_percentile,
                "default_limit": self.cfg.default_limit,
                "half_life": self.cfg.half_life,
                "min_pass_interval": self.cfg.min_pass_interval,
                "knobs": dict(self.cfg.knobs),
            },
            passes_skipped=self.passes_skipped,
        )
