"""``/api/v1/prices``, ``exchange-rates``, ``discounts``, ``tenant-terms``, ``tax-rates``:
the data that usage is rated with.

Everyone signed in may read the prices; only operators change any of it. Each
route is one transaction. New rows are checked together with those already
stored (``PriceBook``, ``ExchangeRates``, ``DiscountTable`` of
``accounting.prices``) before anything is written, so a refusal
(``overlapping-price``, ``currency-mismatch`` ...) comes back as 4xx with the
core's code and leaves the tables as they were.

Discounts, tenants' tiers and tax rates are dated by month (``service.terms``): a
PUT sets them from its ``effective`` month on (the current month if left out), and
a month that has ended is closed (``closed-month``), so no statement already sent
ever changes. ``GET /discounts`` and ``GET /tax-rates`` list the versions.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import select

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.money import Money, check_currency
from masnaa.accounting.prices import (
    DEFAULT_DISCOUNTS,
    Discount,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
)
from masnaa.api.deps import CurrentCaller, State, forbid_unknown_query
from masnaa.api.errors import ERROR_RESPONSES
from masnaa.api.schemas import Strict
from masnaa.domain.tenancy import TenantKind
from masnaa.service import accounting as svc
from masnaa.service import terms
from masnaa.service.tenancy import ServiceError, require_operator
from masnaa.store import accounting as t
from masnaa.store import models as m

router = APIRouter(
    tags=["accounting"], responses=ERROR_RESPONSES, dependencies=[Depends(forbid_unknown_query)]
)


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
    effective: str | None = None
    """The month it takes effect (``2026-12``); the current month if left out."""


class TermsIn(Strict):
    enforced: bool
    tier: str | None = None
    effective: str | None = None
    """The month it takes effect (``2026-12``); the current month if left out."""


class TaxIn(Strict):
    rates: dict[str, Decimal]
    effective: str | None = None
    """The month it takes effect (``2026-12``); the current month if left out."""


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
    require_operator(caller, "set prices")
    with state.db.write() as s:
        svc.check_pools(s, [(p.site, p.gpu_type) for p in body.prices], "prices")
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
    require_operator(caller, "set exchange rates")
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


def _versions_json(rows: list[tuple[date, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"effective": terms.month_label(d), **value} for d, value in rows]


@router.get("/discounts", summary="The discount tables, month by month")
def list_discounts(state: State, caller: CurrentCaller) -> dict[str, Any]:
    with state.db.read() as s:
        rows = terms.versions(s, terms.DISCOUNTS)
    return {
        "versions": _versions_json(rows),
        # In force before the first version (and always, if there is none).
        "defaults": terms.discounts_value(DEFAULT_DISCOUNTS)["discounts"],
    }


@router.put("/discounts", summary="The discount table from a month on (operators)")
def set_discounts(body: DiscountsIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    require_operator(caller, "set discounts")
    month = terms.effective_month(body.effective, state.now())
    found = [Discount(d.kind, d.rate, d.tier) for d in body.discounts]
    for i, d in enumerate(found):  # name the row a refusal is about
        try:
            DiscountTable([d])
        except AccountingError as exc:
            raise ServiceError(exc.code, exc.message, status=422,
                               field=f"discounts[{i}].rate") from exc
    try:
        DiscountTable(found)
    except AccountingError as exc:
        raise svc.http_error(exc) from exc
    with state.db.write() as s:
        terms.put_version(s, terms.DISCOUNTS, month, terms.discounts_value(found))
    return {"discounts": len(found), "effective": terms.month_label(month)}


@router.put("/tenant-terms/{tenant}", summary="A tenant's discount tier and enforcement")
def set_terms(tenant: str, body: TermsIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    require_operator(caller, "set tenant terms")
    month = terms.effective_month(body.effective, state.now())
    with state.db.write() as s:
        if s.scalar(select(m.Tenant.id).where(m.Tenant.name == tenant)) is None:
            raise svc.not_found("tenant", tenant)
        row = s.get(t.TenantTermsRow, tenant)
        if row is None:
            s.add(t.TenantTermsRow(tenant=tenant, enforced=body.enforced))
        else:
            row.enforced = body.enforced
        # Enforcement applies at once (it decides who may run); the tier is dated,
        # as it sets the discount statements read. Left out, the tier stays as it is.
        if "tier" in body.model_fields_set:
            terms.put_version(s, terms.TIER + tenant, month, {"tier": body.tier})
        svc.bump_terms(s)
        s.flush()
        tier = terms.tier_in(s, tenant, month)
    return {
        "tenant": tenant,
        "enforced": body.enforced,
        "tier": tier,
        "effective": terms.month_label(month),
    }


@router.get("/tax-rates", summary="Tax rates per currency, month by month")
def list_tax(state: State, caller: CurrentCaller) -> dict[str, Any]:
    with state.db.read() as s:
        return {"versions": _versions_json(terms.versions(s, terms.TAX_RATES))}


@router.put("/tax-rates", summary="Tax rate per currency from a month on (operators)")
def set_tax(body: TaxIn, state: State, caller: CurrentCaller) -> dict[str, Any]:
    require_operator(caller, "set tax rates")
    for cur, r in body.rates.items():
        try:
            # An ISO 4217 code (what prices and rates accept), not only a site's currency:
            # an operator may set a country's tax before its site is declared.
            check_currency(cur)
        except AccountingError as exc:
            raise ServiceError(exc.code, exc.message, status=422, field=f"rates.{cur}") from exc
        if not (Decimal(0) <= r < 1):
            raise ServiceError(
                "bad-tax-rate",
                f"tax rate {r} for {cur}: use a fraction in [0, 1), e.g. 0.20",
                status=422,
                field=f"rates.{cur}",
            )
    month = terms.effective_month(body.effective, state.now())
    rates = {k: str(v) for k, v in body.rates.items()}
    with state.db.write() as s:
        terms.put_version(s, terms.TAX_RATES, month, {"rates": rates})
    return {"rates": rates, "effective": terms.month_label(month)}
