"""The audit chain in the database: sealing, reading, verifying and exporting it.

Owns the service side of ``masnaa.audit.chain``: ``append_audit`` seals an
event onto ``audit_records`` and moves ``audit_head`` in the caller's
transaction, so a record commits (or rolls back) with the change it proves.
``record_policy`` audits a change of the residency rules in force.
Everything else reads: the chain as records, its head, the walk that
verifies it, and the JSON-lines file ``masnaa audit verify FILE`` checks.

Invariants:
- records are appended under the write lock of the caller's transaction
  (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``FOR UPDATE`` on ``audit_head``):
  ``seq`` has no gaps and the head row moves with it;
- a stored row reads back as the record that was hashed (``audit_record``;
  ``at`` is kept as the chain's canonical text, see ``store.residency``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.audit.chain import AuditRecord, Verification, format_time, parse_time, verify
from masnaa.audit.events import AuditEvent, policy_change_event, seal_event
from masnaa.service.tenancy import ServiceError
from masnaa.store.residency import AuditHead, AuditRow


# Here, not in residency: both stamp times with it, and residency imports this module.
def to_time(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def audit_record(r: AuditRow) -> AuditRecord:
    """A stored audit row as the chain's record (what ``audit.chain`` verifies)."""
    return AuditRecord(seq=r.seq, at=parse_time(r.at), actor=r.actor, action=r.action,
                       site=r.site, data_ids=tuple(r.data_ids), rule_id=r.rule_id,
                       legal_basis=r.legal_basis, details=dict(r.details),
                       prev_hash=r.prev_hash, hash=r.hash)


def append_audit(session: Session, event: AuditEvent, now: float) -> AuditRecord:
    """Seal ``event`` onto the chain inside the caller's transaction."""
    stmt = select(AuditHead).where(AuditHead.id == 1)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    head = session.scalars(stmt).first()
    prev = None
    if head is not None:
        last = session.get(AuditRow, head.seq)
        if last is None:
            raise ServiceError("audit-broken", f"the audit head names seq {head.seq}, which is "
                               "missing: verify the chain (GET /api/v1/audit/verify)", status=500)
        prev = audit_record(last)
    record = seal_event(prev, to_time(now), event)
    session.add(AuditRow(seq=record.seq, at=format_time(record.at), actor=record.actor,
                         action=record.action, site=record.site,
                         data_ids=list(record.data_ids), rule_id=record.rule_id,
                         legal_basis=record.legal_basis, details=dict(record.details),
                         prev_hash=record.prev_hash, hash=record.hash))
    if head is None:
        session.add(AuditHead(id=1, seq=record.seq, hash=record.hash))
    else:
        head.seq, head.hash = record.seq, record.hash
    session.flush()
    return record


def audit_records(session: Session, *, since: float | None = None,
                  until: float | None = None) -> list[AuditRecord]:
    stmt = select(AuditRow).order_by(AuditRow.seq)
    if since is not None:
        stmt = stmt.where(AuditRow.at >= format_time(to_time(since)))
    if until is not None:
        stmt = stmt.where(AuditRow.at < format_time(to_time(until)))
    return [audit_record(r) for r in session.scalars(stmt)]


def audit_head(session: Session) -> tuple[int, str] | None:
    head = session.get(AuditHead, 1)
    return None if head is None else (head.seq, head.hash)


def verify_chain(session: Session) -> Verification:
    """Walk the whole chain in the database, anchored at ``audit_head``."""
    return verify(audit_records(session), audit_head(session))


def export_jsonl(session: Session) -> bytes:
    """The chain as the JSON-lines file ``masnaa audit verify FILE`` reads."""
    return b"".join(r.to_line() + b"\n" for r in audit_records(session))


def record_policy(session: Session, actor: str, now: float) -> AuditRecord | None:
    """Audit a policy change when the rules in force differ from the last ones recorded."""
    from masnaa.service.residency import current_rules  # residency imports this module

    rules = current_rules()
    last = session.scalars(select(AuditRow).where(AuditRow.action == "policy-change")
                           .order_by(AuditRow.seq.desc()).limit(1)).first()
    if last is not None and last.details.get("digest") == rules.digest:
        return None
    before = None if last is None else (last.details.get("version"), last.details.get("digest"))
    return append_audit(session, policy_change_event(actor, before, rules), now)
