"""Jobs' lawful sites kept true while they wait and run: grounds expire, rules change.

Owned by the control loop (``PendingSites``, one per loop). It turns the residency
judgement of ``service.residency`` into writes on jobs: narrowed ``jobs.sites``, a
pending job with no lawful site left failed (``no-lawful-site``), a requeued job
judged again before it can be placed, and each rules change the loop takes up put on
the audit chain (``record_policy``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from masnaa.domain.reasons import Phrase
from masnaa.policy import ResidencyRefused, check_named_sites
from masnaa.service.audit import record_policy
from masnaa.service.residency import current_rules, eligibility, job_data, to_policy
from masnaa.store import models as m
from masnaa.store.residency import JobDataset, TransferGroundRow


class PendingSites:
    """Keeps jobs' lawful sites true as grounds expire and rules change.

    Owned by the control loop (one per loop). ``due(session, now)`` is cheap
    (one indexed read): true when the rules' digest changed, a ground was
    recorded since the last refresh, or the earliest ground expiry has
    passed. ``refresh`` then re-judges every job that reads data and has not
    ended: a job keeps only those of its sites that are still lawful (grounds
    only expire, so a site is never added back on its own); a pending job left
    with none fails with the first refusal as its reason. A running job whose
    own site is no longer lawful runs on (its placement was lawful when made);
    ``judge`` re-judges it when it is requeued, before it can be placed again,
    so it goes back only to a site still lawful then, or fails.
    """

    def __init__(self) -> None:
        self.digest: str | None = None
        self.next_check = float("-inf")
        self.last_ground: int | None = None

    def due(self, session: Session, now: float) -> bool:
        if now >= self.next_check or current_rules().digest != self.digest:
            return True
        return session.scalar(select(func.max(TransferGroundRow.id))) != self.last_ground

    def refresh(self, session: Session, now: float) -> tuple[list[str], list[str]]:
        """(pending jobs whose sites shrank, jobs failed); writes both in ``session``."""
        rules = current_rules()
        if rules.digest != self.digest:  # taken up by the loop: on the chain at once
            record_policy(session, "scheduler", now)
        live = [s.value for s in m.JobState if not s.terminal]
        jobs = list(session.scalars(
            select(m.Job).where(m.Job.state.in_(live), m.Job.id.in_(select(JobDataset.job_id)))))
        changed, failed = self._judge(session, jobs, now)
        self.digest = rules.digest
        self.last_ground = session.scalar(select(func.max(TransferGroundRow.id)))
        # Any ground's next expiry (not only those read now: a job may arrive meanwhile).
        upcoming = session.scalar(select(func.min(TransferGroundRow.expires))
                                  .where(TransferGroundRow.expires > now))
        self.next_check = float("inf") if upcoming is None else float(upcoming)
        return changed, failed

    def judge(self, session: Session, job_ids: Iterable[str], now: float
              ) -> tuple[list[str], list[str]]:
        """Re-judge these jobs (those just requeued) as ``refresh`` judges all."""
        ids = list(job_ids)
        if not ids:
            return [], []
        jobs = list(session.scalars(
            select(m.Job).where(m.Job.id.in_(ids), m.Job.id.in_(select(JobDataset.job_id)))
            .execution_options(populate_existing=True)))
        return self._judge(session, jobs, now)

    @staticmethod
    def _judge(session: Session, jobs: list[m.Job], now: float) -> tuple[list[str], list[str]]:
        from masnaa.store.events import transition  # the one way to change a job's state

        reads = job_data(session, [j.id for j in jobs])
        changed: list[str] = []
        failed: list[str] = []
        for job in jobs:
            values = to_policy(session, reads.get(job.id, []))
            e = eligibility(session, values, now)
            lawful = set(e.lawful_sites)
            kept = [site for site in (job.sites or e.lawful_sites) if site in lawful]
            if kept == list(job.sites or ()):
                continue
            pending = job.state == m.JobState.PENDING.value
            if kept:
                job.sites = kept
                if pending:
                    changed.append(job.id)
                continue
            if not pending:  # judged again if it is requeued
                continue
            try:
                check_named_sites(job.sites, e)
            except ResidencyRefused as refused:
                why = str(refused)
            else:  # pragma: no cover - kept is empty only when a site is unlawful
                why = "no site may process this job's data any more"
            transition(session, job, m.JobState.FAILED, at=now, code="no-lawful-site",
                       reason=(Phrase("no-lawful-site", {"detail": why}),))
            job.ended_at = now
            failed.append(job.id)
        return changed, failed
