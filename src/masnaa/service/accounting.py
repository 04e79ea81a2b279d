"""Accounting in the live service: allocations, price data, usage and statements over the store.

The pure core (``masnaa.accounting``) decides; this module loads its inputs
from the store, checks who may do what, applies a core command and saves the
result, in the caller's transaction. The control loop's side (metering and
balances) is ``service.metering``.

Terms and rules:
- A project is named ``tenant/project`` in accounting (project names are
  unique only within a tenant).
- The core names people by user name; an **operator** is a user with the
  operator role; a **reviewer** of a step is a row of
  ``allocation_reviewers`` (operators manage them).
- **Conflict of interest**: a reviewer reviews no request of their own tenant
  (403 ``conflict-of-interest``, the code and status of the core's rule for the
  allocation's own members): the core knows people by name only, so this rule
  is the service's (``review``).
- **Renewals**: ``renewal_of`` names an allocation the caller can see, of the
  same project (404 ``allocation-not-found`` / 422 ``renewal-of-another-project``),
  as the portal's form already required, that was awarded (``RENEWABLE``:
  awarded, active, exhausted or expired; 409 ``not-renewable`` otherwise, as
  the core's ``renew``).
- **Visibility**: operators and reviewers see every allocation; anyone else
  sees the allocations of their own tenant. Another tenant's allocation,
  usage or statement answers 404, as if it did not exist. Reviews are shown
  only to operators and reviewers (``visible_reviews``).
- **Enforcement** (who needs an allocation to run): per tenant, in
  ``tenant_terms.enforced``. Without a row, a grant-funded tenant (university,
  research institute, public body, NGO) is enforced from its first allocation
  request on, in every project (a project without one waits with "project P
  has no allocation; request one"); a tenant that never asked for one, and
  postpaid kinds (start-up, enterprise), are not enforced.
- **Pools are the factory's**: every pool named in a request, award,
  supplement or exchange (and every price) has a site and a GPU type the
  factory declares (``check_pools``, against the catalog ``/jobs`` checks
  with): a grant in a pool with a misspelt site could never be used.
- Every allocation write gives the row the next ``seq`` (compare-and-set on the
  old one), so concurrent writers never lose an update and the control loop
  finds changes with one lookup.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from masnaa.accounting import allocations
from masnaa.accounting.allocation import (
    RENEWABLE,
    Allocation,
    AllocationPolicy,
    Amount,
    Event,
    Pool,
    ProgressReport,
    ReviewRecord,
    Role,
    State,
)
from masnaa.accounting.allocations import request
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant
from masnaa.accounting.metering import ChargePolicy, Segment, SegmentEnd, UsageRecord, Window
from masnaa.accounting.metering import uncharged_windows as _uncharged_windows
from masnaa.domain.tenancy import TenantKind
from masnaa.service.job_catalog import catalog
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import accounting as t
from masnaa.store import models as m

POSTPAID_KINDS = frozenset({TenantKind.STARTUP.value, TenantKind.ENTERPRISE.value})
TERMS_REV_KEY = "terms-revision"

FORBIDDEN_CODES = frozenset(
    {"not-a-reviewer", "not-an-operator", "not-allowed", "conflict-of-interest"}
)
CONFLICT_CODES = frozenset(
    {
        "overlapping-price",
        "bad-state",
        "no-tranche-left",
        "too-many-supplements",
        "duplicate-rate",
        "wrong-review-step",
        "supplement-request",
        "pi-role",
    }
)


def http_error(exc: AccountingError) -> ServiceError:
    """The core's refusal as an API error: same code and sentence."""
    status = 403 if exc.code in FORBIDDEN_CODES else 409 if exc.code in CONFLICT_CODES else 422
    return ServiceError(exc.code, exc.message, status=status)


def not_found(what: str, name: str) -> ServiceError:
    return ServiceError(f"{what}-not-found", f"no {what} {name!r} is visible to you", status=404)


# --- codec: Allocation ⇄ JSON ---------------------------------------------------------------


def _pools(values: Mapping[Pool, Any]) -> list[list[str]]:
    return [[site, gpu, str(v)] for (site, gpu), v in sorted(values.items())]


def _pools_int(rows: list[list[str]]) -> dict[Pool, int]:
    return {(r[0], r[1]): int(r[2]) for r in rows}


def to_doc(a: Allocation) -> dict[str, Any]:
    return {
        "id": a.id,
        "project": a.project,
        "tier": a.tier,
        "state": a.state.value,
        "members": dict(a.members),
        "requested": {
            "gpu_hours": _pools(a.requested.gpu_hours),
            "credits": str(a.requested.credits),
        },
        "start": a.start.isoformat(),
        "expires": a.expires.isoformat(),
        "justification": a.justification,
        "reviews": [[r.step, r.reviewer, r.approve, r.comment, r.at] for r in a.reviews],
        "awarded": _pools(a.awarded),
        "awarded_credits": str(a.awarded_credits),
        "tranches": [str(f) for f in a.tranches],
        "released_tranches": a.released_tranches,
        "supplemented": _pools(a.supplemented),
        "supplemented_credits": str(a.supplemented_credits),
        "supplements": a.supplements,
        "exchanged": _pools(a.exchanged),
        "exchanged_credits": str(a.exchanged_credits),
        "reports": [[r.by, r.text, list(r.products), r.at] for r in a.reports],
        "last_release_at": a.last_release_at,
        "lapsed_gpu_seconds": a.lapsed_gpu_seconds,
        "renewal_of": a.renewal_of,
        "first_expires": a.first_expires.isoformat() if a.first_expires else None,
        "history": [[e.at, e.by, e.what] for e in a.history],
        "supplement_of": a.supplement_of,
    }


def from_doc(d: Mapping[str, Any]) -> Allocation:
    req = d["requested"]
    return Allocation(
        id=d["id"],
        project=d["project"],
        tier=d["tier"],
        state=State(d["state"]),
        members={u: Role(r) for u, r in d["members"].items()},
        requested=Amount(
            {(r[0], r[1]): Decimal(r[2]) for r in req["gpu_hours"]}, Decimal(req["credits"])
        ),
        start=date.fromisoformat(d["start"]),
        expires=date.fromisoformat(d["expires"]),
        justification=d["justification"],
        reviews=tuple(ReviewRecord(s, u, bool(ok), c, int(at)) for s, u, ok, c, at in d["reviews"]),
        awarded=_pools_int(d["awarded"]),
        awarded_credits=Decimal(d["awarded_credits"]),
        tranches=tuple(Decimal(f) for f in d["tranches"]),
        released_tranches=int(d["released_tranches"]),
        supplemented=_pools_int(d["supplemented"]),
        supplemented_credits=Decimal(d["supplemented_credits"]),
        supplements=int(d["supplements"]),
        exchanged=_pools_int(d["exchanged"]),
        exchanged_credits=Decimal(d["exchanged_credits"]),
        reports=tuple(ProgressReport(b, x, tuple(p), int(at)) for b, x, p, at in d["reports"]),
        last_release_at=d["last_release_at"],
        lapsed_gpu_seconds=int(d["lapsed_gpu_seconds"]),
        renewal_of=d["renewal_of"],
        first_expires=date.fromisoformat(d["first_expires"]) if d["first_expires"] else None,
        history=tuple(Event(int(at), by, what) for at, by, what in d["history"]),
        supplement_of=d.get("supplement_of"),  # absent from rows written before it existed
    )


# --- loading the core's inputs ----------------------------------------------------------------


def load_policy(s: Session) -> AllocationPolicy:
    reviewers: dict[str, set[str]] = {}
    for row in s.scalars(select(t.ReviewerRow)):
        reviewers.setdefault(row.step, set()).add(row.user)
    operators = frozenset(
        s.scalars(select(m.User.name).where(m.User.role == m.Role.OPERATOR.value))
    )
    base = AllocationPolicy.default({k: frozenset(v) for k, v in reviewers.items()}, operators)
    rates = {
        (r.site, r.gpu_type): Decimal(r.credits_per_hour)
        for r in s.scalars(select(t.CreditRateRow))
    }
    return AllocationPolicy(base.tiers, base.reviewers, base.operators, rates)


def is_reviewer(s: Session, user: str) -> bool:
    return s.scalar(select(func.count()).where(t.ReviewerRow.user == user)) != 0


def load_allocations(s: Session, *, where: Any = None) -> list[Allocation]:
    stmt = select(t.AllocationRow.doc).order_by(t.AllocationRow.id)
    if where is not None:
        stmt = stmt.where(where)
    return [from_doc(d) for d in s.scalars(stmt)]


def record_of(r: t.UsageRecordRow) -> UsageRecord:
    return UsageRecord(
        r.job_id,
        r.attempt,
        r.start,
        r.end,
        r.gpus,
        r.gpu_type,
        r.site,
        r.tenant,
        r.project,
        r.allocation_id,
    )


def segment_of(r: t.RunSegmentRow) -> Segment:
    return Segment(
        r.job_id,
        r.attempt,
        r.start,
        r.end,
        r.gpus,
        r.gpu_type,
        r.site,
        r.tenant,
        r.project,
        r.allocation_id,
        SegmentEnd(r.ended),
        r.preempt_notice,
        r.last_checkpoint,
    )


def load_records(s: Session, *, where: Iterable[Any] = ()) -> list[UsageRecord]:
    stmt = (
        select(t.UsageRecordRow)
        .where(*where)
        .order_by(t.UsageRecordRow.job_id, t.UsageRecordRow.attempt, t.UsageRecordRow.start)
    )
    return [record_of(r) for r in s.scalars(stmt)]


def windows_for(
    s: Session, records: Iterable[UsageRecord], policy: ChargePolicy | None = None
) -> dict[str, dict[int, Window]]:
    """The uncharged (preempted) windows of the ended segments of ``records``' jobs."""
    jobs = sorted({r.job for r in records})
    segs: list[Segment] = []
    for i in range(0, len(jobs), 500):
        rows = s.scalars(
            select(t.RunSegmentRow).where(
                t.RunSegmentRow.job_id.in_(jobs[i : i + 500]), t.RunSegmentRow.end.is_not(None)
            )
        )
        segs.extend(segment_of(r) for r in rows)
    return _uncharged_windows(segs, policy or ChargePolicy())


def tenant_kinds(s: Session) -> dict[str, str]:
    return dict(s.execute(select(m.Tenant.name, m.Tenant.kind)).all())


def enforced_projects(s: Session) -> set[str]:
    """``tenant/project`` of every project that needs an allocation to run."""
    terms = dict(s.execute(select(t.TenantTermsRow.tenant, t.TenantTermsRow.enforced)).all())
    with_allocations = set(s.scalars(select(t.AllocationRow.tenant).distinct()))
    out = set()
    rows = s.execute(
        select(m.Tenant.name, m.Tenant.kind, m.Project.name).join(
            m.Project, m.Project.tenant_id == m.Tenant.id
        )
    )
    for tenant, kind, project in rows:
        enforced = terms.get(tenant)
        if enforced is None:
            enforced = kind not in POSTPAID_KINDS and tenant in with_allocations
        if enforced:
            out.add(f"{tenant}/{project}")
    return out


# --- allocations ----------------------------------------------------------------------------


def _next_seq(s: Session) -> int:
    return int(s.scalar(select(func.max(t.AllocationRow.seq))) or 0) + 1


def save(s: Session, a: Allocation, *, tenant: str, now: float, old_seq: int | None) -> int:
    """Insert (``old_seq`` None) or compare-and-set the allocation; returns its new seq."""
    seq = _next_seq(s)
    values = {
        "tenant": tenant,
        "project": a.project,
        "tier": a.tier,
        "state": a.state.value,
        "start": a.start,
        "expires": a.expires,
        "seq": seq,
        "doc": to_doc(a),
        "updated_at": int(now),
    }
    try:
        if old_seq is None:
            s.add(t.AllocationRow(id=a.id, programme=_programme(a), **values))
            s.flush()
            return seq
        done = s.execute(
            update(t.AllocationRow)
            .where(t.AllocationRow.id == a.id, t.AllocationRow.seq == old_seq)
            .values(**values)
        )
    except IntegrityError as exc:  # another writer took the same seq first
        raise ServiceError(
            "allocation-changed", "allocations changed meanwhile; try again", status=409
        ) from exc
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ServiceError(
            "allocation-changed",
            f"allocation {a.id!r} changed while this was being applied; try again",
            status=409,
        )
    return seq


def _programme(a: Allocation) -> str:
    tier = AllocationPolicy.default({}, frozenset()).tiers.get(a.tier)
    return tier.programme if tier is not None else "default"


def sees_all(s: Session, caller: Caller) -> bool:
    return caller.is_operator or is_reviewer(s, caller.user)


def get(s: Session, caller: Caller, alloc_id: str) -> tuple[t.AllocationRow, Allocation]:
    row = s.get(t.AllocationRow, alloc_id)
    if row is None or not (row.tenant == caller.tenant or sees_all(s, caller)):
        raise not_found("allocation", alloc_id)
    return row, from_doc(row.doc)


def visible(s: Session, caller: Caller, *, project: str | None = None) -> list[t.AllocationRow]:
    stmt = select(t.AllocationRow).order_by(t.AllocationRow.id)
    if not sees_all(s, caller):
        stmt = stmt.where(t.AllocationRow.tenant == (caller.tenant or ""))
    if project is not None:
        stmt = stmt.where(t.AllocationRow.project == project)
    return list(s.scalars(stmt))


def project_ref(s: Session, caller: Caller, ref: str) -> tuple[str, str]:
    """(tenant, ``tenant/project``) for a project the caller may see."""
    from masnaa.service.tenancy import get_project

    project = get_project(s, caller, ref)
    tenant = s.get(m.Tenant, project.tenant_id)
    assert tenant is not None
    return tenant.name, f"{tenant.name}/{project.name}"


def check_pools(s: Session, pools: Iterable[Pool], field: str = "gpu_hours") -> None:
    """Refuse a pool whose site or GPU type the factory does not declare (400
    ``unknown-site`` / ``unknown-gpu-type``, as ``/jobs``); ``field`` names the
    request's list of pools (``gpu_hours[i].site``), or is empty for a request
    that names one pool in its ``site`` and ``gpu_type``."""
    known = catalog(s)
    for i, (site, gpu_type) in enumerate(pools):
        at = f"{field}[{i}]." if field else ""
        if site not in known.sites:
            raise ServiceError(
                "unknown-site",
                f"site {site!r} is not declared: use one of "
                f"{', '.join(sorted(known.sites)) or '(no site is declared yet)'}",
                field=f"{at}site",
            )
        if gpu_type not in known.gpu_types:
            raise ServiceError(
                "unknown-gpu-type",
                f"GPU type {gpu_type!r} is not declared: use one of "
                f"{', '.join(known.gpu_types) or '(no GPU type is declared yet)'}",
                field=f"{at}gpu_type",
            )


def amount_of(gpu_hours: Iterable[tuple[str, str, Decimal]], credits: Decimal) -> Amount:
    pools: dict[Pool, Decimal] = {}
    for site, gpu, hours in gpu_hours:
        pools[(site, gpu)] = pools.get((site, gpu), Decimal(0)) + hours
    return Amount(pools, credits)


def request_allocation(
    s: Session,
    caller: Caller,
    *,
    project: str,
    tier: str,
    amount: Amount,
    start: date,
    duration_days: int,
    justification: str,
    renewal_of: str | None,
    now: float,
) -> Allocation:
    tenant, qualified = project_ref(s, caller, project)
    if caller.tenant != tenant and not caller.is_operator:
        raise not_found("project", project)
    if renewal_of is not None:
        try:
            _, base = get(s, caller, renewal_of)  # 404 as for any allocation one cannot see
        except ServiceError as exc:
            exc.field = "renewal_of"
            raise
        if base.project != qualified:
            # Reviewers credit a renewal with its base's record: it must be this project's.
            raise ServiceError(
                "renewal-of-another-project",
                f"allocation {renewal_of!r} is of project {base.project!r}, not {qualified!r}: "
                "a renewal continues an allocation of the same project; name one of its "
                "allocations, or leave renewal_of out",
                status=422,
                field="renewal_of",
            )
        if base.state not in RENEWABLE:  # the core's renew() refuses these too
            states = sorted(RENEWABLE)
            raise ServiceError(
                "not-renewable",
                f"allocation {renewal_of!r} is {base.state}: only an allocation that is "
                f"{', '.join(states[:-1])} or {states[-1]} can be renewed; wait for its "
                "award, or leave renewal_of out to request a new allocation",
                status=409,
                field="renewal_of",
            )
    check_pools(s, amount.gpu_hours)
    policy = load_policy(s)
    alloc_id = f"alloc-{secrets.token_hex(4)}"
    try:
        a = request(
            policy,
            id=alloc_id,
            project=qualified,
            pi=caller.user,
            tier=tier,
            amount=amount,
            start=start,
            duration_days=duration_days,
            justification=justification,
            at_=int(now),
            renewal_of=renewal_of,
        )
    except AccountingError as exc:
        raise http_error(exc) from exc
    save(s, a, tenant=tenant, now=now, old_seq=None)
    return a


def command(
    s: Session,
    caller: Caller,
    alloc_id: str,
    apply: Callable[[Allocation, AllocationPolicy], Allocation],
    *,
    now: float,
    pools: Iterable[Pool] = (),
    field: str = "gpu_hours",
) -> Allocation:
    """Apply one core command to a visible allocation and save it; ``pools`` are
    the pools the command names, checked first (``check_pools``)."""
    row, a = get(s, caller, alloc_id)
    check_pools(s, pools, field)
    policy = load_policy(s)
    try:
        new = apply(a, policy)
    except AccountingError as exc:
        raise http_error(exc) from exc
    save(s, new, tenant=row.tenant, now=now, old_seq=row.seq)
    return new


def review(
    s: Session, caller: Caller, alloc_id: str, *, step: str, approve: bool, comment: str,
    now: float,
) -> Allocation:
    """Record one review step as ``caller`` (the core's rules), unless the request is of
    the reviewer's own tenant: checked after the core's, so that someone who reviews
    nothing still hears ``not-a-reviewer``."""

    def apply(a: Allocation, policy: AllocationPolicy) -> Allocation:
        done = allocations.review(a, policy, step=step, reviewer=caller.user, approve=approve,
                                  comment=comment, at_=int(now))
        tenant = a.project.partition("/")[0]
        if caller.tenant is not None and tenant == caller.tenant:
            raise ServiceError(
                "conflict-of-interest",
                f"{caller.user!r} is of tenant {tenant!r}, which asked for allocation "
                f"{a.id!r}, and may not review it: a reviewer of another tenant or an "
                "operator may",
                status=403,
            )
        return done

    return command(s, caller, alloc_id, apply, now=now)


def add_member(
    s: Session, caller: Caller, alloc_id: str, *, user: str, role: Role, now: float
) -> Allocation:
    """Add a member to a visible allocation, or change a member's role (the core's
    rules). ``user`` must be a user of the allocation's tenant: a user of another
    tenant answers 404 exactly as one that does not exist."""
    row, _ = get(s, caller, alloc_id)
    home = s.scalar(
        select(m.User.id)
        .join(m.Tenant, m.User.tenant_id == m.Tenant.id)
        .where(m.User.name == user, m.Tenant.name == row.tenant)
    )
    if home is None:
        raise ServiceError(
            "user-not-found",
            f"no user {user!r} in tenant {row.tenant!r}: members of an allocation are users "
            "of its tenant",
            status=404,
            field="user",
        )
    return command(
        s,
        caller,
        alloc_id,
        lambda a, p: allocations.add_member(a, by=caller.user, user=user, role=role, at_=int(now)),
        now=now,
    )


def used_of(s: Session, alloc_ids: Iterable[str]) -> dict[str, dict[Pool, int]]:
    """Charged GPU-seconds per allocation and pool (preempted time credited back)."""
    ids = list(alloc_ids)
    if not ids:
        return {}
    records = load_records(s, where=[t.UsageRecordRow.allocation_id.in_(ids)])
    windows = windows_for(s, records)
    from masnaa.accounting.balance import used_by_allocation

    return used_by_allocation(records, windows)


def now_instant(now: float) -> Instant:
    return int(now)


def bump_terms(s: Session) -> None:
    """Tell the control loop that enforcement terms changed."""
    row = s.get(t.AccountingSetting, TERMS_REV_KEY)
    if row is None:
        s.add(t.AccountingSetting(key=TERMS_REV_KEY, value={"rev": 1}))
    else:
        row.value = {"rev": int(row.value.get("rev", 0)) + 1}
