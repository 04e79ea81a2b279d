"""The job submission form: from posted fields to a ``JobSpec``, or errors per field.

The rules are the service's own (``service.jobs``): the form adds only what a
web form needs — reading numbers and a command line typed as text, and the
time limit in minutes. The same ``check`` runs while the user types (the
``/jobs/validate`` endpoint) and on submit, so the two can never disagree.

Errors are ``{field: sentence}`` in the user's language. The service stops at
its first error; the form's own parsing reports every unreadable field at once.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.orm import Session

from masnaa.portal.i18n import Lang
from masnaa.portal.labels import SUBMIT_ERRORS
from masnaa.service import job_catalog
from masnaa.service import jobs as svc
from masnaa.service.tenancy import Caller, ServiceError

FIELDS = (
    "name", "project", "command", "tasks", "gpus_per_task", "gpu_type", "time_limit",
    "priority_class", "site",
)
# The service names the list fields; the form has one choice each.
_SERVICE_FIELD = {"gpu_types": "gpu_type", "sites": "site"}


@dataclass
class Checked:
    values: dict[str, str]
    """What the user typed, to show again (nothing is lost on an error)."""
    spec: svc.JobSpec | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _say(lang: Lang, code: str, **values: object) -> str:
    return lang.gettext(SUBMIT_ERRORS[code], **values)


def _positive_int(raw: str) -> int | None:
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def parse(form: dict[str, str], lang: Lang) -> Checked:
    values = {k: str(form.get(k, "")) for k in FIELDS}
    out = Checked(values)
    errors = out.errors

    try:
        command = shlex.split(values["command"])
    except ValueError:
        errors["command"] = _say(lang, "invalid-command")
        command = []
    if not command and "command" not in errors:
        errors["command"] = _say(lang, "command-or-script")

    numbers: dict[str, int] = {}
    for name in ("tasks", "gpus_per_task"):
        value = _positive_int(values[name] or "1")
        if value is None:
            errors[name] = _say(lang, "not-a-number")
        else:
            numbers[name] = value

    minutes: float | None
    try:
        minutes = float(values["time_limit"].replace(",", ".") or "60")
    except ValueError:
        minutes = None
    if minutes is None or not 1 <= minutes <= 366 * 1440:
        errors["time_limit"] = _say(lang, "invalid-time-limit")

    if errors:
        return out
    assert minutes is not None
    try:
        out.spec = svc.JobSpec(
            name=values["name"].strip(),
            project=values["project"] or None,
            command=command,
            tasks=numbers["tasks"],
            gpus_per_task=numbers["gpus_per_task"],
            gpu_types=[values["gpu_type"]] if values["gpu_type"] else [],
            time_limit=minutes * 60.0,
            priority_class=values["priority_class"] or "normal",
            sites=[values["site"]] if values["site"] else None,
        )
    except ValidationError as exc:
        for problem in exc.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "name"
            name = _SERVICE_FIELD.get(name, name)
            kind = "not-a-number" if name in ("tasks", "gpus_per_task") else "too-long"
            errors.setdefault(name, _say(lang, kind))
    return out


def translate(
    exc: ServiceError, catalog: job_catalog.Catalog, spec: svc.JobSpec, lang: Lang,
    caller: Caller,
) -> str:
    """The service's refusal as a sentence in ``lang`` (its English one when unknown).
    The classes it offers are those open to ``caller``'s tenant, as in the form's menu."""
    message = SUBMIT_ERRORS.get(exc.code)
    if message is None:
        return exc.message
    classes = (catalog.classes_for(caller.tenant or "")
               if not caller.is_operator
               else sorted(catalog.priority_classes))
    choices = {
        "unknown-gpu-type": catalog.gpu_types,
        "unknown-site": sorted(catalog.sites),
        "unknown-priority-class": classes,
    }.get(exc.code)
    if choices is not None:
        return lang.gettext(message, choices=", ".join(choices))
    if exc.code == "too-many-gpus":
        fit = job_catalog.what_fits(catalog, spec)
        if spec.gpus_per_task > fit.largest_node:
            return lang.gettext(SUBMIT_ERRORS["too-many-gpus-per-task"],
                                most=lang.number(fit.largest_node))
        return lang.gettext(message, most=lang.number(fit.tasks * spec.gpus_per_task))
    return lang.gettext(message)


def check(session: Session, caller: Caller, form: dict[str, str], lang: Lang) -> Checked:
    """Parse ``form`` and validate it against the factory, without writing."""
    out = parse(form, lang)
    if out.spec is None:
        return out
    catalog = job_catalog.catalog(session)
    try:
        # The service's own checks (submit runs exactly these); nothing is written.
        svc.prepare(session, caller, [out.spec], now=0.0, single=True)
    except ServiceError as exc:
        name = _SERVICE_FIELD.get(exc.field or "", exc.field or "command")
        out.errors[name if name in FIELDS else "command"] = translate(
            exc, catalog, out.spec, lang, caller
        )
        out.spec = None
    return out
