"""Sites whose engine answers for itself (Slurm): building their executors, and their health.

Owns ``slurm_executor`` (a factory site's ``[sites.slurm]`` settings → its own
``SlurmExecutor``; two Slurm sites are two controllers, never one shared
object), ``SiteHealth`` (once a pass: is each such site's controller
answering, and which of its nodes must take no new work) and
``record_starts`` (when a run a queuing engine held pending really began).

Invariants:
- The loop writes ``sites.state = unreachable`` only for a site that was
  ``up``, and remembers that it did (``service_state['site-health:<site>']``);
  it brings back to ``up`` only the sites it marked itself, so an operator's
  drain or mark is never undone by the loop. A restart finds the mark.
- A site whose controller does not answer is left alone by the drive phase:
  nothing is launched, polled or stopped there, and its runs are *not*
  requeued (they keep running on their nodes under the engine's own
  daemons). Its admitted jobs stay admitted and its pending ones pending;
  both go on when the controller answers again. Nothing is lost.
- A controller that did not answer is asked again only every
  ``retry_interval`` seconds: each probe of a silent controller holds the pass
  (and the other sites) for up to the executor's command timeout.
- Nodes the engine reports drained, down or failing take no new work (set
  in the in-memory ``ClusterState`` each pass, after the store's node
  states). Runs on them are reported ``lost`` by the executor and requeued by
  ``reconcile.settle`` (failed after ``LoopConfig.max_attempts`` runs), with
  the engine's reason in the job's event.
- A run at a queuing engine (``Capabilities.queues``) holds its GPUs from
  the first ``Observed.started_at``, not from submission: ``started_at`` stays
  ``None`` while the engine holds it pending, and the wait message says why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from masnaa.domain import reasons
from masnaa.executors.base import Executor, ExecutorUnavailable, Observed
from masnaa.store import models as m

log = logging.getLogger(__name__)

HEALTH_KEY = "site-health:"
"""``service_state`` key prefix: the loop marked this site unreachable (value: why, since)."""

_TABLES = {"accounts": "account.", "partitions": "partition.", "gpu_types": "gpu_type."}


def slurm_executor(home: Path, site: str, options: Mapping[str, Any]) -> Executor:
    """The executor of ``site`` from its factory options (``{"slurm": {...}}``).

    ``[sites.slurm]`` may spell its tables nested (``accounts = {um6p = "x"}``)
    or flat (``"account.um6p" = "x"``); both mean the same.
    """
    from masnaa.executors.slurm import SlurmExecutor

    flat: dict[str, Any] = {}
    for key, value in dict(options.get("slurm") or {}).items():
        if key in _TABLES and isinstance(value, Mapping):
            flat.update({f"{_TABLES[key]}{k}": v for k, v in value.items()})
        elif key == "sbatch_args" and isinstance(value, list | tuple):
            flat[key] = " ".join(str(v) for v in value)
        else:
            flat[key] = value
    return SlurmExecutor.for_site(site, flat, home)


class SiteHealth:
    """Each pass: which sites' controllers answer, and which of their nodes are unusable."""

    def __init__(self, retry_interval: float = 5.0) -> None:
        self.retry_interval = retry_interval
        """Seconds between two probes of a site whose controller did not answer: each such
        probe holds the pass for up to the executor's command timeout."""
        self._retry_at: dict[str, float] = {}
        self.down: dict[str, str] = {}
        """Sites whose controller did not answer this pass (site → why); the drive phase
        leaves their runs alone."""
        self.unusable: dict[str, dict[str, str]] = {}
        """Site → {node: why} as the site's engine last reported."""
        self._marked: set[str] | None = None
        """Sites with a down mark in the store (or whose state was not ours to change)."""

    def probe(
        self,
        write: sessionmaker[Session],
        executors: Mapping[str, Executor],
        now: float,
    ) -> None:
        """Ask each site's executor once (``unavailable_nodes``) and record the answer."""
        answers: dict[str, str | None] = {}
        for site, executor in executors.items():
            if site in self.down and now < self._retry_at.get(site, 0.0):
                answers[site] = self.down[site]  # asking again would block the pass again
                continue
            try:
                nodes = executor.unavailable_nodes()
            except ExecutorUnavailable as exc:
                answers[site] = f"controller not answering: {exc}"
                self._retry_at[site] = now + self.retry_interval
                continue
            if nodes is None:
                continue
            answers[site] = None
            self.unusable[site] = nodes
        self.down = {site: why for site, why in answers.items() if why is not None}
        if self._marked is None:  # first pass (or after a restart): what the store says
            with write() as s:
                self._marked = {
                    k.removeprefix(HEALTH_KEY)
                    for k in s.scalars(
                        select(m.ServiceState.key).where(m.ServiceState.key.startswith(HEALTH_KEY))
                    )
                }
        changed = {
            site: why for site, why in answers.items() if (why is None) == (site in self._marked)
        }
        if changed:
            self._write(write, changed, now)

    def _write(
        self, write: sessionmaker[Session], changed: dict[str, str | None], now: float
    ) -> None:
        assert self._marked is not None
        with write() as s, s.begin():
            rows = {r.name: r for r in s.scalars(select(m.Site).where(m.Site.name.in_(changed)))}
            for site, why in changed.items():
                row, mark = rows.get(site), s.get(m.ServiceState, HEALTH_KEY + site)
                if row is None:
                    continue
                if why is None:
                    if mark is not None and row.state == m.SiteState.UNREACHABLE.value:
                        row.state, row.reason = m.SiteState.UP.value, ""
                        log.info("site %s: its controller answers again", site)
                    if mark is not None:
                        s.delete(mark)
                elif mark is None and row.state == m.SiteState.UP.value:
                    row.state, row.reason = m.SiteState.UNREACHABLE.value, why
                    s.add(m.ServiceState(key=HEALTH_KEY + site, value={"why": why}, updated_at=now))
                    log.warning("site %s marked unreachable: %s", site, why)
        for site, why in changed.items():
            if why is None:
                self._marked.discard(site)
            else:  # marked, or not ours to mark (an operator's state): either way, asked once
                self._marked.add(site)

    def node_overrides(self) -> dict[str, str]:
        """Every node an engine reported unusable (node → why)."""
        return {node: why for nodes in self.unusable.values() for node, why in nodes.items()}


def owner_names(session: Session) -> tuple[dict[int, str], dict[int, str]]:
    """Tenant id → name and project id → name (small tables, read when launching)."""
    tenants = {i: n for i, n in session.execute(select(m.Tenant.id, m.Tenant.name))}
    projects = {i: n for i, n in session.execute(select(m.Project.id, m.Project.name))}
    return tenants, projects


def record_starts(
    s: Session,
    began: Mapping[str, tuple[int, Observed]],
    on_start: Any,
) -> list[str]:
    """Write when held runs began, or why they still wait (in the caller's transaction).

    ``began``: job → (attempt, what its queuing executor reports). Returns the
    jobs whose run began now.
    """
    started: list[str] = []
    for job_id, (attempt, seen) in began.items():
        row = s.get(m.Job, job_id)
        if (
            row is None
            or row.attempt != attempt
            or row.state != m.JobState.RUNNING.value
            or row.started_at is not None
        ):
            continue
        if seen.started_at is not None:
            row.started_at = seen.started_at
            row.wait_message = None
            row.wait_phrases = []
            on_start(s, row)
            started.append(job_id)
        elif seen.message and row.wait_message != seen.message:
            row.wait_message = seen.message  # the engine's own words
            row.wait_phrases = reasons.to_json((seen.why,)) if seen.why is not None else []
    return started
