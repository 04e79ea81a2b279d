"""Researchers' and start-ups' allocation pages, and statements with money.

- ``/allocations``: the allocations of my tenant (operators: all), each with
  its balance in GPU-hours, the burn rate and the projected exhaustion date;
  for paid allocations (the ``commercial`` programme, e.g. the ``purchase``
  tier) also what was charged so far and what the balance is worth at the
  current list price, in the site's currency, formatted for the locale.
- ``/allocations/{id}``: one allocation, its pools, the burn-down chart
  (server-side SVG, ``charts_alloc``), tranches, history; if it was
  rejected, the step and the reason the reviewer gave (never the notes of
  approving reviews: ``service.allocation_views``).
- ``/allocations/new``: the request form. ``?supplement_of=ID`` asks for a
  supplement to a live allocation the user is a member of
  (``service.supplements``): GPU-time and a justification, reviewed like a
  request and, once an operator grants it, added to that allocation.
  ``?renewal_of=ID`` (an expired one) files a new request for the same
  project, linked to the old one. Operators may also grant a supplement
  directly (``/review/{id}``).
- ``/statements`` and ``/statements.csv``: a tenant's statement for a month,
  rated from the usage records (the API's ``/statements/{tenant}``).

Everything is read and written through ``service.accounting``,
``service.supplements`` and the views the API returns too
(``service.allocation_views``, ``service.statements``) with the signed-in caller:
another tenant's allocation or statement is the not-found page, as in the API.
Form values are parsed here (a web form sends text); every rule about
amounts, tiers, durations and caps is the core's, and its refusal code is
shown as a sentence in the user's language next to the field it concerns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from babel.dates import format_date
from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from masnaa.accounting.allocation import Allocation, AllocationPolicy, Amount
from masnaa.accounting.balance import burn_down
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.money import Money
from masnaa.accounting.rating import rate_in_parts
from masnaa.accounting.statements import Statement, statement_csv
from masnaa.portal import session
from masnaa.portal.charts_alloc import burn_down_chart
from masnaa.portal.i18n import Lang
from masnaa.portal.labels import N_
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import accounting as svc
from masnaa.service import allocation_views, job_catalog, supplements, tenancy, terms
from masnaa.service import statements as statements_svc
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import accounting as t
from masnaa.store import models as m

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

HOUR = Decimal(3600)
PAID_PROGRAMMES = frozenset({"commercial"})
"""Programmes whose GPU-time is bought: their pages show money too."""

STATES = {
    "requested": N_("requested"),
    "in-review": N_("in review"),
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    "awarded": N_("awarded"),
    "active": N_("active"),
    "exhausted": N_("exhausted"),
    "expired": N_("expired"),
    "closed": N_("closed"),
    "granted": N_("granted"),
}

FIELDS = (
    "project", "tier", "site", "gpu_type", "hours", "credits", "start", "duration_days",
    "justification", "supplement_of", "renewal_of",
)
FIELD_LABELS = {
    "project": N_("Project"),
    "tier": N_("Tier"),
    "site": N_("Site"),
    "gpu_type": N_("GPU type"),
    "hours": N_("GPU-hours"),
    "credits": N_("Credits"),
    "start": N_("Start date"),
    "duration_days": N_("Duration (days)"),
    "justification": N_("Justification"),
}

ERRORS = {
    "not-a-number": N_("Enter a number, 0 or more, for example 250."),
    "not-a-whole-number": N_("Enter a whole number of days, for example 90."),
    "negative-hours": N_("Amounts cannot be negative: enter 0 or more."),
    "bad-date": N_("Enter a date as YYYY-MM-DD, for example 2026-12-01."),
    "bad-duration": N_("Enter a number of days between 1 and %(most)s for this tier."),
    "start-in-past": N_("Start on %(earliest)s or later: time that has passed cannot be used."),
    "no-justification": N_("Say what the GPU-time is for: the reviewers read this."),
    "empty-request": N_("Ask for GPU-hours in a pool, or for credits."),
    "over-tier-limit": N_(
        "This is above the tier's cap of %(cap)s; ask for less or choose a larger tier."
    ),
    "unknown-tier": N_("Choose one of the tiers in the list."),
    "pool-incomplete": N_("Choose both a site and a GPU type for these hours."),
    "unknown-project": N_("Choose one of your projects."),
    "too-long": N_("This is too long."),
    "too-many-supplements": N_("This allocation had all the supplements its tier allows."),
    "supplement-too-large": N_(
        "Supplements together may not exceed the tier's share of the award."
    ),
    "not-allowed": N_("Only members of this allocation may ask for a supplement to it."),
    "bad-state": N_(
        "A supplement can be asked for only while the allocation is awarded, active or "
        "exhausted; after it expires, request a renewal."
    ),
}
"""Refusal codes (the core's and the form's own) → the sentence shown next to the field."""

FIELD_OF_CODE = {
    "negative-hours": "hours",
    "empty-request": "hours",
    "bad-duration": "duration_days",
    "no-justification": "justification",
    "unknown-tier": "tier",
    "over-tier-limit": "hours",
    "too-many-supplements": "hours",
    "supplement-too-large": "hours",
    "not-allowed": "justification",
    "bad-state": "justification",
}


def say_error(lang: Lang, code: str, **values: object) -> str:
    return lang.gettext(ERRORS[code], **values)


# --- reading a form's numbers ------------------------------------------------------------


def decimal_of(raw: str) -> Decimal | None:
    """A number typed by a person (``1 234,5``, ``1.234,5``, ``1,234.5``); ``None`` if
    unreadable. An empty field is 0."""
    text = raw.strip().replace("\u202f", "").replace("\xa0", "").replace(" ", "")
    if not text:
        return Decimal(0)
    if "," in text and ("." not in text or text.rfind(",") > text.rfind(".")):
        # A decimal comma (fr: 1.234,5 or 12,5): dots, if any, group thousands.
        text = text.replace(".", "").replace(",", ".")
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@dataclass
class RequestForm:
    values: dict[str, str]
    """What the user typed, shown again on an error (nothing is lost)."""
    errors: dict[str, str] = field(default_factory=dict)
    amount: Amount | None = None
    start: date | None = None
    duration_days: int = 0


def parse_request(form: dict[str, str], lang: Lang, today: date) -> RequestForm:
    """Read the request form's text fields; rules about amounts are the core's."""
    values = {k: str(form.get(k, "")).strip() for k in FIELDS}
    values["justification"] = str(form.get("justification", ""))
    out = RequestForm(values)
    errors = out.errors
    hours = decimal_of(values["hours"])
    credits = decimal_of(values["credits"])
    if hours is None:
        errors["hours"] = say_error(lang, "not-a-number")
    if credits is None:
        errors["credits"] = say_error(lang, "not-a-number")
    if hours and not (values["site"] and values["gpu_type"]):
        errors["site" if not values["site"] else "gpu_type"] = say_error(lang, "pool-incomplete")
    try:
        out.start = date.fromisoformat(values["start"]) if values["start"] else today
    except ValueError:
        errors["start"] = say_error(lang, "bad-date")
    try:
        out.duration_days = int(values["duration_days"] or "0")
    except ValueError:
        errors["duration_days"] = say_error(lang, "not-a-whole-number")
    if len(values["justification"]) > 4000:
        errors["justification"] = say_error(lang, "too-long")
    if errors:
        return out
    assert hours is not None and credits is not None
    pools = [(values["site"], values["gpu_type"], hours)] if hours else []
    out.amount = svc.amount_of(pools, credits)
    return out


def explain(exc: ServiceError, lang: Lang, policy: AllocationPolicy, tier: str) -> tuple[str, str]:
    """(field, sentence in ``lang``) for a refusal of the service."""
    found = policy.tiers.get(tier)
    if exc.code == "over-tier-limit" and found is not None:
        if found.max_gpu_hours is not None and "GPU-hours" in exc.message:
            return "hours", say_error(lang, "over-tier-limit", cap=lang.number(found.max_gpu_hours))
        cap = lang.number(found.max_credits or 0)
        return "credits", say_error(lang, "over-tier-limit", cap=cap)
    if exc.code == "bad-duration" and found is not None:
        return "duration_days", say_error(
            lang, "bad-duration", most=lang.number(found.max_duration_days)
        )
    if exc.code == "start-in-past":
        earliest = exc.message.rsplit("start on ", 1)[-1].split(" ", 1)[0]
        return "start", say_error(lang, "start-in-past", earliest=earliest)
    if "project" in exc.code:
        return "project", say_error(lang, "unknown-project")
    if exc.code in FIELD_OF_CODE:
        return FIELD_OF_CODE[exc.code], say_error(lang, exc.code)
    return "justification", exc.message


# --- views -------------------------------------------------------------------------------


def today_of(now: float) -> date:
    return datetime.fromtimestamp(now, tz=UTC).date()


def _paid(policy: AllocationPolicy, tier: str) -> bool:
    found = policy.tiers.get(tier)
    return found is not None and found.programme in PAID_PROGRAMMES


def _money(s: Session, a: Allocation, view: dict[str, Any], now: float) -> dict[str, Any]:
    """Charged so far, and the balance at the current list price (per currency)."""
    n = int(now)
    records = svc.load_records(s, where=[t.UsageRecordRow.allocation_id == a.id])
    # Rated in parts where discounts or tiers changed: each month keeps its own terms.
    parts = terms.rating_parts(s, a.starts_at, max(n, a.starts_at), today_of(now))
    ctx = parts[-1][1]
    out: dict[str, Any] = {"charged": [], "worth": [], "unpriced": False}
    try:
        lines = rate_in_parts(records, parts, svc.windows_for(s, records))
    except AccountingError:
        out["unpriced"] = True
        lines = []
    charged: dict[str, Money] = {}
    for li in lines:
        charged[li.currency] = charged[li.currency] + li.net if li.currency in charged else li.net
    out["charged"] = [charged[c] for c in sorted(charged)]
    worth: dict[str, Money] = {}
    for pool in view["remaining"]:
        try:
            price = ctx.prices.price_at(pool["site"], pool["gpu_type"], n).per_gpu_hour
        except AccountingError:
            out["unpriced"] = True
            continue
        value = (price * (Decimal(max(0, pool["gpu_seconds"])) / HOUR)).rounded()
        cur = value.currency
        worth[cur] = worth[cur] + value if cur in worth else value
    out["worth"] = [worth[c] for c in sorted(worth)]
    return out


def allocation_view(
    s: Session, caller: Caller, a: Allocation, policy: AllocationPolicy, now: float
) -> dict[str, Any]:
    """The API's view of ``a`` for ``caller`` (settled at now, with its balance)."""
    view = allocation_views.allocation_view(s, caller, a, policy, now)
    view["paid"] = _paid(policy, a.tier)
    view["money"] = _money(s, a, view, now) if view["paid"] else None
    view["requested_at"] = a.history[0].at if a.history else None
    return view


def _chart(page: Page, s: Session, a: Allocation, view: dict[str, Any]) -> Markup:
    records = svc.load_records(s, where=[t.UsageRecordRow.allocation_id == a.id])
    points = burn_down(a, records, svc.windows_for(s, records), int(page.now))
    projected = view["projected_exhaustion"]
    until = date.fromisoformat(projected) if projected else a.expires
    lang = page.lang
    return burn_down_chart(
        points,
        title=page._("GPU-hours left in %(id)s, day by day", id=a.id),
        remaining_label=page._("GPU-hours left"),
        projected_label=page._("Projected at the recent burn rate"),
        projected_until=until,
        burn_hours_per_day=float(view["burn_gpu_hours_per_day"]),
        # Short day labels: the axis is read left to right in every language.
        fmt_day=lambda x: format_date(today_of(x), "d MMM", locale=lang.code),
        fmt_hours=lambda y: lang.number(y),
    )


@router.get("/allocations")
def my_allocations(page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as s:
        policy = svc.load_policy(s)
        rows = svc.visible(s, caller)
        if not caller.is_operator:
            rows = [r for r in rows if r.tenant == caller.tenant]
        views = [allocation_view(s, caller, svc.from_doc(r.doc), policy, page.now) for r in rows]
    done = ("expired", "closed", "rejected", "granted")
    views.sort(key=lambda v: (v["state"] in done, v["id"]))
    return page.render("alloc_list.html", allocations=views, states=STATES)


def _form_choices(s: Session, caller: Caller, policy: AllocationPolicy) -> dict[str, Any]:
    catalog = job_catalog.catalog(s)
    tenant_names = {x.id: x.name for x in tenancy.list_tenants(s, caller)}
    return {
        "projects": [
            f"{tenant_names.get(p.tenant_id, '?')}/{p.name}" if caller.is_operator else p.name
            for p in tenancy.list_projects(s, caller)
        ],
        "tiers": [policy.tiers[name] for name in policy.tiers],
        "sites": sorted(catalog.sites),
        "gpu_types": list(catalog.gpu_types),
    }


def _render_form(
    page: Page, s: Session, caller: Caller, form: RequestForm, status: int = 200
) -> Response:
    policy = svc.load_policy(s)
    base, mode = None, ""
    for mode in ("supplement_of", "renewal_of"):
        if form.values.get(mode):
            _, base = svc.get(s, caller, form.values[mode])
            break
    return page.render(
        "alloc_new.html", status=status, values=form.values, errors=form.errors,
        choices=_form_choices(s, caller, policy), base=base, labels_alloc=FIELD_LABELS,
        mode=mode if base is not None else "",
    )


@router.get("/allocations/new")
def new_allocation(
    page: PageDep,
    supplement_of: Annotated[str, Query(max_length=64)] = "",
    renewal_of: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    caller = page.signed_in()
    values = dict.fromkeys(FIELDS, "")
    values.update(start=today_of(page.now).isoformat(), duration_days="90", credits="0")
    with page.state.db.read() as s:
        if supplement_of or renewal_of:
            _, base = svc.get(s, caller, supplement_of or renewal_of)
            project = base.project.partition("/")[2]
            values.update(
                supplement_of=base.id if supplement_of else "",
                renewal_of="" if supplement_of else base.id, tier=base.tier,
                project=base.project if caller.is_operator else project,
            )
            if base.requested.gpu_hours:
                (site, gpu), _ = sorted(base.requested.gpu_hours.items())[0]
                values.update(site=site, gpu_type=gpu)
        else:
            # Start-ups and enterprises buy GPU-time; others ask for a grant.
            tenant = s.get(m.Tenant, caller.tenant_id) if caller.tenant_id else None
            paying = tenant is not None and tenant.kind in svc.POSTPAID_KINDS
            values["tier"] = "purchase" if paying else "innovator"
        return _render_form(page, s, caller, RequestForm(values))


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/allocations/new")
async def request_allocation(request: Request, page: PageDep) -> Response:
    caller = page.signed_in()
    fields = await form_fields(request)
    session.check_csrf(request, fields.get(session.CSRF_FIELD))

    def run() -> Response:
        form = parse_request(fields, page.lang, today_of(page.now))
        values = form.values
        if not form.errors:
            assert form.amount is not None and form.start is not None
            try:
                with page.state.db.write() as s:
                    project = values["project"]
                    if values["supplement_of"]:
                        a = supplements.request_supplement(
                            s, caller, values["supplement_of"], amount=form.amount,
                            justification=values["justification"], now=page.now,
                        )
                        return page.redirect(f"/allocations/{a.id}?done=requested")
                    if values["renewal_of"]:
                        _, base = svc.get(s, caller, values["renewal_of"])
                        project = base.project
                    a = svc.request_allocation(
                        s, caller, project=project, tier=values["tier"], amount=form.amount,
                        start=form.start, duration_days=form.duration_days,
                        justification=values["justification"],
                        renewal_of=values["renewal_of"] or None, now=page.now,
                    )
                    return page.redirect(f"/allocations/{a.id}?done=requested")
            except ServiceError as exc:
                if exc.status == 404 and "project" not in exc.code:
                    raise
                with page.state.db.read() as s:
                    name, sentence = explain(exc, page.lang, svc.load_policy(s), values["tier"])
                form.errors[name] = sentence
        with page.state.db.read() as s:
            return _render_form(page, s, caller, form, status=422)

    return await run_in_threadpool(run)


@router.get("/allocations/{alloc_id}")
def allocation_detail(
    alloc_id: str, page: PageDep, done: Annotated[str, Query(max_length=16)] = ""
) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as s:
        _, a = svc.get(s, caller, alloc_id)
        policy = svc.load_policy(s)
        view = allocation_view(s, caller, a, policy, page.now)
        chart = _chart(page, s, a, view)
        linked = [
            r.id for r in svc.visible(s, caller, project=a.project)
            if a.id in (r.doc.get("renewal_of"), r.doc.get("supplement_of"))
        ]
        is_member = caller.user in a.members
    return page.render(
        "alloc_detail.html", a=view, chart=chart, states=STATES, linked=linked,
        may_ask_more=is_member and view["state"] in ("awarded", "active", "exhausted"),
        may_renew=is_member and view["state"] == "expired" and a.supplement_of is None,
        notice=page._("Your request is filed; reviewers see it in their queue.")
        if done == "requested" else "",
    )


# --- statements ----------------------------------------------------------------------------


STATEMENT_ERRORS = {
    "no-price": N_(
        "Some GPU-time in this month has no price for its site and GPU type, so it cannot "
        "be rated yet; an operator must set the price."
    ),
    "no-tax-rate": N_(
        "No tax rate is set for this currency yet; an operator must set one (0 if no tax "
        "applies)."
    ),
}
"""Why a month cannot be rated (the core's codes) → what the tenant reads."""


@dataclass(frozen=True, slots=True)
class StatementPage:
    tenant: str
    period: str
    statements: list[Statement]
    error: str


def _statement(page: Page, tenant: str, period: str) -> StatementPage:
    caller = page.signed_in()
    with page.state.db.read() as s:
        found = s.scalar(select(m.Tenant.id).where(m.Tenant.name == tenant))
        if found is None or not caller.sees_tenant(found):
            raise svc.not_found("tenant", tenant)
        try:
            sts = statements_svc.tenant_statements(s, tenant, period)
        except (AccountingError, ServiceError) as exc:
            if exc.code == "bad-period":
                raise
            known = STATEMENT_ERRORS.get(exc.code)
            return StatementPage(tenant, period, [], page._(known) if known else str(exc))
    return StatementPage(tenant, period, sts, "")


def _tenant_and_period(page: Page, tenant: str, period: str) -> tuple[str, str, list[str]]:
    caller = page.signed_in()
    with page.state.db.read() as s:
        tenants = [x.name for x in tenancy.list_tenants(s, caller)]
    chosen = tenant or (caller.tenant or (tenants[0] if tenants else ""))
    return chosen, period or today_of(page.now).strftime("%Y-%m"), tenants


@router.get("/statements")
def statements(
    page: PageDep,
    tenant: Annotated[str, Query(max_length=64)] = "",
    period: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    chosen, month, tenants = _tenant_and_period(page, tenant, period)
    try:
        found = _statement(page, chosen, month)
    except ServiceError as exc:
        if exc.code != "bad-period":
            raise
        return page.render(
            "statement.html", status=422, tenant=chosen, period=month, tenants=tenants,
            month_name=month, statements=[], error="",
            period_error=page._("Enter a month as YYYY-MM, for example 2026-11."),
        )
    first = date.fromisoformat(f"{month}-01")
    return page.render(
        "statement.html", tenant=chosen, period=month, tenants=tenants,
        month_name=format_date(first, "MMMM y", locale=page.lang.code),
        statements=found.statements, error=found.error, period_error="",
    )


@router.get("/statements.csv")
def statements_csv(
    page: PageDep,
    tenant: Annotated[str, Query(max_length=64)] = "",
    period: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    chosen, month, _ = _tenant_and_period(page, tenant, period)
    found = _statement(page, chosen, month)
    if found.error:
        return Response(found.error + "\n", status_code=422, media_type="text/plain")
    return Response(
        "\n".join(statement_csv(x) for x in found.statements),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="masnaa-statement-{chosen}-{month}.csv"',
            "Cache-Control": "no-store",
        },
    )
