"""Reviewers' pages: the queue of allocation requests, the review form, and its history.

Terms (``accounting.allocations``): a request runs its tier's **review
steps** in order (e.g. admin-check → technical); a **reviewer** of a step
(``allocation_reviewers``) approves or rejects it with a comment; one
rejection ends the request; after the last step an **operator** awards it
(the amount may differ from the request). A **supplement request**
(``supplement_of``) runs the same steps; an operator's award of it is the
grant that adds its GPU-time to the allocation it names
(``service.supplements.award``). Operators also grant supplements to live
allocations directly, within the tier's rules.

- ``/review``: requests waiting for a step, an award or a grant, oldest
  first (supplement requests marked as such), and the history of recent
  decisions. Only operators and reviewers see these
  pages; anyone else gets the not-found page (as for an unknown page).
- ``/review/{id}``: the request, its reviews and history, and the forms the
  caller may use: the current step's review (approve, or reject with a
  reason); for an operator at the last step, approve **with the amount**
  (review and award in one transaction); the award of an approved request
  (the grant, for a supplement request); a supplement of a live allocation.
  The comment of a rejection is the reason its applicant reads on their
  allocation page; comments on approvals stay with reviewers and operators.

Every decision is the core's (``service.accounting.command``): who may
review which step, conflicts of interest, caps. The form checks only what a
web form must (a reason when rejecting, numbers that read as numbers); a
refusal of the core is shown on the page in the user's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from masnaa.accounting import allocations as core
from masnaa.accounting.allocation import LIVE, Allocation, AllocationPolicy, Amount, State
from masnaa.portal import session
from masnaa.portal.i18n import Lang
from masnaa.portal.labels import N_
from masnaa.portal.routes_alloc import STATES, decimal_of, form_fields, say_error
from masnaa.portal.web import Page, PageDep, PortalRoute
from masnaa.service import accounting as svc
from masnaa.service import supplements
from masnaa.service.tenancy import Caller, ServiceError

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

WAITING = (State.REQUESTED, State.IN_REVIEW, State.APPROVED)
HISTORY_SIZE = 50

REFUSALS = {
    "not-a-reviewer": N_("You are not a reviewer of this step."),
    "conflict-of-interest": N_(
        "You are a member of this request, or of the tenant that made it, and may not "
        "review it."
    ),
    "wrong-review-step": N_("This request has moved on meanwhile: reload the page."),
    "allocation-changed": N_("This request has moved on meanwhile: reload the page."),
    "bad-state": N_("This request has moved on meanwhile: reload the page."),
    "not-an-operator": N_("Only operators may do this."),
    "over-tier-limit": N_("This is above the tier's cap; award less."),
    "negative-hours": N_("Amounts cannot be negative: enter 0 or more."),
    "too-many-supplements": N_("This allocation had all the supplements its tier allows."),
    "supplement-too-large": N_(
        "Supplements together may not exceed the tier's share of the award."
    ),
}
"""Refusals of the core → what the reviewer reads (else the service's sentence)."""


def may_review(page: Page) -> bool:
    """Whether the signed-in user sees the reviewers' pages (for the navigation)."""
    caller = page.caller
    if caller is None:
        return False
    if caller.is_operator:
        return True
    with page.state.db.read() as s:
        return svc.is_reviewer(s, caller.user)


def _reviewer(page: Page, s: Session) -> Caller:
    caller = page.signed_in()
    if not svc.sees_all(s, caller):
        raise ServiceError("page-not-found", "no such page", status=404)
    return caller


def current_step(a: Allocation, policy: AllocationPolicy) -> str | None:
    if a.state not in (State.REQUESTED, State.IN_REVIEW):
        return None
    steps = policy.tier(a.tier).review_steps
    return steps[len(a.reviews)] if len(a.reviews) < len(steps) else None


@dataclass(frozen=True, slots=True)
class QueueRow:
    a: Allocation
    step: str | None
    mine: bool
    """Whether the caller may act on it now (review this step, or award)."""


def _conflicted(caller: Caller, a: Allocation) -> bool:
    """Whether ``caller`` may not review ``a``: a member of it, or of its tenant (the
    rules of ``service.accounting.review``)."""
    own_tenant = caller.tenant is not None and a.project.partition("/")[0] == caller.tenant
    return caller.user in a.members or own_tenant


def _may_act(caller: Caller, a: Allocation, policy: AllocationPolicy) -> bool:
    step = current_step(a, policy)
    if step is not None:
        return caller.user in policy.reviewers.get(step, frozenset()) and not _conflicted(
            caller, a
        )
    return a.state is State.APPROVED and caller.is_operator


@router.get("/review")
def queue(page: PageDep) -> Response:
    with page.state.db.read() as s:
        caller = _reviewer(page, s)
        policy = svc.load_policy(s)
        allocs = [svc.from_doc(r.doc) for r in svc.visible(s, caller)]
    waiting = [
        QueueRow(a, current_step(a, policy), _may_act(caller, a, policy))
        for a in allocs if a.state in WAITING
    ]
    waiting.sort(key=lambda r: (not r.mine, r.a.history[0].at if r.a.history else 0))
    decided = [a for a in allocs if a.reviews and a.state not in WAITING]
    decided.sort(key=lambda a: -a.history[-1].at if a.history else 0)
    return page.render(
        "review_queue.html", waiting=waiting, decided=decided[:HISTORY_SIZE], states=STATES
    )


@dataclass
class Decision:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


def _amount_rows(a: Allocation) -> list[tuple[str, str, Decimal]]:
    return [(p[0], p[1], h) for p, h in sorted(a.requested.gpu_hours.items())]


def _amount(fields: dict[str, str], lang: Lang, errors: dict[str, str]) -> Amount | None:
    """Pools typed as ``site_i``/``gpu_type_i``/``hours_i`` rows, and ``credits``."""
    pools: list[tuple[str, str, Decimal]] = []
    for i in range(8):
        site, gpu = fields.get(f"site_{i}", "").strip(), fields.get(f"gpu_type_{i}", "").strip()
        raw = fields.get(f"hours_{i}")
        if raw is None:
            continue
        hours = decimal_of(raw)
        if hours is None:
            errors[f"hours_{i}"] = say_error(lang, "not-a-number")
        elif hours and not (site and gpu):
            errors[f"hours_{i}"] = say_error(lang, "pool-incomplete")
        elif hours:
            pools.append((site, gpu, hours))
    credits = decimal_of(fields.get("credits", ""))
    if credits is None:
        errors["credits"] = say_error(lang, "not-a-number")
    if errors:
        return None
    assert credits is not None
    return svc.amount_of(pools, credits)


def _render(
    page: Page, s: Session, caller: Caller, alloc_id: str, *, status: int = 200,
    form: str = "", decision: Decision | None = None, notice: str = "",
) -> Response:
    _, a = svc.get(s, caller, alloc_id)
    policy = svc.load_policy(s)
    step = current_step(a, policy)
    values: dict[str, Any] = {
        "decision": "", "comment": "", "credits": str(a.requested.credits),
    }
    for i, (site, gpu, hours) in enumerate(_amount_rows(a) or [("", "", Decimal(0))]):
        values.update({f"site_{i}": site, f"gpu_type_{i}": gpu, f"hours_{i}": str(hours)})
    errors: dict[str, str] = {}
    if decision is not None:
        values.update(decision.values)
        errors = decision.errors
    is_last = step is not None and policy.tier(a.tier).review_steps[-1] == step
    return page.render(
        "review_detail.html", status=status, a=a, states=STATES, step=step,
        steps=policy.tier(a.tier).review_steps,
        reviews=core.visible_reviews(a, policy, caller.user),
        may_review=step is not None and _may_act(caller, a, policy),
        member=_conflicted(caller, a),
        award_with_approval=is_last and caller.is_operator,
        may_award=a.state is State.APPROVED and caller.is_operator,
        may_supplement=a.state in LIVE and caller.is_operator,
        pools=len(_amount_rows(a)) or 1,
        values=values, errors=errors, form=form, notice=notice,
    )


@router.get("/review/{alloc_id}")
def review_page(
    alloc_id: str, page: PageDep, done: Annotated[str, Query(max_length=16)] = ""
) -> Response:
    notices = {
        "approved": N_("Your approval is recorded."),
        "rejected": N_("The request is rejected; your reason is recorded."),
        "awarded": N_("The allocation is awarded: its first tranche is released."),
        "supplemented": N_("The supplement is granted and released at once."),
    }
    with page.state.db.read() as s:
        caller = _reviewer(page, s)
        notice = page._(notices[done]) if done in notices else ""
        return _render(page, s, caller, alloc_id, notice=notice)


def _refusal(exc: ServiceError, lang: Lang) -> str:
    message = REFUSALS.get(exc.code)
    return lang.gettext(message) if message else exc.message


async def _post(
    request: Request, page: Page, alloc_id: str, form: str,
    act: Any,
) -> Response:
    fields = await form_fields(request)
    session.check_csrf(request, fields.get(session.CSRF_FIELD))

    def run() -> Response:
        with page.state.db.read() as s:
            caller = _reviewer(page, s)
        decision = Decision({k: v for k, v in fields.items() if k != session.CSRF_FIELD})
        done = ""
        if not decision.errors:
            try:
                with page.state.db.write() as s:
                    done = act(s, caller, decision)
            except ServiceError as exc:
                if exc.status == 404:
                    raise
                decision.errors["form"] = _refusal(exc, page.lang)
        if done and not decision.errors:
            return page.redirect(f"/review/{alloc_id}?done={done}")
        with page.state.db.read() as s:
            return _render(page, s, caller, alloc_id, status=422, form=form, decision=decision)

    return await run_in_threadpool(run)


@router.post("/review/{alloc_id}")
async def review(alloc_id: str, request: Request, page: PageDep) -> Response:
    """Approve or reject the current step; an operator at the last step approves
    with the amount to award."""
    lang = page.lang

    def act(s: Session, caller: Caller, d: Decision) -> str:
        verdict = d.values.get("decision", "")
        comment = d.values.get("comment", "").strip()
        if verdict not in ("approve", "reject"):
            d.errors["decision"] = lang.gettext("Choose approve or reject.")
        elif verdict == "reject" and not comment:
            d.errors["comment"] = lang.gettext(
                "Give the reason for the rejection; it is kept with the review."
            )
        if len(comment) > 4000:
            d.errors["comment"] = say_error(lang, "too-long")
        _, a = svc.get(s, caller, alloc_id)
        policy = svc.load_policy(s)
        step = current_step(a, policy)
        with_award = (
            verdict == "approve" and caller.is_operator and step is not None
            and policy.tier(a.tier).review_steps[-1] == step
        )
        amount = _amount(d.values, lang, d.errors) if with_award else None
        if d.errors:
            return ""
        svc.review(s, caller, alloc_id, step=step or "", approve=verdict == "approve",
                   comment=comment, now=page.now)
        if amount is not None:
            done = supplements.award(s, caller, alloc_id, amount=amount, now=page.now)
            return "supplemented" if done.supplement_of else "awarded"
        return "approved" if verdict == "approve" else "rejected"

    return await _post(request, page, alloc_id, "review", act)


@router.post("/review/{alloc_id}/award")
async def award(alloc_id: str, request: Request, page: PageDep) -> Response:
    def act(s: Session, caller: Caller, d: Decision) -> str:
        amount = _amount(d.values, page.lang, d.errors)
        if amount is None:
            return ""
        done = supplements.award(s, caller, alloc_id, amount=amount, now=page.now)
        return "supplemented" if done.supplement_of else "awarded"

    return await _post(request, page, alloc_id, "award", act)


@router.post("/review/{alloc_id}/supplement")
async def supplement(alloc_id: str, request: Request, page: PageDep) -> Response:
    def act(s: Session, caller: Caller, d: Decision) -> str:
        amount = _amount(d.values, page.lang, d.errors)
        if amount is None:
            return ""
        svc.command(
            s, caller, alloc_id,
            lambda a, p: core.supplement(a, p, by=caller.user, amount=amount, at_=int(page.now)),
            now=page.now,
        )
        return "supplemented"

    return await _post(request, page, alloc_id, "supplement", act)
