"""The ``slurm`` executor: Masnaa decides who, when and where; a site's Slurm runs it.

Contract (see ``masnaa.executors.base`` for the words):

- **Start** claims the attempt durably (``records``: ``mkdir`` of its
  directory, one winner across processes), then submits one batch job with
  ``sbatch --parsable``, pinned to the placement Masnaa chose
  (``--nodelist``, ``--nodes``, GPUs per node), named
  ``masnaa-<job>-<attempt>`` with the comment ``masnaa:<job>:<attempt>``.
  A second ``start`` of a claimed attempt does nothing, except when no
  ``sbatch`` answer was ever recorded for it (the controller did not answer,
  or the process died mid-dispatch): then Slurm is asked first whether a job
  of that attempt exists (adopted if so), and only if none does is it
  submitted. Nothing is ever submitted twice. An attempt already judged lost
  is never submitted again.
- **Observation** (``poll_many``): one ``squeue`` per pass for all
  attempts (its fixed ``--format`` text by default, ``--json`` on request),
  plus one ``sinfo --json`` for node states, then the attempt's own records.
  The batch script's ``exit`` record is the truth for the exit status;
  Slurm's state is used only when the script could not write one (what
  records and states mean: ``outcome``). An attempt Slurm still holds
  pending is reported ``running`` with ``started_at=None`` and Slurm's
  reason in ``message`` (the base contract has no queued state; usage must
  be charged from ``started_at``).
- **Lost**: a node the attempt runs on is DOWN or FAIL in Slurm (its Slurm
  job is cancelled at once, so a requeued attempt never runs beside it);
  Slurm ended it itself (``NODE_FAIL``, ``BOOT_FAIL``, ...); a node it waits
  for, pinned, takes no new work (also drained, maintenance, not responding);
  Slurm forgot it with no exit record; or the claim never became a Slurm job
  within ``claim_timeout``. A drained or not-responding node does not lose
  what already runs there: Slurm lets it run, and declares the node DOWN
  itself (``SlurmdTimeout``) when slurmd is really gone. "Lost" is written
  to the attempt's records and is final.
- **Stop**: the ``stop`` record (grace, deadline, reason), then
  ``scancel --batch --signal=TERM``; the batch script forwards one SIGTERM to
  the command's session and SIGKILLs it when the grace ends. The record is
  the intent (written first, so a crash cannot forget it); ``signalled`` says
  the signal was delivered. Until it is, every ``stop`` and every pass sends
  it again, with the grace that remains to the recorded deadline. The executor's
  own backstop: the first pass after ``deadline + stop_margin`` runs a plain
  ``scancel``. A job still pending in Slurm is cancelled at once.
- **Time limit**: the batch script enforces it to the second (SIGTERM,
  ``kill_grace``, SIGKILL, reason ``time-limit``); Slurm's ``--time`` (limit +
  grace + slack, in whole minutes) is the backstop.
- **Errors**: ``SiteUnreachable`` (an ``ExecutorUnavailable``) when the
  controller does not answer: nothing changed, try again on a later pass.
  ``SlurmRejected`` (a ``LaunchRejected``) when Slurm refuses the submission.
- **Speed**: each call is one round trip to the controller (``start``: one
  ``sbatch``); ``start_many`` submits on ``dispatch_threads`` threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from masnaa.domain.cluster import Node
from masnaa.domain.reasons import Phrase, english
from masnaa.executors.base import (
    Capabilities,
    Executor,
    LaunchRejected,
    LaunchSpec,
    Observed,
)
from masnaa.executors.slurm import outcome
from masnaa.executors.slurm.commands import (
    SiteUnreachable,
    SlurmCommands,
    SlurmRejected,
    await_orphan_sbatch,
)
from masnaa.executors.slurm.config import SlurmSiteConfig
from masnaa.executors.slurm.parse import (
    LOST_STATES,
    SQUEUE_FORMAT,
    SlurmJob,
    SlurmNode,
    exit_from_scontrol,
    index_jobs,
    job_name,
    masnaa_jobs,
    masnaa_jobs_text,
    slurm_nodes,
)
from masnaa.executors.slurm.records import ExitRecord, RunRecords, StopRecord
from masnaa.executors.slurm.script import COMMAND_FILE, render_script, sbatch_options

Key = tuple[str, int]
log = logging.getLogger(__name__)

class _StaleView(Exception):
    """The cached view predates a record it is being compared with."""


@dataclass(frozen=True, slots=True)
class SlurmView:
    """One pass's picture of the site: Masnaa's jobs by attempt, and the nodes."""

    jobs: dict[Key, SlurmJob]
    nodes: dict[str, SlurmNode]
    taken_at: float


class SlurmExecutor(Executor):
    """Runs attempts on one Slurm site."""

    name = "slurm"
    capabilities = Capabilities(
        supports_adoption=True,
        enforces_time_limit=True,
        pins_gpus=True,
        multi_node=True,
        queues=True,
    )

    def __init__(
        self,
        config: SlurmSiteConfig,
        commands: SlurmCommands | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        env = {"SLURM_CONF": config.slurm_conf} if config.slurm_conf else None
        self.commands = commands or SlurmCommands(
            bin_dir=config.bin_dir, timeout=config.command_timeout, env=env
        )
        self.clock = clock
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._inflight: set[Key] = set()
        self._final: dict[Key, Observed] = {}
        self._started: dict[Key, float] = {}
        self._stops: dict[Key, StopRecord | None] = {}
        self._cancelled: set[Key] = set()
        self._signalled: set[Key] = set()
        self._submitted: dict[Key, float] = {}
        self._node_types: dict[str, str] = {}
        self._view: SlurmView | None = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def for_site(
        cls, site: str, options: Mapping[str, str | int | float | bool], home: Path
    ) -> SlurmExecutor:
        """The executor of a factory site declared ``executor = "slurm"`` (its ``options``)."""
        return cls(SlurmSiteConfig.from_site_options(site, options, home=home))

    def records(self, job_id: str, attempt: int) -> RunRecords:
        return RunRecords(self.config.state_dir, job_id, attempt)

    # -- start --------------------------------------------------------------------------------
    def start(self, spec: LaunchSpec) -> None:
        key = (spec.job_id, spec.attempt)
        with self._lock:
            if key in self._inflight:
                return
            self._inflight.add(key)
        try:
            rec = self.records(*key)
            if rec.claim(self.clock()):
                self._submit(spec, rec)
            elif rec.slurm_job_id() is None and rec.exit() is None and rec.lost() is None:
                # Claimed earlier, but no sbatch answer was recorded (the controller did not
                # answer, or the claimer died): it may or may not have reached Slurm. A
                # claimer killed mid-submission leaves its sbatch running as an orphan that
                # may still reach the controller: let it finish before asking Slurm.
                await_orphan_sbatch(job_name(*key), self.config.command_timeout)
                existing = self.refresh().jobs.get(key)
                if existing is not None:
                    self._adopt(rec, existing)
                elif rec.lost() is None:
                    self._submit(spec, rec)
        finally:
            with self._lock:
                self._inflight.discard(key)

    def start_many(self, specs: Sequence[LaunchSpec]) -> list[Exception | None]:
        """Start several attempts on ``dispatch_threads`` threads; one outcome per spec."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.config.dispatch_threads, thread_name_prefix="masnaa-sbatch"
                    )

        def one(spec: LaunchSpec) -> Exception | None:
            try:
                self.start(spec)
            except Exception as exc:  # handed back per spec: one refusal must not hide others
                return exc
            return None

        return list(self._pool.map(one, specs))

    def _submit(self, spec: LaunchSpec, rec: RunRecords) -> None:
        tenant, project = spec.tenant, spec.project
        workdir = spec.workdir or str(rec.dir)
        try:
            script = render_script(spec, str(rec.dir), workdir)
            args = sbatch_options(
                spec,
                self.config,
                run_dir=str(rec.dir),
                tenant=tenant,
                project=project,
                gpu_types=self._gpu_types_of([s.node for s in spec.placement]),
            )
        except LaunchRejected as exc:
            self._record_rejection(rec, str(exc))
            raise
        if spec.script is not None:
            rec.put(COMMAND_FILE, spec.script)
        rec.put("job.sh", script)
        if spec.stdout or spec.stderr:
            rec.put("log_paths", "\n".join(self._log_paths(rec, spec.stdout, spec.stderr)))
        rec.put("submitting", f"{self.clock():.3f}")
        try:
            slurm_id = self.commands.sbatch(args, script)
        except SlurmRejected as exc:
            self._record_rejection(rec, f"job {spec.job_id}: Slurm refused it: {exc}")
            raise SlurmRejected(f"job {spec.job_id}: Slurm refused it: {exc}") from exc
        rec.put("slurm_job_id", str(slurm_id))
        self._submitted[(spec.job_id, spec.attempt)] = self.clock()
        rec.remove("submitting")
        if rec.reread().stop() is not None:  # stopped while sbatch was in flight
            with contextlib.suppress(SiteUnreachable):  # the next pass sends it again
                self._signal_stop(rec, slurm_id)

    def _record_rejection(self, rec: RunRecords, message: str) -> None:
        rec.put("message", message)
        rec.put("exit", f"1 launch-failed {self.clock():.3f}")
        rec.remove("submitting")

    def _adopt(self, rec: RunRecords, job: SlurmJob) -> None:
        if not rec.claimed:  # found in Slurm by its comment, its records gone: claim it now
            rec.claim(self.clock())
        if rec.slurm_job_id() != job.slurm_id:
            rec.put("slurm_job_id", str(job.slurm_id))
        rec.remove("submitting")

    def _gpu_types_of(self, nodes: Iterable[str]) -> dict[str, str]:
        wanted = list(nodes)
        if any(n not in self._node_types for n in wanted):
            try:
                self.inventory()
            except SiteUnreachable:
                return {}  # untyped GRES still pins the count on the named nodes
        return {n: self._node_types[n] for n in wanted if n in self._node_types}

    def log_paths(self, job_id: str, attempt: int) -> tuple[str, str] | None:
        """The attempt's files: the paths its launch named, else the run directory's
        (also the answer at admission, before the launch claims the attempt)."""
        rec = self.records(job_id, attempt)
        if not rec.claimed:
            return self._log_paths(rec, None, None)
        custom = (rec.get("log_paths") or "").splitlines()
        if len(custom) == 2:
            return custom[0], custom[1]
        return self._log_paths(rec, None, None)

    @staticmethod
    def _log_paths(rec: RunRecords, stdout: str | None, stderr: str | None) -> tuple[str, str]:
        return stdout or str(rec.dir / "stdout"), stderr or str(rec.dir / "stderr")

    # -- stop ---------------------------------------------------------------------------------
    def stop(self, job_id: str, attempt: int, grace_seconds: float, reason: str) -> None:
        rec = self.records(job_id, attempt)
        if not rec.claimed or rec.exit() is not None or rec.lost() is not None:
            return
        if rec.stop() is None:
            rec.write_stop(max(0.0, grace_seconds), self.clock(), reason)
        elif rec.has("signalled") or rec.has("cancelled"):
            return  # already asked and delivered; the deadline written then still holds
        # else asked before, but the signal never reached Slurm: send it again (below)
        self._stops[(job_id, attempt)] = rec.stop()
        slurm_id = rec.slurm_job_id()
        if slurm_id is None:
            # Not (yet) a Slurm job: an sbatch in flight sends the stop when it answers;
            # a claim that never reached Slurm ends as lost.
            return
        self._signal_stop(rec, slurm_id)

    def _signal_stop(self, rec: RunRecords, slurm_id: int) -> None:
        """Send the recorded stop (SiteUnreachable: not sent; a later pass sends it)."""
        stop = rec.stop()
        remaining = stop.deadline - self.clock() if stop is not None else 0.0
        if stop is None or stop.grace <= 0 or remaining <= 0 or rec.started_at() is None:
            # Nothing runs yet, no grace asked, or none left: nothing to checkpoint.
            self._hard_cancel(rec, slurm_id)
            return
        if remaining < stop.grace:  # a late delivery: the batch script gets what is left
            rec.put("stop", f"{remaining:.3f} {stop.deadline:.3f} {stop.reason}")
        try:
            self.commands.scancel([slurm_id], signal="TERM", batch=True)
        except SlurmRejected:
            # "Job can not be altered now": it is still pending or just ending.
            self._hard_cancel(rec, slurm_id)
            return
        rec.put("signalled", f"{self.clock():.3f}")
        self._signalled.add((rec.job_id, rec.attempt))

    def _hard_cancel(self, rec: RunRecords, slurm_id: int) -> None:
        self.commands.scancel([slurm_id])
        rec.put("cancelled", f"{self.clock():.3f}")
        self._cancelled.add((rec.job_id, rec.attempt))
        self._signalled.add((rec.job_id, rec.attempt))

    # -- observe ------------------------------------------------------------------------------
    def refresh(self) -> SlurmView:
        """One ``squeue`` and one ``sinfo --json``: the site as it is now."""
        taken_at = self.clock()  # before the calls: anything recorded later may be missing
        if self.config.squeue_format == "json":
            jobs = index_jobs(masnaa_jobs(self.commands.squeue()))
        else:
            jobs = index_jobs(masnaa_jobs_text(self.commands.squeue_text(SQUEUE_FORMAT)))
        nodes = {n.name: n for n in slurm_nodes(self.commands.sinfo())}
        self._remember_types(nodes.values())
        view = SlurmView(jobs=jobs, nodes=nodes, taken_at=taken_at)
        self._view = view
        return view

    def poll(self, job_id: str, attempt: int) -> Observed:
        """One attempt; a control loop polling each run in turn shares one Slurm query
        among all polls made within ``view_ttl`` seconds."""
        return self._poll([(job_id, attempt)], max_age=self.config.view_ttl)[(job_id, attempt)]

    def poll_many(self, runs: list[tuple[str, int]]) -> dict[tuple[str, int], Observed]:
        """Several attempts from one fresh ``squeue``/``sinfo`` pair."""
        return self._poll(runs, max_age=0.0)

    def _poll(self, runs: list[Key], *, max_age: float) -> dict[Key, Observed]:
        out: dict[Key, Observed] = {}
        todo: list[Key] = []
        for key in runs:
            final = self._final.get(key)
            if final is not None:
                out[key] = final
            else:
                todo.append(key)
        if not todo:
            return out
        # The view is taken before the records are read: a job that left Slurm's view
        # had already written its exit record, so it is never mistaken for lost.
        view = self._view
        fresh = view is None or self.clock() - view.taken_at >= max_age
        if fresh or view is None:
            view = self.refresh()
        to_cancel: list[tuple[RunRecords, int]] = []
        to_signal: list[tuple[RunRecords, int]] = []
        for key in todo:
            try:
                observed = self._observe(key, view, to_cancel, to_signal)
            except _StaleView:
                view = self.refresh()
                observed = self._observe(key, view, to_cancel, to_signal, trust=True)
            if observed.done:
                self._final[key] = observed
            out[key] = observed
        for rec, slurm_id in to_cancel:
            self._hard_cancel(rec, slurm_id)
        for rec, slurm_id in to_signal:  # stops asked earlier whose signal never got through
            try:
                self._signal_stop(rec, slurm_id)
            except SiteUnreachable as exc:
                log.warning("stop of %s run %d not delivered yet: %s", rec.job_id,
                            rec.attempt, exc)  # fmt: skip
        return out

    def reconcile(self) -> dict[tuple[str, int], Observed]:
        """Masnaa's attempts in Slurm, observed: adoption after a restart.

        Every active one (pending, running) is adopted, records or not; a
        finished one only if its records exist (finished jobs nobody claimed
        are history, not work to follow).
        """
        view = self.refresh()
        keys = [k for k, job in view.jobs.items() if job.active or self.records(*k).claimed]
        return self.poll_many(sorted(keys))

    def _observe(
        self,
        key: Key,
        view: SlurmView,
        to_cancel: list[tuple[RunRecords, int]],
        to_signal: list[tuple[RunRecords, int]],
        *,
        trust: bool = False,
    ) -> Observed:
        rec = self.records(*key)
        job = view.jobs.get(key)
        now = self.clock()
        if job is not None and job.active and not job.pending and key in self._started:
            # The common case of a big pass: running, known, nothing to read from disk.
            return self._running_or_lost(rec, job, view, now, to_cancel, to_signal)
        lost = rec.lost()
        if lost is not None:
            return Observed("lost", started_at=rec.started_at(), message=lost)
        ended = rec.exit()
        if ended is not None:
            killed = ended.reason == "stopped" or ended.status > 128  # 128+N: signal N
            if killed and rec.stop() is None:
                # Signalled, but not by Masnaa: Slurm killed it for a failed node (the
                # signal may reach the command before the batch script). Once the job
                # has left squeue, the nodes it recorded itself still tell.
                site_fault = (
                    outcome.site_fault(job, view.nodes)
                    if job is not None
                    else outcome.node_fault(rec.get("nodes"), view.nodes)
                )
                if site_fault is not None:
                    return self._lose(rec, site_fault, to_cancel, None)
                if not trust and view.taken_at < (rec.mtime("exit") or 0.0):
                    # The nodes were seen before the job ended: a node that went down
                    # since, and killed it, would look up. Ask Slurm again.
                    raise _StaleView
                outside = self._cancelled_outside(rec, job, ended)
                if outside is not None:
                    return outside
            return outcome.exited(rec, ended.status, ended.reason, ended.ended_at)
        if job is None:
            if not trust and view.taken_at < max(
                rec.mtime("slurm_job_id") or 0.0, self._submitted.get(key, 0.0)
            ):
                raise _StaleView  # submitted after this view was taken: ask Slurm again
            return self._missing(rec, key, now)
        if rec.slurm_job_id() != job.slurm_id:
            self._adopt(rec, job)
        if job.active:
            return self._running_or_lost(rec, job, view, now, to_cancel, to_signal)
        return self._ended_in_slurm(rec, job)

    def _running_or_lost(
        self,
        rec: RunRecords,
        job: SlurmJob,
        view: SlurmView,
        now: float,
        to_cancel: list[tuple[RunRecords, int]],
        to_signal: list[tuple[RunRecords, int]],
    ) -> Observed:
        key = (rec.job_id, rec.attempt)
        site_fault = outcome.site_fault(job, view.nodes)
        if site_fault is not None:
            return self._lose(rec, site_fault, to_cancel, job.slurm_id)
        if key not in self._stops:
            self._stops[key] = rec.stop()
            if rec.has("cancelled"):
                self._cancelled.add(key)
            if rec.has("signalled") or rec.has("cancelled"):
                self._signalled.add(key)
        stop = self._stops[key]
        overdue = stop is not None and now >= stop.deadline + self.config.stop_margin
        if overdue and key not in self._cancelled:
            to_cancel.append((rec, job.slurm_id))
        elif stop is not None and key not in self._signalled:
            to_signal.append((rec, job.slurm_id))
        if job.pending:
            why = (
                Phrase("slurm-pending", {"detail": job.reason})
                if job.reason and job.reason != "None"
                else Phrase("slurm-not-scheduled")
            )
            return Observed("running", started_at=None, message=english((why,)), why=why)
        started = self._started.get(key)
        if started is None:
            started = rec.started_at()
            if started is not None:
                self._started[key] = started
            else:  # the batch script has not written its own time yet
                started = job.start_time
        return Observed(
            "running", started_at=started, message=f"Slurm job {job.slurm_id} {job.state}"
        )

    def _lose(
        self,
        rec: RunRecords,
        message: str,
        to_cancel: list[tuple[RunRecords, int]],
        slurm_id: int | None,
    ) -> Observed:
        rec.put("lost", message)
        if slurm_id is not None:
            to_cancel.append((rec, slurm_id))
        self._started.pop((rec.job_id, rec.attempt), None)
        return Observed("lost", started_at=rec.started_at(), ended_at=self.clock(), message=message)

    def _missing(self, rec: RunRecords, key: Key, now: float) -> Observed:
        with self._lock:
            inflight = key in self._inflight
        if inflight:
            return Observed("running", message="being submitted to Slurm")
        if not rec.claimed:
            return Observed("absent")
        slurm_id = rec.slurm_job_id()
        if slurm_id is not None:
            # Re-read: the job may have finished between the view and now.
            ended = rec.exit()
            if ended is not None:
                return outcome.exited(rec, ended.status, ended.reason, ended.ended_at)
            no_record = f"Slurm no longer knows job {slurm_id} and it left no exit record"
            return self._lose(rec, no_record, [], None)
        claimed = rec.claimed_at() or now
        if now - claimed < self.config.claim_timeout:
            return Observed("running", message="submission to Slurm not confirmed yet")
        return self._lose(
            rec, f"claimed {now - claimed:.0f}s ago but never became a Slurm job", [], None
        )

    def _cancelled_outside(
        self, rec: RunRecords, job: SlurmJob | None, ended: ExitRecord
    ) -> Observed | None:
        """A run signalled with no stop from Masnaa, when Slurm says it was cancelled
        (an administrator's ``scancel``); None when Slurm does not say so."""
        if job is not None and job.active:
            # Still COMPLETING (Slurm shows a cancelled job so until KillWait is over):
            # wait for Slurm's final word rather than guess.
            return Observed("running", started_at=rec.started_at(),
                            message=f"Slurm job {job.slurm_id} {job.state}")  # fmt: skip
        slurm_id = job.slurm_id if job is not None else rec.slurm_job_id()
        if slurm_id is None or (job is not None and job.state != "CANCELLED"):
            return None
        by = self.commands.cancelled_by(slurm_id)  # also the only witness once squeue forgot
        sig = ended.status - 128 if ended.status > 128 else None
        return None if job is None and by is None else (
            outcome.cancelled_in_slurm(rec, sig, ended.ended_at, by))

    def _ended_in_slurm(self, rec: RunRecords, job: SlurmJob) -> Observed:
        """Slurm says it ended but the batch script left no record (it was killed hard)."""
        if job.state in LOST_STATES:
            return self._lose(rec, f"Slurm ended it: {job.state} ({job.reason})", [], None)
        if job.state == "CANCELLED" and rec.stop() is None:
            by = self.commands.cancelled_by(job.slurm_id)
            return outcome.cancelled_in_slurm(rec, None, job.end_time, by)
        raw = job.exit_raw
        if raw is None and job.state not in ("CANCELLED", "TIMEOUT"):
            # The text view has no exit status: ask for this one job (a rare path: the
            # batch script was killed before it could record one).
            try:
                raw = exit_from_scontrol(self.commands.job_exit(job.slurm_id))
            except (SiteUnreachable, SlurmRejected):
                raw = None
        return outcome.ended_without_record(rec, job, raw)

    # -- inventory ----------------------------------------------------------------------------
    def inventory(self) -> list[SlurmNode]:
        """Slurm's nodes as they are now (one ``sinfo --json``)."""
        nodes = slurm_nodes(self.commands.sinfo())
        self._remember_types(nodes)
        return nodes

    def unavailable_nodes(self) -> dict[str, str]:
        """Drained, down or failing nodes, from this pass's view (one ``squeue`` and one
        ``sinfo``, shared with the polls made within ``view_ttl``)."""
        view = self.refresh()
        return {
            n.name: f"{n.display_state}" + (f": {n.reason}" if n.reason else "")
            for n in view.nodes.values()
            if not n.available
        }

    def nodes(self, slurm: Sequence[SlurmNode] | None = None) -> tuple[Node, ...]:
        """Masnaa ``Node``s for the GPU nodes of this site (state aside: see ``available``)."""
        out = []
        for n in self.inventory() if slurm is None else slurm:
            for gres_type, count in n.gres:
                if count <= 0:
                    continue
                out.append(
                    Node(
                        name=n.name,
                        site=self.config.site,
                        gpu_type=self.config.masnaa_gpu_type(gres_type or "gpu"),
                        gpu_count=count,
                        domains=self.config.domains_for(n.name),
                        features=n.features,
                    )
                )
                break  # a Masnaa node has one GPU type: the first GPU GRES of the node
        return tuple(out)

    def _remember_types(self, nodes: Iterable[SlurmNode]) -> None:
        for n in nodes:
            if n.gres and n.gres[0][0]:
                self._node_types[n.name] = n.gres[0][0]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

