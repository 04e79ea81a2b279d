"""Researchers' data pages: my datasets and artifacts, one of them with its lineage, and the
form that registers a dataset.

Every read and write goes through ``service.residency`` with the signed-in
caller, exactly as ``/api/v1/datasets`` does: another tenant's dataset or
artifact is the not-found page, and an operator sees every tenant's (and
names the tenant a new dataset belongs to). Registering writes its audit
records in the same transaction (the service does it).

The form's errors are shown next to their fields in the user's language: the
service's ``DatasetIn`` model and ``register_dataset`` decide what is valid;
the portal only turns their field and code into a translated sentence, and
shows every typed value again.

Terms (docs/residency.md): a dataset's **home site**, **jurisdiction**
(the country whose law governs it) and **class**; an **artifact** is a
job's output, carrying every class and jurisdiction of what the job read
(its **lineage**: ``derived_from`` and the job).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from masnaa.policy import GroundKind
from masnaa.portal import session
from masnaa.portal.labels import N_
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import residency as svc
from masnaa.service import tenancy
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store.residency import DataKind, DatasetRow, TransferGroundRow

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

PAGE_SIZE = 100
"""Rows per page of the list (the service returns them all; the page shows a slice)."""
FIELDS = (
    "name", "home_site", "jurisdiction", "data_class", "owner", "uri", "tenant",
    "ground_condition", "ground_kind", "ground_reference", "ground_expires",
)
GROUND_FIELDS = {"condition": "ground_condition", "kind": "ground_kind",
                 "reference": "ground_reference", "expires": "ground_expires"}
"""The form offers one optional transfer ground (the service takes a list): its fields."""

FIELD_LABELS = {
    "name": N_("Name"),
    "home_site": N_("Home site"),
    "jurisdiction": N_("Jurisdiction"),
    "data_class": N_("Class"),
    "owner": N_("Owner"),
    "uri": N_("Location (URI)"),
    "tenant": N_("Tenant"),
    "ground_condition": N_("Condition it satisfies"),
    "ground_kind": N_("Kind of ground"),
    "ground_reference": N_("Reference"),
    "ground_expires": N_("Expires on (day, UTC)"),
}

GROUND_KINDS = {
    GroundKind.CONSENT.value: N_("consent"),
    GroundKind.AUTHORISATION.value: N_("regulator's authorisation"),
    GroundKind.CONTRACT.value: N_("contract"),
    GroundKind.SAFEGUARDS.value: N_("safeguards"),
    GroundKind.NECESSITY.value: N_("necessity"),
    GroundKind.ADEQUACY.value: N_("adequacy"),
}

DATA_ERRORS = {
    "required": N_("Fill in this field."),
    "too-long": N_("This is too long."),
    "country": N_("Give a two-letter country code, for example MA."),
    "choose": N_("Choose one of: %(choices)s."),
    "tenant-required": N_("Choose the tenant the data belongs to."),
    "invalid": N_("This value is not accepted: %(why)s"),
    "day": N_("Give a day as YYYY-MM-DD, for example 2026-11-01."),
}

KIND_LABELS = {
    DataKind.DATASET: N_("dataset"),
    DataKind.ARTIFACT: N_("artifact"),
}


@dataclass(frozen=True, slots=True)
class DataView:
    """A dataset or artifact as the pages show it."""

    row: DatasetRow
    tenant: str
    strictest: str
    known_class: bool


def _views(read: Session, caller: Caller, rows: list[DatasetRow]) -> list[DataView]:
    rules = svc.current_rules()
    tenants = {t.id: t.name for t in tenancy.list_tenants(read, caller)} if rows else {}
    return [
        DataView(
            r, tenants.get(r.tenant_id, "?"), rules.strictest(frozenset(r.classes)),
            all(c in rules.known_classes for c in r.classes),
        )
        for r in rows
    ]


@router.get("/data")
def data_list(
    page: PageDep,
    kind: Annotated[str, Query(max_length=16)] = "",
    skip: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    caller = page.signed_in()
    wanted = kind if kind in KIND_LABELS else None
    with page.state.db.read() as read:
        rows = svc.list_data(read, caller, wanted)
        rows.reverse()  # newest first
        shown = rows[skip : skip + PAGE_SIZE]
        views = _views(read, caller, shown)
    more = skip + PAGE_SIZE if len(rows) > skip + PAGE_SIZE else None
    return page.render(
        "data.html", rows=views, kind=wanted or "", kinds=KIND_LABELS, next_skip=more,
    )


# --- register -----------------------------------------------------------------------------


def _choices(read: Session, caller: Caller) -> dict[str, list[str]]:
    rules = svc.current_rules()
    return {
        "sites": [s.name for s in tenancy.list_sites(read)],
        "countries": sorted(rules.countries),
        "classes": sorted(rules.known_classes),
        "tenants": [t.name for t in tenancy.list_tenants(read, caller)]
        if caller.is_operator else [],
        "conditions": sorted({c for rule in rules.countries.values()
                              for group in rule.conditions for c in group}),
    }


def _site_countries(read: Session) -> dict[str, str]:
    return {s.name: s.country for s in tenancy.list_sites(read)}


def _blank(choices: dict[str, list[str]]) -> dict[str, str]:
    values = dict.fromkeys(FIELDS, "")
    if choices["sites"]:
        values["home_site"] = choices["sites"][0]
    values["ground_kind"] = GroundKind.CONSENT.value
    return values


@router.get("/data/new")
def new_data(page: PageDep) -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        choices = _choices(read, caller)
    return page.render(
        "data_new.html", values=_blank(choices), errors={}, choices=choices,
        field_labels=FIELD_LABELS, ground_kinds=GROUND_KINDS,
    )


class _BadDay(Exception):
    """The ground's expiry is not a day."""


def _ground(values: dict[str, str], countries: dict[str, str]) -> dict[str, object] | None:
    """The optional ground as the service's ``GroundIn`` fields (``None``: none given).

    Its country is the data's jurisdiction: the one typed, else the home site's.
    It expires at 00:00 UTC of the day given.
    """
    typed = [values[k].strip() for k in ("ground_condition", "ground_reference",
                                         "ground_expires")]
    if not any(typed):
        return None
    country = values["jurisdiction"].strip().upper() or countries.get(
        values["home_site"].strip(), "")
    ground: dict[str, object] = {
        "country": country, "condition": typed[0], "kind": values["ground_kind"].strip(),
        "reference": typed[1] or None,
    }
    if typed[2]:
        try:
            day = date.fromisoformat(typed[2])
        except ValueError:
            raise _BadDay from None
        ground["expires"] = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return ground


def _spec(values: dict[str, str], caller: Caller, countries: dict[str, str]) -> svc.DatasetIn:
    """The service's own model from the form (empty optional fields are absent)."""
    body: dict[str, object] = {
        "name": values["name"].strip(),
        "home_site": values["home_site"].strip(),
        "data_class": values["data_class"].strip(),
        "uri": values["uri"].strip(),
    }
    if values["jurisdiction"].strip():
        body["jurisdiction"] = values["jurisdiction"].strip().upper()
    if values["owner"].strip():
        body["owner"] = values["owner"].strip()
    if caller.is_operator and values["tenant"].strip():
        body["tenant"] = values["tenant"].strip()
    ground = _ground(values, countries)
    if ground is not None:
        body["grounds"] = [ground]
    return svc.DatasetIn.model_validate(body)


def _say(page: Page, code: str, **values: object) -> str:
    return page.lang.gettext(DATA_ERRORS[code], **values)


def _validation_errors(exc: ValidationError, page: Page) -> dict[str, str]:
    errors: dict[str, str] = {}
    for e in exc.errors():
        loc = [str(part) for part in e["loc"]]
        name = loc[0] if loc else "name"
        if name == "grounds":
            # One ground in the form: ("grounds", 0, field); its country is the data's.
            part = loc[2] if len(loc) > 2 else "condition"
            name = GROUND_FIELDS.get(part, "jurisdiction")
        if name not in FIELD_LABELS or name in errors:
            continue
        kind = e["type"]
        if name == "jurisdiction" and kind.startswith("string_too"):
            errors[name] = _say(page, "country")
        elif kind == "string_too_short" or kind == "missing":
            errors[name] = _say(page, "required")
        elif kind == "string_too_long":
            errors[name] = _say(page, "too-long")
        else:
            errors[name] = _say(page, "invalid", why=e["msg"])
    return errors


def _service_error(exc: ServiceError, page: Page, choices: dict[str, list[str]]
                   ) -> dict[str, str]:
    if exc.code == "unknown-site":
        return {"home_site": _say(page, "choose", choices=", ".join(choices["sites"]))}
    if exc.code == "tenant-required":
        return {"tenant": _say(page, "tenant-required")}
    if exc.code == "tenant-not-found":
        return {"tenant": _say(page, "choose", choices=", ".join(choices["tenants"]))}
    if exc.code == "invalid-country" and exc.field == "jurisdiction":
        return {"jurisdiction": _say(page, "country")}
    if exc.code == "invalid-ground":
        field = GROUND_FIELDS.get(exc.field or "", "ground_condition")
        if field == "ground_condition" and "reference" in exc.message:
            field = "ground_reference"  # an authorisation needs its reference and expiry
        return {field: _say(page, "invalid", why=exc.message)}
    field = exc.field if exc.field in FIELD_LABELS else "name"
    return {field: _say(page, "invalid", why=exc.message)}


@router.post("/data/new")
async def register(request: Request, page: PageDep) -> Response:
    caller = page.signed_in()
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    session.check_csrf(request, fields.get(session.CSRF_FIELD))
    values = {k: fields.get(k, "")[:4096] for k in FIELDS}

    def run() -> Response:
        errors: dict[str, str] = {}
        with page.state.db.read() as read:
            choices = _choices(read, caller)
            countries = _site_countries(read)
        try:
            spec = _spec(values, caller, countries)
        except ValidationError as exc:
            errors = _validation_errors(exc, page)
        except _BadDay:
            errors = {"ground_expires": _say(page, "day")}
        else:
            try:
                with page.state.db.write() as write:
                    done = svc.register_dataset(write, caller, spec, now=page.now)
                    data_id = done.row.id
            except ServiceError as exc:
                if exc.status == 404 and exc.code != "tenant-not-found":
                    raise
                errors = _service_error(exc, page, choices)
        if errors:
            return page.render(
                "data_new.html", status=422, values=values, errors=errors, choices=choices,
                field_labels=FIELD_LABELS, ground_kinds=GROUND_KINDS,
            )
        return page.redirect(f"/data/{data_id}?done=registered")

    return await run_in_threadpool(run)


# --- one dataset or artifact ----------------------------------------------------------------


@router.get("/data/{data_id}")
def data_detail(data_id: str, page: PageDep, done: str = "") -> Response:
    caller = page.signed_in()
    with page.state.db.read() as read:
        row = svc.get_data(read, caller, data_id)
        view = _views(read, caller, [row])[0]
        grounds: list[TransferGroundRow] = svc.grounds_of(read, row.id)
        visible = {r.id: r for r in svc.list_data(read, caller)}
    parents = [(d, visible.get(d)) for d in row.derived_from]
    children = [r for r in visible.values() if row.id in (r.derived_from or ())]
    notice = page._("The dataset is registered.") if done == "registered" else None
    return page.render(
        "data_detail.html", view=view, row=row, grounds=grounds, parents=parents,
        children=children, notice=notice, unknown_as=svc.current_rules().unknown_class,
        kinds=KIND_LABELS, ground_kinds=GROUND_KINDS,
    )
