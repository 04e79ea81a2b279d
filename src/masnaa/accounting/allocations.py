"""The allocation lifecycle as a pure state machine.

An **allocation** (``accounting.allocation``: the value types) is a grant
(research) or purchase (start-ups) of GPU-time for one project, in pools of
(site, GPU type), from a start date to an expiry date. Its life:

    request ─► in-review ─► approved ─► awarded ─► active ─► exhausted ⇄ active
       │           │                                  │
       └──────► rejected                              └─► expired | closed

- a **request** is made by the project's PI: a tier, the GPU-hours asked for
  per pool (or abstract credits), a start date, a duration and a
  justification. Small tiers (``Tier.auto_approve``) are awarded as asked at
  once;
- **review** runs the tier's steps in order (e.g. admin-check → technical →
  merit); only a reviewer of the current step may review it
  (``not-a-reviewer``), never a member of the allocation
  (``conflict-of-interest``); one rejection ends the request;
- the **award** is made by an operator and may differ from the request;
  negative amounts are refused (``negative-hours``), and so is anything above
  the tier's cap (``over-tier-limit``);
- release may be in **tranches** (fractions of the award). The first is
  released with the award; the next one when an operator releases it, and —
  if the tier says so — only after a progress report filed since the last
  release (``report-required``);
- **supplements** (at most ``Tier.max_supplements``, together at most
  ``Tier.max_supplement_fraction`` of the award), **extensions** of the expiry
  (within ``Tier.max_extension_days``) and **renewals** (a new request linked
  to the old allocation) are possible;
- ``settle(allocation, now, used)`` moves time forward: awarded → active at the
  start date, active ⇄ exhausted with the balance, and → expired at the expiry
  date, when unused GPU-time **lapses** (recorded in ``lapsed_gpu_seconds``).

A supplement request is granted through ``accounting.supplements``, never
awarded here (``supplement-request``). Who may do what follows the roles of
``accounting.allocation`` (``not-allowed``); awards, releases, supplements and
extensions are operators' (``not-an-operator``).

A command returns a new ``Allocation`` or refuses with an
``AccountingError``; it never changes the one it is given. Times are
arguments; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal

from masnaa.accounting.allocation import (
    LIVE,
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
    Tier,
)
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import HOUR, Instant, at, day_of
from masnaa.accounting.money import to_decimal

START_GRACE_DAYS = 1
"""How far before today (UTC) a requested start may lie (``start-in-past``)."""


def _deny(code: str, message: str) -> AccountingError:
    return AccountingError(code, message)


def _need_state(a: Allocation, allowed: frozenset[State] | set[State], doing: str) -> None:
    if a.state not in allowed:
        raise _deny(
            "bad-state",
            f"allocation {a.id!r} is {a.state}; {doing} needs one of {', '.join(sorted(allowed))}",
        )


def _need_role(a: Allocation, user: str, roles: set[Role], doing: str) -> None:
    if a.members.get(user) not in roles:
        raise _deny(
            "not-allowed",
            f"{user!r} may not {doing} on allocation {a.id!r}; it needs the role "
            f"{' or '.join(sorted(roles))}",
        )


def _need_operator(policy: AllocationPolicy, user: str, doing: str) -> None:
    if user not in policy.operators:
        raise _deny("not-an-operator", f"{user!r} may not {doing}: only operators may")


def _log(a: Allocation, t: Instant, by: str, what: str) -> tuple[Event, ...]:
    return (*a.history, Event(t, by, what))


def _check_caps(tier: Tier, amount: Amount, seconds: Mapping[Pool, int], what: str) -> None:
    hours = Decimal(sum(seconds.values())) / HOUR
    if tier.max_gpu_hours is not None and hours > tier.max_gpu_hours:
        raise _deny(
            "over-tier-limit",
            f"{what} of {hours} GPU-hours exceeds the {tier.name} tier's cap of "
            f"{tier.max_gpu_hours}; ask for less or use a larger tier",
        )
    if tier.max_credits is not None and to_decimal(amount.credits) > tier.max_credits:
        raise _deny(
            "over-tier-limit",
            f"{what} of {amount.credits} credits exceeds the {tier.name} tier's cap of "
            f"{tier.max_credits}; ask for less or use a larger tier",
        )


def request(
    policy: AllocationPolicy,
    *,
    id: str,
    project: str,
    pi: str,
    tier: str,
    amount: Amount,
    start: date,
    duration_days: int,
    justification: str,
    at_: Instant,
    renewal_of: str | None = None,
) -> Allocation:
    """A PI's request; auto-approved tiers come back already awarded as asked."""
    t = policy.tier(tier)
    seconds = amount.seconds("request")
    _need_some(amount, seconds, "empty-request", "a request must ask for")
    if duration_days <= 0 or duration_days > t.max_duration_days:
        raise _deny(
            "bad-duration",
            f"duration {duration_days} days is outside the {t.name} tier's "
            f"1..{t.max_duration_days} days",
        )
    _check_caps(t, amount, seconds, "request")
    earliest = day_of(at_) - timedelta(days=START_GRACE_DAYS)
    if start < earliest:
        # Such a start would be settled straight into active or expired, its past days
        # lapsed unused; one day back still lets a request dated "today" in a time zone
        # behind UTC through.
        raise _deny(
            "start-in-past",
            f"start {start} is more than {START_GRACE_DAYS} day before today ({day_of(at_)}); "
            f"start on {earliest} or later",
        )
    if not justification.strip():
        raise _deny("no-justification", "a request needs a justification; say what it is for")
    a = Allocation(
        id=id,
        project=project,
        tier=t.name,
        state=State.REQUESTED,
        members={pi: Role.PI},
        requested=amount,
        start=start,
        expires=start + timedelta(days=duration_days),
        first_expires=start + timedelta(days=duration_days),
        justification=justification,
        tranches=t.tranches,
        renewal_of=renewal_of,
        history=(Event(at_, pi, f"requested ({t.name})"),),
    )
    if t.auto_approve:
        a = replace(a, state=State.APPROVED)
        a = _do_award(a, amount, seconds, "auto", at_, "auto-approved")
    return a


def review(
    a: Allocation,
    policy: AllocationPolicy,
    *,
    step: str,
    reviewer: str,
    approve: bool,
    comment: str,
    at_: Instant,
) -> Allocation:
    """Record one review step; steps run in the tier's order."""
    _need_state(a, {State.REQUESTED, State.IN_REVIEW}, "a review")
    steps = policy.tier(a.tier).review_steps
    done = len(a.reviews)
    expected = steps[done]
    if step != expected:
        raise _deny(
            "wrong-review-step",
            f"allocation {a.id!r} is at review step {expected!r}, not {step!r}",
        )
    if reviewer not in policy.reviewers.get(step, frozenset()):
        raise _deny(
            "not-a-reviewer",
            f"{reviewer!r} is not a reviewer for step {step!r}; ask an operator to add them",
        )
    if reviewer in a.members:
        raise _deny(
            "conflict-of-interest",
            f"{reviewer!r} is a member of allocation {a.id!r} and may not review it",
        )
    rec = ReviewRecord(step, reviewer, approve, comment, at_)
    if not approve:
        state = State.REJECTED
    elif done + 1 == len(steps):
        state = State.APPROVED
    else:
        state = State.IN_REVIEW
    verdict = "approved" if approve else "rejected"
    return replace(
        a,
        state=state,
        reviews=(*a.reviews, rec),
        history=_log(a, at_, reviewer, f"review {step}: {verdict}"),
    )


def _need_some(amount: Amount, seconds: Mapping[Pool, int], code: str, what: str) -> None:
    """Refuse an amount of nothing: zero GPU-time cannot be used, and an award or a
    supplement of it cannot be undone (it spends the state change or the tier's
    supplement)."""
    if not any(seconds.values()) and to_decimal(amount.credits) == 0:
        raise _deny(code, f"{what} GPU-hours in a pool or credits, more than zero in all")


def _do_award(
    a: Allocation, amount: Amount, seconds: Mapping[Pool, int], by: str, at_: Instant, note: str
) -> Allocation:
    return replace(
        a,
        state=State.AWARDED,
        awarded=dict(seconds),
        awarded_credits=to_decimal(amount.credits),
        released_tranches=1,
        last_release_at=at_,
        history=_log(a, at_, by, f"awarded ({note}); tranche 1 of {len(a.tranches)} released"),
    )


def award(
    a: Allocation, policy: AllocationPolicy, *, by: str, amount: Amount | None, at_: Instant
) -> Allocation:
    """The operator's award after review; it may differ from the request. ``None``
    awards what was requested."""
    _need_operator(policy, by, "award an allocation")
    if a.supplement_of is not None:
        # Awarding it would make a second allocation of the same GPU-time.
        raise _deny(
            "supplement-request",
            f"{a.id!r} asks for a supplement to {a.supplement_of!r}: grant it to that "
            "allocation (accounting.supplements.grant_supplement) instead of awarding it",
        )
    _need_state(a, {State.APPROVED}, "an award")
    if amount is None:
        amount = a.requested
    seconds = amount.seconds("award")
    _need_some(amount, seconds, "empty-award", f"an award of {a.id!r} must give")
    _check_caps(policy.tier(a.tier), amount, seconds, "award")
    return _do_award(a, amount, seconds, by, at_, "by operator")


def report_progress(
    a: Allocation, *, by: str, text: str, products: tuple[str, ...] = (), at_: Instant
) -> Allocation:
    _need_state(a, LIVE | {State.EXPIRED, State.CLOSED}, "a progress report")
    _need_role(a, by, {Role.PI, Role.CO_PI, Role.MANAGER}, "file a progress report")
    if not text.strip():
        raise _deny("empty-report", "a progress report needs text saying what was done")
    r = ProgressReport(by, text, products, at_)
    return replace(a, reports=(*a.reports, r), history=_log(a, at_, by, "progress report"))


def release_tranche(
    a: Allocation, policy: AllocationPolicy, *, by: str, at_: Instant
) -> Allocation:
    _need_operator(policy, by, "release a tranche")
    _need_state(a, LIVE, "a tranche release")
    if a.released_tranches >= len(a.tranches):
        raise _deny("no-tranche-left", f"all {len(a.tranches)} tranches of {a.id!r} are released")
    if policy.tier(a.tier).tranche_needs_report and not any(
        a.last_release_at is None or r.at >= a.last_release_at for r in a.reports
    ):
        raise _deny(
            "report-required",
            f"tranche {a.released_tranches + 1} of {a.id!r} needs a progress report filed "
            "after the last release",
        )
    n = a.released_tranches + 1
    return replace(
        a,
        released_tranches=n,
        last_release_at=at_,
        history=_log(a, at_, by, f"tranche {n} of {len(a.tranches)} released"),
    )


def check_supplement(a: Allocation, policy: AllocationPolicy, amount: Amount) -> dict[Pool, int]:
    """The GPU-seconds of ``amount`` if the tier's supplement rules allow adding it
    to ``a`` now (live, not too many, not too large); else the refusal."""
    _need_state(a, LIVE, "a supplement")
    t = policy.tier(a.tier)
    if a.supplements >= t.max_supplements:
        raise _deny(
            "too-many-supplements",
            f"{a.id!r} already had {a.supplements} supplement(s); the {t.name} tier allows "
            f"{t.max_supplements}; request a renewal instead",
        )
    seconds = amount.seconds("supplement")
    _need_some(amount, seconds, "empty-supplement", f"a supplement to {a.id!r} must add")
    new_sec = sum(a.supplemented.values()) + sum(seconds.values())
    new_cred = a.supplemented_credits + to_decimal(amount.credits)
    frac = t.max_supplement_fraction
    if new_sec > sum(a.awarded.values()) * frac or new_cred > a.awarded_credits * frac:
        raise _deny(
            "supplement-too-large",
            f"supplements to {a.id!r} would exceed {frac * 100}% of its award; ask for less",
        )
    return seconds


def supplement(
    a: Allocation,
    policy: AllocationPolicy,
    *,
    by: str,
    amount: Amount,
    at_: Instant,
    requested_in: str | None = None,
) -> Allocation:
    """Add GPU-time (released at once) within the tier's supplement rules.

    ``requested_in`` names the supplement request it grants, for the history."""
    _need_operator(policy, by, "grant a supplement")
    seconds = check_supplement(a, policy, amount)
    new_cred = a.supplemented_credits + to_decimal(amount.credits)
    merged = dict(a.supplemented)
    for p, s in seconds.items():
        merged[p] = merged.get(p, 0) + s
    return replace(
        a,
        supplemented=merged,
        supplemented_credits=new_cred,
        supplements=a.supplements + 1,
        history=_log(
            a, at_, by, "supplement" if requested_in is None else f"supplement ({requested_in})"
        ),
    )


def extend(
    a: Allocation, policy: AllocationPolicy, *, by: str, new_expiry: date, at_: Instant
) -> Allocation:
    _need_operator(policy, by, "extend an allocation")
    _need_state(a, LIVE, "an extension")
    t = policy.tier(a.tier)
    if new_expiry <= a.expires:
        raise _deny("bad-extension", f"new expiry {new_expiry} is not after {a.expires}")
    original = a.first_expires or a.expires
    if (new_expiry - original).days > t.max_extension_days:
        raise _deny(
            "bad-extension",
            f"{a.id!r} may be extended by at most {t.max_extension_days} days past {original}",
        )
    return replace(
        a,
        expires=new_expiry,
        history=_log(a, at_, by, f"extended from {a.expires} to {new_expiry}"),
    )


def close(
    a: Allocation, policy: AllocationPolicy, *, by: str, reason: str, at_: Instant
) -> Allocation:
    if by not in policy.operators:
        _need_role(a, by, {Role.PI}, "close it")
    _need_state(a, LIVE | {State.REQUESTED, State.IN_REVIEW, State.APPROVED}, "closing")
    return replace(a, state=State.CLOSED, history=_log(a, at_, by, f"closed: {reason}"))


def exchange(
    a: Allocation, policy: AllocationPolicy, *, by: str, credits: Decimal, pool: Pool, at_: Instant
) -> Allocation:
    """Turn released credits into GPU-seconds of ``pool`` at the operator's rate."""
    _need_state(a, LIVE, "a credit exchange")
    _need_role(a, by, {Role.PI, Role.MANAGER}, "exchange credits")
    c = to_decimal(credits)
    if c <= 0:
        raise _deny("negative-hours", f"exchange {c} credits: the amount must be > 0")
    if c > a.credits_available:
        raise _deny(
            "insufficient-credits",
            f"{a.id!r} has {a.credits_available} released credits left, not {c}",
        )
    seconds = int((c / policy.credits_per_hour(pool) * HOUR).to_integral_value(ROUND_FLOOR))
    merged = dict(a.exchanged)
    merged[pool] = merged.get(pool, 0) + seconds
    return replace(
        a,
        exchanged=merged,
        exchanged_credits=a.exchanged_credits + c,
        history=_log(
            a, at_, by, f"exchanged {c} credits for {seconds} GPU-s of {pool[1]} at {pool[0]}"
        ),
    )


def _may_grant(role: Role) -> set[Role]:
    """Who may give ``role``: the PI adds co-PIs and managers; managers add members too."""
    return {Role.PI} if role in (Role.CO_PI, Role.MANAGER) else {Role.PI, Role.MANAGER}


def add_member(a: Allocation, *, by: str, user: str, role: Role, at_: Instant) -> Allocation:
    """Add ``user`` with ``role``, or change the role of a member.

    Changing a role takes the right to give both the old and the new one, so a
    manager cannot demote a co-PI. The PI's own role is never changed here: an
    allocation always has exactly one PI, and no command hands the role on.
    """
    if role is Role.PI:
        raise _deny("one-pi", f"{a.id!r} already has a PI; add {user!r} as co-pi instead")
    old = a.members.get(user)
    if old is Role.PI:
        raise _deny(
            "pi-role",
            f"{user!r} is the PI of {a.id!r}, and the PI's role cannot be changed: an "
            "allocation keeps its one PI; add other people as co-pi, allocation-manager "
            "or member",
        )
    _need_role(a, by, _may_grant(role), f"add a {role}")
    if old == role:
        return a  # already so: nothing to write
    if old is not None:
        _need_role(a, by, _may_grant(old), f"change the role of a {old}")
    members = dict(a.members)
    members[user] = role
    what = f"added {user} as {role}" if old is None else f"made {user} {role} (was {old})"
    return replace(a, members=members, history=_log(a, at_, by, what))


def renew(
    old: Allocation,
    policy: AllocationPolicy,
    *,
    id: str,
    by: str,
    amount: Amount,
    start: date,
    duration_days: int,
    justification: str,
    at_: Instant,
) -> Allocation:
    """A renewal is a new request for the same project and tier, linked to ``old``."""
    _need_state(old, RENEWABLE, "a renewal")
    _need_role(old, by, {Role.PI, Role.CO_PI}, "request a renewal")
    new = request(
        policy,
        id=id,
        project=old.project,
        pi=by,
        tier=old.tier,
        amount=amount,
        start=start,
        duration_days=duration_days,
        justification=justification,
        at_=at_,
        renewal_of=old.id,
    )
    others = {u: r for u, r in old.members.items() if u != by and r is not Role.PI}
    return replace(new, members={**new.members, **others})


def settle(a: Allocation, now: Instant, used: Mapping[Pool, int]) -> Allocation:
    """Move ``a`` through time: activation, exhaustion, expiry (with lapse).

    ``used`` is the charged GPU-seconds per pool (``balance.used_by_allocation``).
    Idempotent: settling twice at the same instant changes nothing.
    """
    state = a.state
    if state is State.AWARDED and now >= a.starts_at:
        state = State.ACTIVE
    if state in (State.ACTIVE, State.EXHAUSTED, State.AWARDED) and now >= a.expires_at:
        released = a.released()
        unused = sum(max(0, released.get(p, 0) - used.get(p, 0)) for p in released)
        unreleased = a.awarded_total_seconds() - sum(released.values())
        return replace(
            a,
            state=State.EXPIRED,
            lapsed_gpu_seconds=unused + unreleased,
            history=_log(a, a.expires_at, "clock", f"expired; {unused + unreleased} GPU-s lapsed"),
        )
    if state in (State.ACTIVE, State.EXHAUSTED):
        released = a.released()
        left = any(released[p] - used.get(p, 0) > 0 for p in released)
        state = State.ACTIVE if left else State.EXHAUSTED
    if state is a.state:
        return a
    when = now
    if a.state is State.AWARDED and state is State.ACTIVE:
        # It became active when its start came (or when it was awarded, if later), not
        # when someone next looked: every reader must see the same history.
        when = max([a.starts_at, *(e.at for e in a.history)])
    return replace(a, state=state, history=_log(a, when, "clock", f"now {state}"))


def visible_reviews(
    a: Allocation, policy: AllocationPolicy, viewer: str
) -> tuple[ReviewRecord, ...]:
    """Only operators and reviewers see reviews; applicants see the state only."""
    reviewers = set().union(*policy.reviewers.values()) if policy.reviewers else set()
    if viewer in policy.operators or viewer in reviewers:
        return a.reviews
    return ()


def rejection(a: Allocation) -> ReviewRecord | None:
    """The review that rejected ``a``, if one did: its step, date and comment
    are the reason its applicant reads. The comments of approving reviews are
    notes among reviewers and stay with them (``visible_reviews``)."""
    return next((r for r in reversed(a.reviews) if not r.approve), None)


def reports_due(a: Allocation, policy: AllocationPolicy, now: Instant) -> list[date]:
    """Due dates of progress reports that have passed without a report filed
    on or after them (and before the next one fell due): what to remind the
    PI of, and what a funder sees as overdue."""
    t = policy.tier(a.tier)
    if not t.report_after_days or a.state not in LIVE | {State.EXPIRED}:
        return []
    dues = [a.start + timedelta(days=d) for d in t.report_after_days]
    dues = [d for d in dues if d < a.expires] + [a.expires]
    overdue = []
    for i, d in enumerate(dues):
        if at(d) > now:
            break
        until = at(dues[i + 1]) if i + 1 < len(dues) else None
        if not any(r.at >= at(d) and (until is None or r.at < until) for r in a.reports):
            overdue.append(d)
    return overdue
