"""Operators' proof pages: the audit log with its chain check, and the regulator's report.

Only operators see them (anyone else gets the not-found page, as for every
operator page). Everything comes from ``service.audit`` and
``service.residency`` — the same chain check (``verify_chain``), JSON-lines
export (``export_jsonl``) and report (``report``, rendered by
``audit.report.render_csv``/``render_json``) that ``/api/v1/audit/*``,
``/api/v1/regulator-report`` and ``masnaa audit`` give — and from
``service.history.audit_page`` for paging. The portal builds no
record and no report row of its own.

The report's period is chosen as two UTC days, both included: ``from`` at
00:00 UTC to the end of ``to`` (the service's period is half-open,
``[from, to + 1 day)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from masnaa.audit.chain import AuditAction
from masnaa.audit.report import RegulatorReport, render_csv, render_json
from masnaa.portal.labels import N_
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import history, tenancy
from masnaa.service import residency as svc
from masnaa.service.audit import export_jsonl, verify_chain
from masnaa.service.tenancy import ServiceError

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

REPORT_ROWS_SHOWN = 200
"""The page shows the first rows; the downloads hold every row."""

ACTIONS = {
    AuditAction.PLACEMENT.value: N_("placement"),
    AuditAction.REFUSAL.value: N_("refusal"),
    AuditAction.DATA_REGISTRATION.value: N_("data registered"),
    AuditAction.GROUND_GRANT.value: N_("transfer ground granted"),
    AuditAction.DOWNLOAD.value: N_("download"),
    AuditAction.POLICY_CHANGE.value: N_("policy change"),
    AuditAction.SITE_STATE.value: N_("site state changed"),
    AuditAction.NODE_STATE.value: N_("node state changed"),
}


@router.get("/ops/audit")
def audit_log(
    page: PageDep,
    action: Annotated[str, Query(max_length=32)] = "",
    site: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    page.operator()
    action = action if action in ACTIONS else ""
    with page.state.db.read() as read:
        sites = [s.name for s in tenancy.list_sites(read)]
        site = site if site in sites else ""
        found = history.audit_page(read, action=action or None, site=site or None,
                                   before=before)
        check = verify_chain(read)
    return page.render(
        "audit.html", records=found.records, next_before=found.next_before, total=found.total,
        check=check, actions=ACTIONS, sites=sites, action=action, site=site,
        utc_seconds=lambda at: at.timestamp(),
    )


@router.get("/ops/audit.jsonl")
def audit_export(page: PageDep) -> Response:
    page.operator()
    with page.state.db.read() as read:
        body = export_jsonl(read)
    return Response(
        body, media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="masnaa-audit.jsonl"',
                 "Cache-Control": "no-store"},
    )


# --- the regulator's report ------------------------------------------------------------------


@dataclass
class ReportForm:
    values: dict[str, str]
    errors: dict[str, str]
    start: datetime | None = None
    end: datetime | None = None

    @property
    def ready(self) -> bool:
        return not self.errors and self.start is not None and self.end is not None


def _day(raw: str) -> date | None:
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        return None
    # The window ends the day after the last one: the calendar's last day has none.
    return day if day < date.max else None


def _read_form(page: Page, countries: list[str], country: str, since: str, until: str
               ) -> ReportForm:
    today = datetime.fromtimestamp(page.now, UTC).date()
    values = {
        "country": country.strip().upper(),
        "since": since.strip() or today.replace(day=1).isoformat(),
        "until": until.strip() or today.isoformat(),
    }
    form = ReportForm(values, {})
    if not country:
        return form  # the first visit: the form only, with the defaults
    if values["country"] not in countries:
        form.errors["country"] = page._("Choose one of: %(choices)s.", choices=", ".join(countries))
    start, end = _day(values["since"]), _day(values["until"])
    if start is None:
        form.errors["since"] = page._("Give a day as YYYY-MM-DD, for example 2026-11-01.")
    if end is None:
        form.errors["until"] = page._("Give a day as YYYY-MM-DD, for example 2026-11-01.")
    elif start is not None and end < start:
        form.errors["until"] = page._("The last day comes on or after the first day.")
    if start is not None and end is not None and not form.errors:
        form.start = datetime(start.year, start.month, start.day, tzinfo=UTC)
        form.end = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return form


def _report(page: Page, country: str, since: str, until: str
            ) -> tuple[ReportForm, RegulatorReport | None, str | None, list[str]]:
    page.operator()
    countries = sorted(svc.current_rules().countries)
    form = _read_form(page, countries, country, since, until)
    if not form.ready:
        return form, None, None, countries
    assert form.start is not None and form.end is not None
    try:
        with page.state.db.read() as read:
            found = svc.report(read, form.values["country"], form.start, form.end)
    except ServiceError as exc:
        if exc.code != "audit-broken":
            raise
        return form, None, exc.message, countries
    return form, found, None, countries


Country = Annotated[str, Query(max_length=8)]
Day = Annotated[str, Query(max_length=16)]


@router.get("/ops/report")
def report_page(page: PageDep, country: Country = "", since: Day = "", until: Day = ""
                ) -> Response:
    form, found, broken, countries = _report(page, country, since, until)
    status = 422 if form.errors else 409 if broken else 200
    return page.render(
        "audit_report.html", status=status, form=form, report=found, broken=broken,
        countries=countries, summary=found.summary() if found else None,
        rows=found.rows[:REPORT_ROWS_SHOWN] if found else (), shown=REPORT_ROWS_SHOWN,
        actions=ACTIONS,
    )


def _download(page: Page, country: str, since: str, until: str, fmt: str) -> Response:
    form, found, broken, countries = _report(page, country, since, until)
    if found is None:
        status = 422 if form.errors or not country else 409
        return page.render(
            "audit_report.html", status=status, form=form, report=None, broken=broken,
            countries=countries, summary=None, rows=(), shown=REPORT_ROWS_SHOWN,
            actions=ACTIONS,
        )
    name = f"masnaa-report-{found.country}-{form.values['since']}-{form.values['until']}.{fmt}"
    body, media = (
        (render_csv(found), "text/csv; charset=utf-8") if fmt == "csv"
        else (render_json(found), "application/json")
    )
    return Response(
        body, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )


@router.get("/ops/report.csv")
def report_csv(page: PageDep, country: Country = "", since: Day = "", until: Day = ""
               ) -> Response:
    return _download(page, country, since, until, "csv")


@router.get("/ops/report.json")
def report_json(page: PageDep, country: Country = "", since: Day = "", until: Day = ""
                ) -> Response:
    return _download(page, country, since, until, "json")
