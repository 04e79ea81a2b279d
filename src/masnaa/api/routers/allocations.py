"""``/api/v1/allocations`` and ``/reviewers``: an allocation from request to close.

Owns the request (you are its PI), reviews (by the users an operator names
with ``PUT /reviewers/{user}``), the award, supplement requests, tranches,
supplements, extension, close, progress reports, exchanges and members.
Every route is one transaction over ``service.accounting``; refusals of the
core come back as 4xx with its code (``negative-hours``, ``not-a-reviewer``
...). Visibility: see ``service.accounting`` (another tenant's allocation is
a 404; reviews only for operators and reviewers; the reason of a rejection
for everyone who sees the allocation). The views are the service's
(``service.allocation_views``), shared with the portal; supplement requests
and awards are ``service.supplements``. GPU-time is given in whole
GPU-seconds (``*_gpu_seconds``) and, for reading, in GPU-hours as decimal
strings.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.accounting import allocations as core
from masnaa.accounting.allocation import Allocation, AllocationPolicy, Amount, Role
from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import Strict
from masnaa.service import accounting as svc
from masnaa.service import allocation_views as views
from masnaa.service import supplements
from masnaa.service.tenancy import Caller, ServiceError, require_operator
from masnaa.store import accounting as t
from masnaa.store import models as m

router = APIRouter(
    tags=["accounting"], responses=ERROR_RESPONSES, dependencies=[Depends(forbid_unknown_query)]
)


class PoolHours(Strict):
    site: str
    gpu_type: str
    hours: Decimal


class AmountIn(Strict):
    gpu_hours: list[PoolHours] = Field(default_factory=list)
    credits: Decimal = Decimal(0)

    def amount(self) -> Amount:
        return svc.amount_of(((p.site, p.gpu_type, p.hours) for p in self.gpu_hours), self.credits)


class AwardIn(Strict):
    """An award: omit both fields to give what was asked (an explicit zero is refused)."""

    gpu_hours: list[PoolHours] | None = None
    credits: Decimal | None = None

    def amount(self) -> Amount | None:
        if self.gpu_hours is None and self.credits is None:
            return None
        return svc.amount_of(
            ((p.site, p.gpu_type, p.hours) for p in self.gpu_hours or ()),
            self.credits or Decimal(0),
        )


class AllocationIn(AmountIn):
    project: str
    tier: str
    start: date
    duration_days: int
    justification: str
    renewal_of: str | None = None


class SupplementRequestIn(AmountIn):
    justification: str


class ReviewIn(Strict):
    step: str
    approve: bool
    comment: str = ""


class ReportIn(Strict):
    text: str
    products: list[str] = Field(default_factory=list)


class ExtensionIn(Strict):
    expires: date


class CloseIn(Strict):
    reason: str = "closed"


class ExchangeIn(Strict):
    credits: Decimal
    site: str
    gpu_type: str


class MemberIn(Strict):
    user: str
    role: Role


class ReviewerIn(Strict):
    steps: list[str]


def _show(s: Session, caller: Caller, a: Allocation, now: float) -> dict[str, Any]:
    return views.show(s, caller, a, now)


# --- allocations ------------------------------------------------------------------------------


@router.post("/allocations", status_code=201, summary="Request an allocation (you are its PI)")
def request_allocation(body: AllocationIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = svc.request_allocation(
            s,
            caller,
            project=body.project,
            tier=body.tier,
            amount=body.amount(),
            start=body.start,
            duration_days=body.duration_days,
            justification=body.justification,
            renewal_of=body.renewal_of,
            now=now,
        )
        return _show(s, caller, a, now)


@router.get("/allocations", summary="Allocations you can see, with balances")
def list_allocations(
    state: State, caller: CurrentCaller, project: str | None = None
) -> list[dict[str, Any]]:
    now = state.now()
    with state.db.read() as s:
        qualified = svc.project_ref(s, caller, project)[1] if project is not None else None
        policy = svc.load_policy(s)
        return [
            views.allocation_view(s, caller, svc.from_doc(r.doc), policy, now)
            for r in svc.visible(s, caller, project=qualified)
        ]


@router.get("/allocations/{alloc_id}", summary="One allocation, with balance and burn-down")
def show_allocation(alloc_id: str, state: State, caller: CurrentCaller) -> dict[str, Any]:
    now = state.now()
    with state.db.read() as s:
        _, a = svc.get(s, caller, alloc_id)
        out = _show(s, caller, a, now)
        out["burn_down"] = views.burn_down_rows(s, a, now)
        return out


def _command(
    state: Any,
    caller: Caller,
    alloc_id: str,
    apply: Callable[[Allocation, AllocationPolicy, int], Allocation],
    pools: tuple[tuple[str, str], ...] = (),
    field: str = "gpu_hours",
) -> dict[str, Any]:
    """One core command in one transaction; ``pools`` it names are checked first."""
    now = state.now()
    with state.db.write() as s:
        a = svc.command(
            s, caller, alloc_id, lambda a, p: apply(a, p, int(now)), now=now, pools=pools,
            field=field,
        )
        return _show(s, caller, a, now)


@router.post("/allocations/{alloc_id}/reviews", summary="Review a step (reviewers)")
def review(alloc_id: str, body: ReviewIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = svc.review(s, caller, alloc_id, step=body.step, approve=body.approve,
                       comment=body.comment, now=now)
        return _show(s, caller, a, now)


@router.post(
    "/allocations/{alloc_id}/award",
    summary="Award an approved request; for a supplement request, grant it (operators)",
)
def award(
    alloc_id: str, state: State, caller: CurrentCaller, body: AwardIn | None = None
) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        amount = None if body is None else body.amount()
        a = supplements.award(s, caller, alloc_id, amount=amount, now=now)
        return _show(s, caller, a, now)


@router.post(
    "/allocations/{alloc_id}/supplement-requests",
    status_code=201,
    summary="Ask for a supplement to a live allocation (its members); reviewed like a request",
)
def request_supplement(
    alloc_id: str, body: SupplementRequestIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = supplements.request_supplement(
            s, caller, alloc_id, amount=body.amount(), justification=body.justification, now=now
        )
        return _show(s, caller, a, now)


@router.post("/allocations/{alloc_id}/tranches", summary="Release the next tranche (operators)")
def release_tranche(alloc_id: str, state: State, caller: CurrentCaller) -> dict[str, Any]:
    return _command(
        state, caller, alloc_id, lambda a, p, n: core.release_tranche(a, p, by=caller.user, at_=n)
    )


@router.post("/allocations/{alloc_id}/supplements", summary="Add a supplement (operators)")
def supplement(
    alloc_id: str, body: AmountIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.supplement(a, p, by=caller.user, amount=body.amount(), at_=n),
        pools=tuple(body.amount().gpu_hours),
    )


@router.post("/allocations/{alloc_id}/extension", summary="Extend the expiry (operators)")
def extend(alloc_id: str, body: ExtensionIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.extend(a, p, by=caller.user, new_expiry=body.expires, at_=n),
    )


@router.post("/allocations/{alloc_id}/close", summary="Close (PI or operator)")
def close(alloc_id: str, body: CloseIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.close(a, p, by=caller.user, reason=body.reason, at_=n),
    )


@router.post("/allocations/{alloc_id}/reports", summary="File a progress report")
def report(alloc_id: str, body: ReportIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.report_progress(
            a, by=caller.user, text=body.text, products=tuple(body.products), at_=n
        ),
    )


@router.post("/allocations/{alloc_id}/exchange", summary="Exchange credits for GPU-hours")
def exchange(
    alloc_id: str, body: ExchangeIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.exchange(
            a, p, by=caller.user, credits=body.credits, pool=(body.site, body.gpu_type), at_=n
        ),
        pools=((body.site, body.gpu_type),),
        field="",
    )


@router.post("/allocations/{alloc_id}/members", summary="Add a co-PI, manager or member")
def add_member(
    alloc_id: str, body: MemberIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = svc.add_member(s, caller, alloc_id, user=body.user, role=body.role, now=now)
        return _show(s, caller, a, now)


# --- reviewers --------------------------------------------------------------------------------


@router.put("/reviewers/{user}", summary="Set the review steps a user may review (operators)")
def set_reviewer(
    user: str, body: ReviewerIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    require_operator(caller, "name reviewers")
    with state.db.write() as s:
        if s.scalar(select(m.User.id).where(m.User.name == user)) is None:
            raise svc.not_found("user", user)
        known = {step for tier in svc.load_policy(s).tiers.values() for step in tier.review_steps}
        for i, step in enumerate(body.steps):
            if step not in known:
                # Checked before the old rows go: a typo must not strip a reviewer's steps.
                raise ServiceError(
                    "unknown-review-step",
                    f"{step!r} is no review step of any tier; use {', '.join(sorted(known))}",
                    status=422,
                    field=f"steps[{i}]",
                )
        for row in s.scalars(select(t.ReviewerRow).where(t.ReviewerRow.user == user)):
            s.delete(row)
        s.flush()
        for step in sorted(set(body.steps)):
            s.add(t.ReviewerRow(user=user, step=step))
    return {"user": user, "steps": sorted(set(body.steps))}

