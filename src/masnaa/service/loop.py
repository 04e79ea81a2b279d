"""The control loop: the live driver of the scheduler core (its process: ``service.daemon``).

It drives the very ``decide()`` the twin drives; only the clock (wall
time), the executor (real processes, Slurm) and the store (the database)
differ. One pass, in numbered phases:

1. **observe**: sync drained/down nodes and the pending set from the store;
2. **drive** every admitted or running run: launch admitted attempts
   (idempotent), stop the ones with a cancel request or a preemption
   deadline (SIGTERM, grace, SIGKILL), poll the rest, and write what they
   reported: launches, refusals, and the runs that ended (``service.run_writes``);
   then meter the runs and refresh allocation balances (``service.metering``:
   a run's segment is written with ``running`` and closed with its settlement);
3. **decide** on the snapshot (its ``balances`` hold jobs of spent allocations);
4. **apply**: fail jobs that can never run, admit the starts, launch them at
   once, request preemptions, write every waiting job's reason and estimate.

A pass runs every ``tick`` seconds, and sooner when a cheap probe (the newest
job event id: every submission and cancel request writes one) moves, or
when the executor hints that a run ended.

Crash safety (the store is the truth; kill -9 at any instant is safe):
- ``admitted`` with its placement and a new attempt number is committed
  *before* the executor is asked to launch; launching is idempotent per
  (job, attempt); ``running`` is written after. A restart finds admitted
  rows and launches them again — a no-op for the ones already launched.
- A run's end is read from the executor's durable record, so a job that
  ended while the loop was down gets its real exit status; one that is still
  alive is adopted (the executor follows it again); one whose supervisor
  vanished is *lost* and requeued under the next attempt number.
- GPUs are taken in memory (``ClusterState``, which refuses a double
  assignment) before ``admitted`` is committed and given back only after
  the end of a run is committed; a restart rebuilds the index from the
  store's admitted and running rows.
- One loop per database: the loop holds a lease (``service.lease``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from masnaa.executors.base import (
    Executor,
    ExecutorUnavailable,
    LaunchRejected,
    LaunchSpec,
    Observed,
)
from masnaa.factory.apply import SITE_OPTIONS
from masnaa.scheduler import decide
from masnaa.scheduler.decision import Decision, WaitCode
from masnaa.service import apply, residency
from masnaa.service.evacuation import DrainWaits, unreachable_sites
from masnaa.service.launch import EXECUTOR_FACTORIES, Accounts, build_spec
from masnaa.service.lawful_sites import PendingSites
from masnaa.service.lease import LeaseHeld, LoopLease
from masnaa.service.metering import Meter
from masnaa.service.metrics import Metrics
from masnaa.service.run_writes import note_launch_retries, write_runs
from masnaa.service.scheduling import Knob, live_scheduler
from masnaa.service.site_choice import SitePrices
from masnaa.service.sites import SiteHealth, owner_names, record_starts
from masnaa.service.snapshot import ACTIVE, LiveState
from masnaa.store import models as m
from masnaa.store.db import make_engine, read_session_factory, session_factory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    db_url: str
    home: Path
    policy: str = "masnaa"
    knobs: tuple[Knob, ...] = ()
    """Scheduler knobs set away from their defaults (``service.scheduling``)."""
    tick: float = 0.5
    """Longest time between two passes."""
    probe_interval: float = 0.02
    """How often the cheap probe (store counters, local runs) checks for a reason to pass now."""
    half_life: float = 7 * 86400.0
    kill_grace: float = 30.0
    """SIGTERM→SIGKILL window at a job's time limit."""
    cancel_grace: float = 30.0
    """SIGTERM→SIGKILL window when a job is cancelled."""
    max_attempts: int = 5
    """Runs a job may have before a lost or outside-stopped run fails it."""
    lease_ttl: float = 15.0
    catalog_interval: float = 2.0
    """Seconds between reads of tenants, quotas and priority classes (changed through the API)."""
    full_sync: float = 30.0
    """Seconds between full re-reads of the pending set (see ``LiveState.sync_pending``)."""
    meter_interval: float = 60.0
    """Seconds of loop time between two metering ticks of running jobs (``service.metering``)."""
    price_interval: float = 300.0
    """Seconds between two reads of the sites' prices for site choice (``service.site_choice``)."""


@dataclass(slots=True)
class PassReport:
    started: int = 0
    settled: int = 0
    preempted: int = 0
    rejected: int = 0
    waits_written: int = 0
    seconds: float = 0.0
    transitions: list[tuple[str, str]] = field(default_factory=list)


class ControlLoop:
    """One control loop over one database (see the module docstring)."""

    def __init__(
        self,
        config: LoopConfig,
        *,
        engine: Engine | None = None,
        metrics: Metrics | None = None,
        executors: dict[str, Executor] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.engine = engine or make_engine(config.db_url, pool_size=2)
        self._own_engine = engine is None
        self.write: sessionmaker[Session] = session_factory(self.engine)
        self.read: sessionmaker[Session] = read_session_factory(self.engine)
        self.metrics = metrics
        self.clock = clock
        self.scheduler = live_scheduler(config.policy, config.knobs)
        self._executors = executors
        self.executors: dict[str, Executor] = {}
        self.site_executor: dict[str, str] = {}
        """Site → key in ``executors`` (``local`` is shared; ``slurm:<site>`` one per site)."""
        self.live: LiveState | None = None
        self.nvml_index: dict[str, int] = {}
        self._stops: set[tuple[str, int]] = set()
        self._waits: dict[str, apply.WaitRecord] = {}
        self._probe: int | None = None
        """The newest job event id seen when the last pass began."""
        self.lease = LoopLease(self.write, config.lease_ttl)
        self._full_sync = self._catalog_at = time.monotonic()
        self.wakeup = threading.Event()
        self.meter = Meter(self.read, self.write, interval=config.meter_interval, metrics=metrics)
        self.health = SiteHealth()
        """Sites whose engine reports its own health (Slurm): see ``service.sites``."""
        self.prices = SitePrices(config.price_interval)
        self.drains = DrainWaits()
        """Words the wait of a job that drains keep from all its sites (``service.evacuation``)."""
        self.lawful = PendingSites()
        """Keeps jobs' lawful sites true as grounds expire (``service.lawful_sites``)."""
        self._names: tuple[dict[int, str], dict[int, str]] = ({}, {})
        self.accounts = Accounts()  # the Unix account of each tenant's jobs (``launch``)

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Take the lease, build the in-memory state, and reconcile with the executors."""
        now = self.clock()
        self.lease.take(now)
        with self.read() as s:
            sites = {row.name: row.executor for row in s.scalars(select(m.Site))}
            options = {
                row.key.removeprefix(SITE_OPTIONS): row.value
                for row in s.scalars(
                    select(m.ServiceState).where(m.ServiceState.key.startswith(SITE_OPTIONS))
                )
            }
            self.live = LiveState.load(s, now=now, half_life=self.config.half_life)
            self.meter.load(s, now)
            self.accounts = Accounts.load(s)
        self.live.balances = self.meter.balances
        for site, name in sites.items():
            key = name if name == "local" else f"{name}:{site}"
            try:
                if self._executors is not None:
                    self.executors.setdefault(key, self._executors[name])
                elif key not in self.executors:
                    build = EXECUTOR_FACTORIES[name]
                    self.executors[key] = build(self.config.home, site, options.get(site, {}))
            except Exception as exc:  # whatever went wrong, this site takes no work
                log.warning("site %s: its %r executor is not available here (%s)", site, name, exc)
                self.live.block_site(site)
                continue
            self.site_executor[site] = key
        if "local" in self.executors:
            self.nvml_index = _probe_nvml_indices()
        self._probe_sites(now)
        # Reconcile: the first drive adopts live runs, records ended ones, requeues lost ones
        # and launches admitted ones, exactly as any later pass would.
        report = PassReport()
        self._drive(now, report)
        self._count_transitions(report)
        log.info(
            "control loop started: %d running, %d pending, %d settled at start",
            len(self.live.state.running),
            len(self.live.pending),
            report.settled,
        )

    def _rebuild(self) -> None:
        """Drop the in-memory state and rebuild it from the store (after a failed pass)."""
        with self.read() as s:
            self.live = LiveState.load(s, now=self.clock(), half_life=self.config.half_life)
            self.meter.load(s, self.clock())
        self.live.balances = self.meter.balances
        self._waits.clear()

    # -- the pass ------------------------------------------------------------------------------
    def run_pass(self) -> PassReport:
        """One pass: observe, drive, decide, apply."""
        assert self.live is not None, "call start() first"
        t0 = time.perf_counter()
        now = self.clock()
        report = PassReport()
        self._probe = self._last_event()
        self.lease.renew(now)
        self._observe()  # 1
        self._drive(now, report)  # 2
        if report.settled:  # a drain committed since observe may be why a run just ended
            with self.read() as s:
                self.live.sync_nodes(s)
        if report.settled and self.health.unusable:  # a node may have just failed under a run
            self._probe_sites(now)
            self._block_unusable()
        self.meter.tick(now)  # usage records of the runs, then the balances for admission
        self.meter.sync(now)
        self.live.balances = self.meter.balances
        if self.prices.due(now):  # rate cards and exchange rates, for choosing among sites
            with self.read() as s:
                self.prices.refresh(s, now)
        self.live.site_prices = self.prices.value
        decision = decide(self.live.snapshot(), self.live.queue, now, self.scheduler)  # 3
        self._apply(decision, now, report)  # 4
        self.live.reserved_for = decision.reserved_for(self.live.reserved_for, self.live.pending)
        report.seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.pass_seconds.observe(report.seconds)
        self._count_transitions(report)
        return report

    def _count_transitions(self, report: PassReport) -> None:
        if self.metrics is not None:
            for a, b in report.transitions:
                self.metrics.transition(a, b)

    def _observe(self) -> None:
        assert self.live is not None
        full = time.monotonic() - self._full_sync >= self.config.full_sync
        self._probe_sites(self.clock())
        with self.read() as s:
            self.live.sync_nodes(s)
            self.live.sync_pending(s, full=full)
            if time.monotonic() - self._catalog_at >= self.config.catalog_interval:
                self.live.sync_catalog(s)
                self._catalog_at = time.monotonic()
            stale = self.lawful.due(s, self.clock())
        if stale:  # a ground expired or the rules changed: jobs keep only lawful sites
            with self.write() as s, s.begin():
                changed, failed = self.lawful.refresh(s, self.clock())
            for job_id in (*changed, *failed):
                self.live.dequeue(job_id)
            with self.read() as s:
                for item in self.live.load_pending(s, changed):
                    self.live.enqueue(item)
        self._block_unusable()
        if full:
            self._full_sync = time.monotonic()

    # -- phase 2: drive the runs ---------------------------------------------------------------
    def _probe_sites(self, now: float) -> None:
        """Once a pass: is each site's engine answering, which of its nodes are unusable."""
        self.health.probe(
            self.write,
            {site: self.executors[key] for site, key in self.site_executor.items()},
            now,
        )

    def _block_unusable(self) -> None:
        """Nodes the engine reports drained, down or failing take no new work."""
        assert self.live is not None
        for node in self.health.node_overrides():
            if node in self.live.cluster.by_name and self.live.state.is_available(node):
                self.live.state.set_node_available(node, False)

    def _executor(self, site: str | None) -> Executor | None:
        name = self.site_executor.get(site or "")
        return self.executors.get(name) if name else None

    def _drive(self, now: float, report: PassReport) -> None:
        assert self.live is not None
        with self.read() as s:
            rows = list(s.scalars(select(m.Job).where(m.Job.state.in_([a.value for a in ACTIVE]))))
            cut_off = unreachable_sites(s) if rows else set()
        cut_off -= self.health.down.keys()  # runs go on under the engine; nothing requeued
        began: dict[str, tuple[int, Observed]] = {}
        launched: dict[str, int] = {}
        rejected: dict[str, tuple[int, str]] = {}
        ended: dict[str, tuple[int, Observed]] = {}
        # Launch admitted attempts, batched per executor (idempotent: a restart repeats it).
        to_launch: dict[str, list[m.Job]] = {}
        for row in rows:
            # A run cancelled or moved (a drain) before it was launched is not launched.
            if (row.state == m.JobState.ADMITTED.value and not row.cancel_requested
                    and row.preempt_deadline is None):
                name = self.site_executor.get(row.site or "")
                if name is not None and row.site not in self.health.down:
                    to_launch.setdefault(name, []).append(row)
        skip: set[str] = set()
        retrying: dict[str, tuple[int, str]] = {}
        for name, candidates in to_launch.items():
            batch, specs = [], []
            for row in candidates:
                try:
                    specs.append(self._spec(row))
                    batch.append(row)
                except LaunchRejected as exc:  # e.g. an empty command: it can never run
                    skip.add(row.id)
                    rejected[row.id] = (row.attempt, str(exc))
            results = self.executors[name].start_many(specs)
            for row, error in zip(batch, results, strict=True):
                if error is None:
                    launched[row.id] = row.attempt
                    continue
                skip.add(row.id)
                if isinstance(error, LaunchRejected):
                    rejected[row.id] = (row.attempt, str(error))
                else:
                    log.warning("cannot launch %s now: %s", row.id, error)
                    why = f"its site cannot start it yet ({error}); it is tried again each pass"
                    if row.wait_message != why:  # written once, not every pass
                        retrying[row.id] = (row.attempt, why)
        for row in rows:
            executor = self._executor(row.site)
            if executor is None or row.id in skip or row.site in self.health.down:
                continue
            key = (row.id, row.attempt)
            if row.site in cut_off:  # requeued; placed again only at its (lawful) sites
                with contextlib.suppress(ExecutorUnavailable):
                    executor.stop(row.id, row.attempt, 0.0, "site unreachable")
                ended[row.id] = (row.attempt, Observed(
                    "lost", message=f"site {row.site} was marked unreachable"))
                continue
            if row.cancel_requested and key not in self._stops:
                self._stop(executor, row, self.config.cancel_grace, "cancelled")
            elif row.preempt_deadline is not None and key not in self._stops:
                self._stop(executor, row, max(0.0, row.preempt_deadline - now), "preempted")
            try:
                seen = executor.poll(row.id, row.attempt)
            except (ExecutorUnavailable, OSError) as exc:  # this run only; the others go on
                log.warning("cannot poll %s now: %s", row.id, exc)
                continue
            if seen.done or (seen.state == "absent" and row.cancel_requested):
                ended[row.id] = (row.attempt, seen)
            elif (seen.state == "absent" and row.state == m.JobState.ADMITTED.value
                  and row.preempt_deadline is not None):
                # Moved before it was launched: back to the queue, nothing to stop.
                ended[row.id] = (row.attempt, Observed(
                    "lost", message="it was moved before it started"))
            elif seen.state == "running" and row.started_at is None and row.id not in launched:
                began[row.id] = (row.attempt, seen)  # held by the engine, or just began
            elif seen.state == "absent" and row.state == m.JobState.RUNNING.value:
                # Running in the store, unknown to the executor: its launch record is gone.
                ended[row.id] = (
                    row.attempt,
                    Observed("lost", message="the executor has no record of it"),
                )
        if retrying:
            with self.write() as s, s.begin():
                note_launch_retries(s, retrying)
        if began:
            with self.write() as s, s.begin():
                record_starts(s, began, self.meter.on_start)
        if launched or rejected or ended:
            self._write_runs(now, launched, rejected, ended, report)

    def _stop(self, executor: Executor, row: m.Job, grace: float, reason: str) -> None:
        try:
            executor.stop(row.id, row.attempt, grace, reason)
        except ExecutorUnavailable as exc:
            log.warning("cannot stop %s now: %s", row.id, exc)
            return
        self._stops.add((row.id, row.attempt))

    def _spec(self, row: m.Job) -> LaunchSpec:
        assert self.live is not None
        tenants, projects = self._names
        if row.tenant_id not in tenants or row.project_id not in projects:
            with self.read() as s:
                self._names = tenants, projects = owner_names(s)
                self.accounts = Accounts.load(s)
        return build_spec(
            row,
            node_uuids=self.live.node_uuids,
            nvml_index=self.nvml_index,
            kill_grace=self.config.kill_grace,
            tenant=tenants.get(row.tenant_id),
            project=projects.get(row.project_id),
            run_as=self.accounts.of(tenants.get(row.tenant_id)),
        )

    def _write_runs(
        self,
        now: float,
        launched: dict[str, int],
        rejected: dict[str, tuple[int, str]],
        ended: dict[str, tuple[int, Observed]],
        report: PassReport,
    ) -> None:
        assert self.live is not None

        def queues(site: str | None) -> bool:
            executor = self._executor(site)
            return executor is not None and executor.capabilities.queues

        with self.write() as s, s.begin():
            done = write_runs(
                s, now=now, launched=launched, rejected=rejected, ended=ended,
                meter=self.meter, queues=queues, max_attempts=self.config.max_attempts,
            )
            # A ground may have expired, or the rules changed, while a requeued job ran: it
            # goes back only to a site its data may go to now, or fails if none is left.
            _, unlawful = self.lawful.judge(s, done.requeued, now)
        report.transitions.extend(done.transitions)
        report.transitions.extend(("pending", "failed") for _ in unlawful)
        report.settled += done.settled
        # The store has it; now the index follows.
        for job_id, (attempt, _seen) in ended.items():
            self._stops.discard((job_id, attempt))
        with self.read() as s:
            for job_id in done.released:
                self.live.release(job_id, now)
            requeued = [j for j in done.requeued if j not in unlawful]
            for item in self.live.load_pending(s, requeued):
                self.live.enqueue(item)

    # -- phase 4: apply the decision -----------------------------------------------------------
    def _apply(self, decision: Decision, now: float, report: PassReport) -> None:
        assert self.live is not None
        live = self.live
        if decision.rejected:
            with self.write() as s, s.begin():
                failed = apply.reject(s, decision.rejected, now=now)
            for job_id in failed:
                live.dequeue(job_id)
                report.transitions.append(("pending", "failed"))
            report.rejected = len(failed)
        if decision.starts:
            self._start(decision, now, report)
        if decision.preemptions:
            with self.write() as s, s.begin():
                issued = apply.request_preemptions(s, decision.preemptions, now=now)
            for p in issued:
                if p.job_id in live.state.running:
                    live.state.mark_preempting(p.job_id, p.deadline)
                executor = self._executor(p.site)
                if executor is not None:
                    try:
                        executor.stop(p.job_id, p.attempt, p.grace, "preempted")
                        self._stops.add((p.job_id, p.attempt))
                    except ExecutorUnavailable as exc:
                        log.warning("cannot stop %s now: %s", p.job_id, exc)
            report.preempted = len(issued)
        # Jobs the pass did not reach share the default wait; only changes are candidates.
        d = decision.default_wait
        default: apply.WaitRecord = (d.code.value, (d.why,), d.estimated_start)
        waits: dict[str, apply.WaitRecord] = {}
        written = self._waits
        drained = self.drains.explain(  # a drain keeps it from every site it may use
            self.read, decision.waiting,
            lambda j: live.queue.get(j).sites if j in live.pending else None, now,
        )
        spent = decision.spent
        for job_id in live.pending:
            w = decision.waiting.get(job_id)
            if w is None and spent:  # jobs of spent projects are named once, by project
                w = spent.get(live.queue.get(job_id).project)
            record = (w.code.value, (w.why,), w.estimated_start) if w is not None else default
            if w is not None and job_id in drained:
                record = (w.code.value, drained[job_id], w.estimated_start)
            if w is not None and w.code is WaitCode.ALLOCATION_EXHAUSTED:
                why = self.meter.wait_reason(live.queue.get(job_id).project, now)
                record = (w.code.value, (why or w.why,), w.estimated_start)
            if written.get(job_id) != record:
                waits[job_id] = record
        for gone in [k for k in written if k not in live.pending]:
            del written[gone]
        if waits:
            with self.write() as s, s.begin():
                report.waits_written = apply.record_waits(s, waits, self._waits)

    def _start(self, decision: Decision, now: float, report: PassReport) -> None:
        assert self.live is not None
        live = self.live
        held = []
        for start in decision.starts:
            try:
                live.state.allocate(
                    live.starting(start.job_id, start.placement, start.gpu_type, now)
                )
            except ValueError as exc:  # the core never asks for this; refuse rather than share
                log.error("refusing start of %s: %s", start.job_id, exc)
                continue
            held.append(start)
        try:
            with self.write() as s, s.begin():
                admitted = apply.admit(
                    s, held, now=now, log_paths=self._log_paths, why=decision.site_choices
                )
                residency.audit_placements(s, admitted, now=now)  # proof, same transaction
        except Exception:
            for start in held:
                live.state.release(start.job_id)
            raise
        ok = {a.job_id for a in admitted}
        for start in held:
            job = live.queue.get(start.job_id)
            if start.job_id in ok:
                live.dequeue(start.job_id)
                live.usage.start(job.id, job.tenant, job.total_gpus, now)
                self._waits.pop(start.job_id, None)
                report.transitions.append(("pending", "admitted"))
            else:
                live.state.release(start.job_id)
        report.started = len(admitted)
        if admitted:
            # Launch at once (the same idempotent path a restart takes for admitted rows).
            self._drive(now, report)

    def _log_paths(self, site: str, job_id: str, attempt: int) -> tuple[str, str] | None:
        executor = self._executor(site)
        return executor.log_paths(job_id, attempt) if executor is not None else None

    # -- running ---------------------------------------------------------------------------------
    def _last_event(self) -> int:
        with self.read() as s:
            return int(s.scalar(select(func.max(m.JobEvent.id))) or 0)

    def _changed(self) -> bool:
        """Cheap: did anything happen to a job since the last pass began, or did a run end?

        Every change of a job (a submission, a cancel request) writes a ``job_events``
        row, so the newest event id — one index lookup — says whether to pass now.
        """
        if self._last_event() > (self._probe or 0):
            return True
        return any(executor.news() for executor in self.executors.values())

    def run(self, stop: threading.Event) -> None:
        """Pass until ``stop`` is set. Runs keep running after it returns."""
        if self.live is None:
            self.start()
        last = 0.0
        while not stop.is_set():
            now = time.monotonic()
            try:
                due = now - last >= self.config.tick or self.wakeup.is_set() or self._changed()
                if due:
                    self.wakeup.clear()
                    last = now
                    self.run_pass()
            except LeaseHeld:
                raise
            except OperationalError as exc:  # the database is busy or away: try again soon
                log.warning("pass failed on the database, retrying: %s", exc)
                stop.wait(min(1.0, self.config.tick))
            except Exception:
                # A bug must not stop the factory: every pass starts from the store again, and
                # runs keep going under their supervisors meanwhile.
                log.exception("pass failed; retrying after %gs", self.config.tick)
                self._rebuild()
                stop.wait(self.config.tick)
            stop.wait(self.config.probe_interval)

    def close(self) -> None:
        for executor in self.executors.values():
            executor.close()
        if self._own_engine:
            self.engine.dispose()

    def release_lease(self) -> None:
        """Give the database up to the next loop at once (a clean stop)."""
        self.lease.release()


def _probe_nvml_indices() -> dict[str, int]:
    from masnaa.discovery.inventory import NvmlUnavailable, probe_nvml

    try:
        return {g.uuid: g.nvml_index for g in probe_nvml()}
    except NvmlUnavailable:
        return {}
