"""Read-only views over what the store already keeps: the audit log, page by page, and
utilisation over time.

Owns ``audit_page`` (audit records newest first, filtered by action and site,
paged by ``seq``) and ``utilisation`` (GPUs held per site over a window).

Where utilisation comes from: the **run segments** the control loop writes
(``store.accounting.RunSegmentRow``, one per run: job, attempt, start, end,
GPUs, site), inserted in the transaction that marks a job running and closed
in the one that settles it. A segment still open counts up to ``now``. They
are the factory's only durable record of who held which GPUs when; nothing
else is sampled or stored for this view.

Terms and invariants:
- A **bucket** is a half-open interval ``[at, at + step)``; its value per site
  is the *average* number of GPUs held during it (GPU-seconds ÷ ``step``), so
  a bucket never counts a run twice and a run that spans buckets is split.
- **Capacity** is the GPUs of the site's nodes as declared *now* (whatever
  their state): the store keeps no history of nodes added or removed, so a
  past bucket is measured against today's hardware. Utilisation is
  ``held ÷ capacity`` and may exceed 1 only if nodes were removed since.
- Nothing here writes; every function reads in the caller's session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from masnaa.audit.chain import AuditRecord
from masnaa.service.audit import audit_record
from masnaa.service.tenancy import ServiceError
from masnaa.store import models as m
from masnaa.store.accounting import RunSegmentRow
from masnaa.store.residency import AuditRow

AUDIT_PAGE = 50
MAX_BUCKETS = 240


# --- the audit log ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: list[AuditRecord]
    next_before: int | None
    """``seq`` to pass as ``before`` for the next (older) page; ``None`` on the last page."""
    total: int
    """Records matching the filter, on every page."""


def audit_page(
    session: Session,
    *,
    action: str | None = None,
    site: str | None = None,
    before: int | None = None,
    limit: int = AUDIT_PAGE,
) -> AuditPage:
    """Audit records newest first: ``seq < before`` when given, at most ``limit``."""
    if limit < 1:
        raise ServiceError("invalid-limit", "limit must be at least 1", status=422)
    where = []
    if action:
        where.append(AuditRow.action == action)
    if site:
        where.append(AuditRow.site == site)
    total = int(session.scalar(select(func.count()).select_from(AuditRow).where(*where)) or 0)
    stmt = select(AuditRow).where(*where)
    if before is not None:
        stmt = stmt.where(AuditRow.seq < before)
    rows = list(session.scalars(stmt.order_by(AuditRow.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage([audit_record(r) for r in rows], rows[-1].seq if more else None, total)


# --- utilisation over time ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bucket:
    at: float
    held: dict[str, float]
    """Site → average GPUs held during ``[at, at + step)``."""

    def total(self) -> float:
        return sum(self.held.values())


@dataclass(frozen=True, slots=True)
class Utilisation:
    start: float
    end: float
    step: float
    capacity: dict[str, int]
    """Site → GPUs of its nodes as declared now."""
    buckets: list[Bucket] = field(default_factory=list)
    gpu_hours: dict[str, float] = field(default_factory=dict)
    """Tenant → GPU-hours held in the window."""

    @property
    def total_capacity(self) -> int:
        return sum(self.capacity.values())

    def fraction(self, bucket: Bucket, site: str | None = None) -> float:
        """Share of the capacity (of ``site``, or of the factory) held in ``bucket``."""
        cap = self.capacity.get(site, 0) if site is not None else self.total_capacity
        held = bucket.held.get(site, 0.0) if site is not None else bucket.total()
        return held / cap if cap else 0.0

    def mean(self, site: str | None = None) -> float:
        if not self.buckets:
            return 0.0
        return sum(self.fraction(b, site) for b in self.buckets) / len(self.buckets)

    def peak(self, site: str | None = None) -> float:
        return max((self.fraction(b, site) for b in self.buckets), default=0.0)


def utilisation(
    session: Session, *, start: float, end: float, buckets: int, now: float
) -> Utilisation:
    """GPUs held per site in ``buckets`` equal slices of ``[start, end)`` (see the module)."""
    if not (end > start) or not (1 <= buckets <= MAX_BUCKETS):
        raise ServiceError(
            "invalid-window",
            f"a window needs end > start and 1 to {MAX_BUCKETS} buckets; got "
            f"[{start}, {end}) in {buckets}",
            status=422,
        )
    step = (end - start) / buckets
    sites = list(session.scalars(select(m.Site.name).order_by(m.Site.id)))
    capacity = dict.fromkeys(sites, 0)
    for site, gpus in session.execute(
        select(m.Site.name, func.sum(m.Node.gpu_count))
        .join(m.Node, m.Node.site_id == m.Site.id)
        .group_by(m.Site.name)
    ):
        capacity[site] = int(gpus or 0)
    held = [dict.fromkeys(sites, 0.0) for _ in range(buckets)]
    hours: dict[str, float] = {}
    rs = RunSegmentRow
    for seg_start, seg_end, gpus, site, tenant in session.execute(
        select(rs.start, rs.end, rs.gpus, rs.site, rs.tenant).where(
            rs.start < end, or_(rs.end.is_(None), rs.end > start)
        )
    ):
        lo = max(float(seg_start), start)
        hi = min(float(seg_end) if seg_end is not None else now, end)
        if hi <= lo:
            continue
        hours[tenant] = hours.get(tenant, 0.0) + gpus * (hi - lo) / 3600.0
        first = int((lo - start) // step)
        last = min(buckets - 1, math.ceil((hi - start) / step) - 1)
        for i in range(first, last + 1):
            b_lo = start + i * step
            overlap = min(hi, b_lo + step) - max(lo, b_lo)
            if overlap > 0:
                row = held[i]
                row[site] = row.get(site, 0.0) + gpus * overlap / step
    return Utilisation(
        start, end, step, capacity,
        [Bucket(start + i * step, held[i]) for i in range(buckets)],
        dict(sorted(hours.items())),
    )
