"""Draining a node or a site, and moving its work off it (evacuation); why moved jobs wait.

Owns the operators' drain, undrain and site-state changes as one transaction
each (``drain_node``, ``undrain_node``, ``set_site_state``), the sites whose
runs the control loop gives up (``unreachable_sites``), and ``DrainWaits``,
the wording of a waiting job's reason when drains keep it from every site it
may use.

Terms: a **drain** takes a node (or every node of a site) out of the
scheduler's hands: nothing new is placed there. **Evacuation** (the default,
``evacuate=True``) also moves the runs there: each admitted or running job
on it gets the ordinary preemption request (``service.apply.request_preemptions``:
a ``preempting`` event naming the drain and who asked, and a deadline that
is its priority class's grace period). The control loop then stops the run
exactly as for a scheduler preemption (SIGTERM, the grace as a checkpoint
window, SIGKILL), settles it as ``preempted`` and requeues it with its
attained service; the scheduler places it again only at the sites in
``jobs.sites`` (for a job that reads data: the sites its data may go to),
and never on a drained node. ``evacuate=False`` is the Slurm-like drain: the
runs go on to their end.

Invariants:
- One transaction does it all: the node or site row is locked first (``FOR
  UPDATE`` on PostgreSQL; SQLite's writer lock serialises), then the job rows
  in id order, so two drains that meet on the same jobs queue up instead of
  deadlocking, and the second finds them already asked to move.
- Idempotent: draining a drained node again changes nothing and audits
  nothing, except that ``evacuate=True`` moves runs a let-finish drain left
  there. A job already being preempted or cancelled is not asked again.
- Every change is audited in the same transaction (``site-state`` and
  ``node-state`` records of the audit chain: who, what, the reason, whether
  runs were moved and which).
- Undraining does not call back a run already asked to move: its SIGTERM may
  have been delivered. It runs again wherever the scheduler places it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.audit.events import state_change_event
from masnaa.domain.reasons import Phrase, Reason
from masnaa.scheduler.decision import Preemption, Wait, WaitCode
from masnaa.service import apply, residency, tenancy
from masnaa.service.audit import append_audit
from masnaa.service.sites import HEALTH_KEY
from masnaa.service.tenancy import Caller, ServiceError, not_found, require_operator
from masnaa.store import models as m

DEFAULT_GRACE = 120.0
"""Seconds to checkpoint for a job whose priority class is no longer declared."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one drain, undrain or site-state change did."""

    name: str
    state: str
    reason: str
    evacuated: tuple[str, ...]
    """Jobs asked to move by this change (each gets a ``preempting`` event)."""


def _locked(session: Session, stmt: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def _on_node(placement: list[dict[str, Any]] | None, node: str) -> bool:
    return any(part.get("node") == node for part in placement or ())


def evacuate(
    session: Session,
    *,
    site: str,
    node: str | None,
    why: Reason,
    now: float,
) -> tuple[str, ...]:
    """Ask every admitted or running job at ``site`` (on ``node``, if given) to move.

    The ordinary preemption request (``apply.request_preemptions``), with the
    job's priority-class grace as its checkpoint window. Returns the jobs asked.
    """
    stmt = (
        select(m.Job.id, m.Job.placement)
        .where(m.Job.site == site, m.Job.state.in_([s.value for s in m.ACTIVE_STATES]))
        .order_by(m.Job.id)
    )
    ids = [job_id for job_id, placement in session.execute(stmt)
           if node is None or _on_node(placement, node)]
    if not ids:
        return ()
    # Lock in id order before ``request_preemptions`` (which locks in no set order).
    lock = select(m.Job).where(m.Job.id.in_(ids)).order_by(m.Job.id)
    if session.get_bind().dialect.name == "postgresql":
        lock = lock.with_for_update()
    rows = list(session.scalars(lock))
    grace = {name: seconds for name, seconds in session.execute(
        select(m.PriorityClass.name, m.PriorityClass.grace_seconds))}
    asked = [
        Preemption(row.id, float(grace.get(row.priority_class, DEFAULT_GRACE)), why)
        for row in rows
        if row.state in (m.JobState.ADMITTED.value, m.JobState.RUNNING.value)
        and row.site == site and (node is None or _on_node(row.placement, node))
    ]  # re-checked under the lock: a run may have ended or moved since the first read
    issued = apply.request_preemptions(session, asked, now=now)
    return tuple(p.job_id for p in issued)


WAITS_FOR_DRAIN = Phrase("wait-drain")


def _drained(what: str, name: str, note: str) -> Phrase:
    """``node``/``site`` ``name`` is drained, with the operator's note if any."""
    key = f"drained-{what}-note" if note else f"drained-{what}"
    return Phrase(key, {what: name, "detail": note} if note else {what: name})


def _evacuated(what: str, name: str, caller: Caller, note: str) -> Reason:
    said = Phrase(f"evacuated-{what}", {what: name, "user": caller.user})
    return (said, Phrase("note", {"detail": note})) if note else (said,)


def drain_node(
    session: Session, caller: Caller, name: str, *, reason: str, evacuate_runs: bool, now: float
) -> tuple[m.Node, Change]:
    """Drain ``name``; with ``evacuate_runs`` its runs are asked to move (see the module)."""
    require_operator(caller, "drain or undrain nodes")
    node = _locked(session, select(m.Node).where(m.Node.name == name))
    if node is None:
        raise not_found("node", name)
    before = node.state
    tenancy.set_node_state(session, caller, name, drained=True, reason=reason)
    site = session.get(m.Site, node.site_id)
    assert site is not None
    moved: tuple[str, ...] = ()
    if evacuate_runs:
        moved = evacuate(session, site=site.name, node=name, now=now,
                         why=_evacuated("node", name, caller, reason))
    if node.state != before or moved:
        append_audit(session, state_change_event(
            caller.user, kind="node", name=name, site=site.name, state=node.state,
            before=before, reason=reason, evacuate=evacuate_runs, jobs=moved), now)
    return node, Change(name, node.state, node.reason, moved)


def undrain_node(
    session: Session, caller: Caller, name: str, *, reason: str, now: float
) -> tuple[m.Node, Change]:
    """Give a drained node back to the scheduler (a node that is up or down is left as is)."""
    require_operator(caller, "drain or undrain nodes")
    node = _locked(session, select(m.Node).where(m.Node.name == name))
    if node is None:
        raise not_found("node", name)
    before = node.state
    tenancy.set_node_state(session, caller, name, drained=False, reason=reason)
    if node.state != before:
        site = session.get(m.Site, node.site_id)
        append_audit(session, state_change_event(
            caller.user, kind="node", name=name, site=site.name if site else "", state=node.state,
            before=before, reason=reason, evacuate=None, jobs=()), now)
    return node, Change(name, node.state, node.reason, ())


def set_site_state(
    session: Session,
    caller: Caller,
    name: str,
    state: str,
    reason: str,
    *,
    evacuate_runs: bool | None,
    now: float,
) -> tuple[m.Site, Change]:
    """Drain a site (evacuating its runs unless ``evacuate_runs`` is false), mark it
    unreachable (the control loop requeues its runs), or bring it back up.

    ``evacuate_runs`` applies to ``drained`` only (``None``: the default, evacuate).
    """
    require_operator(caller, "change a site's state")
    if evacuate_runs is not None and state != m.SiteState.DRAINED.value:
        raise ServiceError(
            "evacuate-not-applicable",
            f"evacuate applies only when draining a site (state 'drained'), not to {state!r}: "
            "leave it out (an unreachable site's runs are always requeued)",
            status=422, field="evacuate",
        )
    try:
        wanted = m.SiteState(state)
    except ValueError:
        raise ServiceError("invalid-state", f"state {state!r} is not one of up, drained, "
                           "unreachable", status=422, field="state") from None
    site = _locked(session, select(m.Site).where(m.Site.name == name))
    if site is None:
        raise not_found("site", name)
    before, before_reason = site.state, site.reason
    # Its nodes take no new work while it is not up (``LiveState.sync_nodes``); a job
    # that reads data is placed only at its lawful sites, so it moves to another of
    # them or waits with the scheduler's reason.
    site.state = wanted.value
    site.reason = reason or ("" if wanted is m.SiteState.UP else f"{wanted.value} by an operator")
    moved: tuple[str, ...] = ()
    evacuating = state == m.SiteState.DRAINED.value and evacuate_runs is not False
    if evacuating:
        moved = evacuate(session, site=name, node=None, now=now,
                         why=_evacuated("site", name, caller, reason))
    if site.state != before or site.reason != before_reason or moved:
        append_audit(session, state_change_event(
            caller.user, kind="site", name=name, site=name, state=site.state,
            before=before, reason=reason,
            evacuate=evacuating if state == m.SiteState.DRAINED.value else None, jobs=moved), now)
    return site, Change(name, site.state, site.reason, moved)


# --- why a moved job waits -----------------------------------------------------------------

Read = Callable[[], Any]
"""A context manager factory for a read-only session (the control loop's ``read``)."""


class DrainWaits:
    """Why a job waits when drains keep it from every site it may use.

    Owned by the control loop. ``explain`` takes the pass's waits and returns,
    for each job that waits on unavailable nodes (``nodes-unavailable``) while
    every site it may run at is drained or has only drained or down nodes, a
    sentence naming the drains (node or site, and the operator's reason) and
    the rule that keeps it from the other sites: for a job that reads data,
    the residency rule that refuses each other site; otherwise the sites it
    names. Other waits are left as the scheduler wrote them. The rule part is
    cached per job (its data and lawful sites do not grow back on their own);
    the sites' and nodes' states are read again at most every ``refresh``
    seconds of the loop's clock (the words may lag a drain or an undrain by
    that much; where the job is placed never does: that is the scheduler's).
    """

    def __init__(self, refresh: float = 2.0) -> None:
        self.refresh = refresh
        self._rules: dict[tuple[str, tuple[str, ...]], Phrase] = {}
        self._known: set[str] = set()
        """Sites of the factory, as last read."""
        self._out: dict[str, Reason] = {}
        """Site → why it takes no work because of drains (site drained, or all its
        nodes drained or down and at least one drained), as last read."""
        self._read_at = float("-inf")

    def explain(self, read: Read, waiting: Mapping[str, Wait],
                sites_of: Callable[[str], tuple[str, ...] | None], now: float
                ) -> dict[str, Reason]:
        """Job → why it waits, for the jobs a drain keeps waiting (see the class).

        ``sites_of``: a waiting job's ``sites`` (``None``: any site).
        """
        candidates = {
            job_id: sites for job_id, w in waiting.items()
            if w.code is WaitCode.NODES_UNAVAILABLE and (sites := sites_of(job_id)) is not None
        }
        if not candidates:
            self._rules.clear()
            return {}
        missing = {job_id: sites for job_id, sites in candidates.items()
                   if (job_id, sites) not in self._rules}
        stale = now - self._read_at >= self.refresh
        if missing or stale:
            with read() as s:
                if stale:
                    self._known, self._out = self._drains(s)
                    self._read_at = now
                if missing:
                    self._rules.update(self._rule_parts(s, missing, now))
        alive = set(candidates.items())
        for key in [k for k in self._rules if k not in alive]:
            del self._rules[key]
        out: dict[str, Reason] = {}
        for job_id, sites in candidates.items():
            at = [site for site in sites if site in self._known]
            if not at or any(site not in self._out for site in at):
                continue  # a site it may use is not (only) drained: the scheduler's words stand
            drains = [phrase for site in at for phrase in self._out[site]]
            out[job_id] = (WAITS_FOR_DRAIN, *drains, self._rules[(job_id, sites)])
        return out

    @staticmethod
    def _drains(s: Session) -> tuple[set[str], dict[str, Reason]]:
        sites = {name: (state, reason) for name, state, reason in s.execute(
            select(m.Site.name, m.Site.state, m.Site.reason))}
        nodes: dict[str, list[tuple[str, str, str]]] = {}
        for node, state, reason, site in s.execute(
                select(m.Node.name, m.Node.state, m.Node.reason, m.Site.name)
                .join(m.Site, m.Node.site_id == m.Site.id).order_by(m.Node.name)):
            nodes.setdefault(site, []).append((node, state, reason))
        out: dict[str, Reason] = {}
        for site, (state, reason) in sites.items():
            if state == m.SiteState.DRAINED.value:
                out[site] = (_drained("site", site, reason),)
                continue
            if state != m.SiteState.UP.value:
                continue
            ups = [n for n in nodes.get(site, []) if n[1] == m.NodeState.UP.value]
            drained = [n for n in nodes.get(site, []) if n[1] == m.NodeState.DRAINED.value]
            if not ups and drained:
                out[site] = tuple(_drained("node", n, r) for n, _, r in drained)
        return set(sites), out

    @staticmethod
    def _rule_parts(s: Session, jobs: Mapping[str, tuple[str, ...]], now: float
                    ) -> dict[tuple[str, tuple[str, ...]], Phrase]:
        reads = residency.job_data(s, jobs)
        parts: dict[tuple[str, tuple[str, ...]], Phrase] = {}
        same: dict[tuple[object, ...], Phrase] = {}  # jobs reading the same data share one
        for job_id, sites in jobs.items():
            rows = reads.get(job_id)
            named = ", ".join(sites)
            if not rows:
                parts[(job_id, sites)] = Phrase("only-named-sites", {"sites": named})
                continue
            key = (tuple((r.id, r.version) for r in rows), sites)
            if key in same:
                parts[(job_id, sites)] = same[key]
                continue
            e = residency.eligibility(s, residency.to_policy(s, rows), now)
            refused = []
            for verdict in e.sites:
                if verdict.site in sites:
                    continue
                first = next(iter(verdict.refusals), None)
                if first is None:
                    continue
                law = f", {first.law}" if first.law else ""
                refused.append(f"{verdict.site} ({first.rule_id}{law})")
            same[key] = parts[(job_id, sites)] = (
                Phrase("data-only-to-refused", {"sites": named, "refused": ", ".join(refused)})
                if refused
                else Phrase("data-only-to", {"sites": named})
            )
        return parts


def unreachable_sites(session: Session) -> set[str]:
    """Sites an operator marked unreachable: the control loop gives up their runs and
    requeues them.

    A site the loop itself marked (its engine's controller does not answer,
    ``service.sites``) is left out: its runs go on under the engine's daemons.
    """
    marked = set(session.scalars(select(m.Site.name)
                                 .where(m.Site.state == m.SiteState.UNREACHABLE.value)))
    if marked:
        marked -= {k.removeprefix(HEALTH_KEY) for k in session.scalars(
            select(m.ServiceState.key).where(m.ServiceState.key.startswith(HEALTH_KEY)))}
    return marked
