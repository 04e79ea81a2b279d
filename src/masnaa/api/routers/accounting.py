"""``/api/v1`` accounting: allocations, reviewers, price data, usage, statements, reports.

Every route is one transaction over ``service.accounting``; refusals of the
core come back as 4xx with its code (``negative-hours``, ``not-a-reviewer``,
``currency-mismatch``, ``overlapping-price`` ...). Visibility: see
``service.accounting`` (another tenant's allocation, usage or statement is a
404; reviews only for operators and reviewers; the reason of a rejection for
everyone who sees the allocation). The views are the service's
(``service.allocation_views``, ``service.statements``), shared with the
portal; supplement requests and awards are ``service.supplements``. GPU-time
is given in whole GPU-seconds (``*_gpu_seconds``) and, for reading, in
GPU-hours as decimal strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.accounting import allocations as core
from masnaa.accounting.allocations import Allocation, AllocationPolicy, Role
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.money import Money
from masnaa.accounting.prices import (
    Discount,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
)
from masnaa.accounting.rating import rate
from masnaa.accounting.statements import (
    funders_report,
    funders_report_csv,
    operator_report,
    operator_report_csv,
    statement_csv,
    statement_html,
)
from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.domain.tenancy import TenantKind
from masnaa.service import accounting as svc
from masnaa.service import allocation_views as views
from masnaa.service import statements, supplements
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import accounting as t
from masnaa.store import models as m

CSV_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {}}}
}
STATEMENT_TYPES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {}, "text/html": {}}}
}

router = APIRouter(
    tags=["accounting"], responses=ERROR_RESPONSES, dependencies=[Depends(forbid_unknown_query)]
)



class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolHours(Strict):
    site: str
    gpu_type: str
    hours: Decimal


class AmountIn(Strict):
    gpu_hours: list[PoolHours] = Field(default_factory=list)
    credits: Decimal = Decimal(0)

    def amount(self) -> core.Amount:
        return svc.amount_of(((p.site, p.gpu_type, p.hours) for p in self.gpu_hours), self.credits)


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


class PriceIn(Strict):
    site: str
    gpu_type: str
    amount: Decimal
    currency: str
    valid_from: date
    valid_to: date | None = None


class PricesIn(Strict):
    prices: list[PriceIn]


class RateIn(Strict):
    day: date
    currency: str
    per_usd: Decimal


class RatesIn(Strict):
    rates: list[RateIn]


class DiscountIn(Strict):
    kind: TenantKind
    tier: str | None = None
    rate: Decimal


class DiscountsIn(Strict):
    discounts: list[DiscountIn]


class TermsIn(Strict):
    enforced: bool
    tier: str | None = None


class TaxIn(Strict):
    rates: dict[str, Decimal]


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
) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = svc.command(s, caller, alloc_id, lambda a, p: apply(a, p, int(now)), now=now)
        return _show(s, caller, a, now)


@router.post("/allocations/{alloc_id}/reviews", summary="Review a step (reviewers)")
def review(alloc_id: str, body: ReviewIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.review(
            a,
            p,
            step=body.step,
            reviewer=caller.user,
            approve=body.approve,
            comment=body.comment,
            at_=n,
        ),
    )


@router.post(
    "/allocations/{alloc_id}/award",
    summary="Award an approved request; for a supplement request, grant it (operators)",
)
def award(alloc_id: str, body: AmountIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    now = state.now()
    with state.db.write() as s:
        a = supplements.award(s, caller, alloc_id, amount=body.amount(), now=now)
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
    )


@router.post("/allocations/{alloc_id}/members", summary="Add a co-PI, manager or member")
def add_member(
    alloc_id: str, body: MemberIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    return _command(
        state,
        caller,
        alloc_id,
        lambda a, p, n: core.add_member(a, by=caller.user, user=body.user, role=body.role, at_=n),
    )


# --- operator data ----------------------------------------------------------------------------


def _operator(caller: Caller, doing: str) -> None:
    if not caller.is_operator:
        raise ServiceError("forbidden", f"only operators {doing}", status=403)


@router.put("/reviewers/{user}", summary="Set the review steps a user may review (operators)")
def set_reviewer(
    user: str, body: ReviewerIn, state: State, caller: CurrentCaller
) -> dict[str, Any]:
    _operator(caller, "name reviewers")
    with state.db.write() as s:
        if s.scalar(select(m.User.id).where(m.User.name == user)) is None:
            raise svc.not_found("user", user)
        for row in s.scalars(select(t.ReviewerRow).where(t.ReviewerRow.user == user)):
            s.delete(row)
        s.flush()
        for step in sorted(set(body.steps)):
            s.add(t.ReviewerRow(user=user, step=step))
    return {"user": user, "steps": sorted(set(body.steps))}


@router.get("/prices", summary="Price lists")
def list_prices(state: State, caller: CurrentCaller) -> list[dict[str, Any]]:
    with state.db.read() as s:
        return [
            {
                "site": r.site,
                "gpu_type": r.gpu_type,
                "amount": r.amount,
                "currency": r.currency,
                "valid_from": r.valid_from.isoformat(),
                "valid_to": r.valid_to.isoformat() if r.valid_to else None,
            }
            for r in s.scalars(
                select(t.PriceRow).order_by(
                    t.PriceRow.site, t.PriceRow.gpu_type, t.PriceRow.valid_from
                )
            )
        ]


@router.post("/prices", status_code=201, summary="Add prices (operators; checked against the rest)")
def add_prices(body: PricesIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    _operator(caller, "set prices")
    with state.db.write() as s:
        currencies = dict(s.execute(select(m.Site.name, m.Site.currency)).all())
        old = [
            Price(r.site, r.gpu_type, Money.of(r.amount, r.currency), r.valid_from, r.valid_to)
            for r in s.scalars(select(t.PriceRow))
        ]
        try:
            new = [
                Price(p.site, p.gpu_type, Money.of(p.amount, p.currency), p.valid_from, p.valid_to)
                for p in body.prices
            ]
            PriceBook([*old, *new], currencies)  # validates: overlap, currency, sign, range
        except AccountingError as exc:
            raise svc.http_error(exc) from exc
        for p in body.prices:
            s.add(
                t.PriceRow(
                    site=p.site,
                    gpu_type=p.gpu_type,
                    valid_from=p.valid_from,
                    valid_to=p.valid_to,
                    amount=str(p.amount),
                    currency=p.currency,
                )
            )
    return {"added": len(body.prices)}


@router.post("/exchange-rates", status_code=201, summary="Add dated exchange rates (operators)")
def add_rates(body: RatesIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    _operator(caller, "set exchange rates")
    with state.db.write() as s:
        old = [
            ExchangeRate(r.day, r.currency, Decimal(r.per_usd))
            for r in s.scalars(select(t.ExchangeRateRow))
        ]
        try:
            ExchangeRates([*old, *(ExchangeRate(r.day, r.currency, r.per_usd) for r in body.rates)])
        except AccountingError as exc:
            raise svc.http_error(exc) from exc
        for r in body.rates:
            s.add(t.ExchangeRateRow(day=r.day, currency=r.currency, per_usd=str(r.per_usd)))
    return {"added": len(body.rates)}


@router.put("/discounts", summary="Replace the discount table (operators)")
def set_discounts(body: DiscountsIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    _operator(caller, "set discounts")
    try:
        DiscountTable(Discount(d.kind, d.rate, d.tier) for d in body.discounts)
    except AccountingError as exc:
        raise svc.http_error(exc) from exc
    with state.db.write() as s:
        for row in s.scalars(select(t.DiscountRow)):
            s.delete(row)
        s.flush()
        for d in body.discounts:
            s.add(t.DiscountRow(kind=d.kind.value, tier=d.tier or "", rate=str(d.rate)))
    return {"discounts": len(body.discounts)}


@router.put("/tenant-terms/{tenant}", summary="A tenant's discount tier and enforcement")
def set_terms(tenant: str, body: TermsIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    _operator(caller, "set tenant terms")
    with state.db.write() as s:
        if s.scalar(select(m.Tenant.id).where(m.Tenant.name == tenant)) is None:
            raise svc.not_found("tenant", tenant)
        row = s.get(t.TenantTermsRow, tenant)
        if row is None:
            s.add(t.TenantTermsRow(tenant=tenant, tier=body.tier or "", enforced=body.enforced))
        else:
            row.tier, row.enforced = body.tier or "", body.enforced
        svc.bump_terms(s)
    return {"tenant": tenant, "enforced": body.enforced, "tier": body.tier}


@router.put("/tax-rates", summary="Tax rate per currency (operators)")
def set_tax(body: TaxIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    _operator(caller, "set tax rates")
    for cur, r in body.rates.items():
        if not (Decimal(0) <= r < 1) or len(cur) != 3:
            raise ServiceError(
                "bad-tax-rate",
                f"tax rate {r} for {cur!r}: use a 3-letter "
                "currency and a fraction in [0, 1), e.g. 0.20",
                status=422,
            )
    with state.db.write() as s:
        row = s.get(t.AccountingSetting, svc.TAX_KEY)
        value = {k: str(v) for k, v in body.rates.items()}
        if row is None:
            s.add(t.AccountingSetting(key=svc.TAX_KEY, value=value))
        else:
            row.value = value
    return {"rates": {k: str(v) for k, v in body.rates.items()}}


# --- usage, statements, reports -------------------------------------------------------------------


@router.get(
    "/accounting/usage",
    summary="Your usage: per allocation balance, burn-down, projected exhaustion",
)
def usage(
    state: State,
    caller: CurrentCaller,
    project: str | None = None,
    period: str | None = None,
) -> dict[str, Any]:
    now = state.now()
    with state.db.read() as s:
        qualified = svc.project_ref(s, caller, project)[1] if project is not None else None
        policy = svc.load_policy(s)
        rows = svc.visible(s, caller, project=qualified)
        if not svc.sees_all(s, caller):
            rows = [r for r in rows if r.tenant == caller.tenant]
        where = []
        if qualified is not None:
            where.append(t.UsageRecordRow.project == qualified)
        if not caller.is_operator:
            where.append(t.UsageRecordRow.tenant == (caller.tenant or ""))
        if period is not None:
            lo, hi, _ = statements.month(period)
            where += [t.UsageRecordRow.end > lo, t.UsageRecordRow.start < hi]
        records = svc.load_records(s, where=where)
        jobs: dict[tuple[str, str, str | None], int] = {}
        for r in records:
            k = (r.job, r.project, r.allocation)
            jobs[k] = jobs.get(k, 0) + r.gpu_seconds
        out_allocs = []
        for row in rows:
            a = svc.from_doc(row.doc)
            view = views.allocation_view(s, caller, a, policy, now)
            view["burn_down"] = views.burn_down_rows(s, a, now)
            out_allocs.append(view)
        return {
            "allocations": out_allocs,
            "jobs": [
                {
                    "job": j,
                    "project": p,
                    "allocation": al,
                    "held_gpu_seconds": v,
                    "held_gpu_hours": views.hours(v),
                }
                for (j, p, al), v in sorted(jobs.items())
            ],
            "held_gpu_seconds": sum(jobs.values()),
        }


@router.get(
    "/statements/{tenant}",
    summary="A tenant's statement for a month (json, csv, html)",
    response_class=Response,
    responses=STATEMENT_TYPES,
)
def statement(
    tenant: str,
    state: State,
    caller: CurrentCaller,
    period: Annotated[str, Query(description="a month, e.g. 2026-11")],
    format: Literal["json", "csv", "html"] = "json",
    locale: Literal["en", "fr", "ar"] = "en",
) -> Response:
    with state.db.read() as s:
        found = s.scalar(select(m.Tenant.id).where(m.Tenant.name == tenant))
        if found is None or not caller.sees_tenant(found):
            raise svc.not_found("tenant", tenant)
        sts = statements.tenant_statements(s, tenant, period)
    if format == "csv":
        return Response("\n".join(statement_csv(x) for x in sts), media_type="text/csv")
    if format == "html":
        return Response(
            "\n".join(statement_html(x, locale) for x in sts), media_type="text/html; charset=utf-8"
        )
    body = statements.statement_json(sts, period)
    return Response(json.dumps(body), media_type="application/json")


@router.get(
    "/reports/operator",
    summary="Revenue and utilisation by site, GPU type, tenant kind",
    response_class=Response,
    responses=CSV_OR_JSON,
)
def report_operator(
    state: State,
    caller: CurrentCaller,
    period: str,
    format: Literal["json", "csv"] = "json",
) -> Response:
    _operator(caller, "read the operator report")
    with state.db.read() as s:
        lo, hi, last = statements.month(period)
        records = svc.load_records(
            s, where=[t.UsageRecordRow.end > lo, t.UsageRecordRow.start < hi]
        )
        try:
            lines = rate(
                records, (lo, hi), svc.rating_context(s, last), svc.windows_for(s, records)
            )
        except AccountingError as exc:
            raise svc.http_error(exc) from exc
        capacity: dict[tuple[str, str], int] = {}
        for site, gpu, count in s.execute(
            select(m.Site.name, m.GpuType.name, m.Node.gpu_count)
            .join(m.Node, m.Node.site_id == m.Site.id)
            .join(m.GpuType, m.Node.gpu_type_id == m.GpuType.id)
        ).all():
            capacity[(site, gpu)] = capacity.get((site, gpu), 0) + count
    rows = operator_report(lines, capacity, (lo, hi))
    if format == "csv":
        return Response(operator_report_csv(rows), media_type="text/csv")
    return Response(
        json.dumps(
            [
                {
                    "site": r.site,
                    "gpu_type": r.gpu_type,
                    "tenant_kind": str(r.tenant_kind),
                    "charged_gpu_hours": views.hours(r.charged_gpu_seconds),
                    "uncharged_gpu_hours": views.hours(r.uncharged_gpu_seconds),
                    "revenue": str(r.net.amount),
                    "currency": r.net.currency,
                    "revenue_usd": str(r.net_usd.amount) if r.net_usd else None,
                    "utilisation": str(r.utilisation) if r.utilisation is not None else None,
                }
                for r in rows
            ]
        ),
        media_type="application/json",
    )


@router.get(
    "/reports/funders",
    summary="A programme's GPU-hours awarded, used, lapsed, burn rate",
    response_class=Response,
    responses=CSV_OR_JSON,
)
def report_funders(
    state: State,
    caller: CurrentCaller,
    programme: str = "research",
    format: Literal["json", "csv"] = "json",
) -> Response:
    _operator(caller, "read the funders' report")
    now = int(state.now())
    with state.db.read() as s:
        policy = svc.load_policy(s)
        allocs = svc.load_allocations(s)
        records = svc.load_records(s, where=[t.UsageRecordRow.start < now])
        windows = svc.windows_for(s, records)
        used = svc.used_of(s, [a.id for a in allocs])
        allocs = [
            core.settle(a, now, used.get(a.id, {})) if a.state in core.LIVE else a for a in allocs
        ]
        rows = funders_report(allocs, policy, programme, records, windows, now)
    if format == "csv":
        return Response(funders_report_csv(rows), media_type="text/csv")
    return Response(
        json.dumps(
            [
                {
                    "allocation": r.allocation,
                    "project": r.project,
                    "tier": r.tier,
                    "state": str(r.state),
                    "awarded_gpu_hours": views.hours(r.awarded_gpu_seconds),
                    "released_gpu_hours": views.hours(r.released_gpu_seconds),
                    "used_gpu_hours": views.hours(r.used_gpu_seconds),
                    "lapsed_gpu_hours": views.hours(r.lapsed_gpu_seconds),
                    "remaining_gpu_hours": views.hours(r.remaining_gpu_seconds),
                    "overdraft_gpu_hours": views.hours(r.overdraft_gpu_seconds),
                    "burn_gpu_hours_per_day": views.hours(int(r.burn_gpu_seconds_per_day)),
                    "projected_exhaustion": r.projected_exhaustion.isoformat()
                    if r.projected_exhaustion
                    else None,
                    "expires": r.expires.isoformat(),
                }
                for r in rows
            ]
        ),
        media_type="application/json",
    )
