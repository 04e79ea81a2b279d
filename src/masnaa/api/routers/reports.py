"""``/api/v1/accounting/usage``, ``statements/{tenant}``, ``reports/operator``,
``reports/funders``: what was used, and what it cost.

Charges are not stored: each answer rates the usage records of its period
when asked (``accounting.rating``), in one read transaction. Usage is scoped
like allocations (``service.accounting``); a statement is a tenant's month
(``service.statements``, shared with the portal), and a tenant the caller
does not see is a 404; the two reports are for operators. Statements come as
json, csv or html, the reports as json or csv. GPU-time is in GPU-hours as
decimal strings, and usage also gives whole GPU-seconds (``*_gpu_seconds``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select

from masnaa.accounting import allocations as core
from masnaa.accounting.allocation import LIVE
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
from masnaa.service import accounting as svc
from masnaa.service import allocation_views as views
from masnaa.service import statements
from masnaa.service.tenancy import require_operator
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
    require_operator(caller, "read the operator report")
    with state.db.read() as s:
        rated = statements.rated_month(s, period)
        capacity: dict[tuple[str, str], int] = {}
        for site, gpu, count in s.execute(
            select(m.Site.name, m.GpuType.name, m.Node.gpu_count)
            .join(m.Node, m.Node.site_id == m.Site.id)
            .join(m.GpuType, m.Node.gpu_type_id == m.GpuType.id)
        ).all():
            capacity[(site, gpu)] = capacity.get((site, gpu), 0) + count
    rows = operator_report(rated.lines, capacity, rated.span, rated.missing_rates)
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
                    "missing_exchange_rate": statements.missing_rate_json(r.missing_rate)
                    if r.missing_rate
                    else None,
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
    require_operator(caller, "read the funders' report")
    now = int(state.now())
    with state.db.read() as s:
        policy = svc.load_policy(s)
        allocs = svc.load_allocations(s)
        records = svc.load_records(s, where=[t.UsageRecordRow.start < now])
        windows = svc.windows_for(s, records)
        used = svc.used_of(s, [a.id for a in allocs])
        allocs = [core.settle(a, now, used.get(a.id, {})) if a.state in LIVE else a for a in allocs]
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
