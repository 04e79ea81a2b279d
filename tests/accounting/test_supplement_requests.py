"""Supplement requests in the pure core: a member asks, reviewers decide step by step,
an operator grants, and the GPU-time lands on the allocation it supplements (never
twice); a rejection keeps its reason for the applicant, approvals' notes stay private."""

from __future__ import annotations

from dataclasses import replace

import pytest
from acct_builders import H100, T0, gateway, hours, policy

from masnaa.accounting import allocations as al
from masnaa.accounting.allocation import Allocation, Amount, Role, State
from masnaa.accounting.balance import project_balances, usable
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR
from masnaa.accounting.supplements import grant_supplement, request_supplement

MA = ("ma-1", H100)


def innovator_base(h: int = 1000) -> Allocation:
    """An innovator grant (admin-check → technical), reviewed and awarded, with a member."""
    a = al.request(policy(), id="base", project="p1", pi="pia", tier="innovator",
                   amount=hours(MA, h), start=gateway().start, duration_days=90,
                   justification="speech", at_=T0)  # fmt: skip
    a = al.review(a, policy(), step="admin-check", reviewer="rita", approve=True, comment="",
                  at_=T0)  # fmt: skip
    a = al.review(a, policy(), step="technical", reviewer="tariq", approve=True,
                  comment="private note", at_=T0)  # fmt: skip
    a = al.award(a, policy(), by="olu", amount=hours(MA, h), at_=T0)
    return al.add_member(a, by="pia", user="mem", role=Role.MEMBER, at_=T0)


def ask(base: Allocation, by: str = "mem", h: int | str = 200, why: str = "more runs"):
    return request_supplement(base, policy(), id="sup", by=by, amount=hours(MA, h),
                              justification=why, at_=T0 + DAY)  # fmt: skip


def approved(req: Allocation) -> Allocation:
    for step, who in (("admin-check", "rita"), ("technical", "tariq")):
        req = al.review(req, policy(), step=step, reviewer=who, approve=True, comment="ok",
                        at_=T0 + 2 * DAY)  # fmt: skip
    return req


def test_a_member_asks_reviewers_approve_an_operator_grants_to_the_same_allocation() -> None:
    base = innovator_base()
    req = ask(base)
    assert (req.state, req.supplement_of, req.project, req.tier) == (
        State.REQUESTED, "base", "p1", "innovator")
    assert req.members == base.members  # so none of them may review it
    assert req.history[0].by == "mem" and "supplement to base" in req.history[0].what
    req = approved(req)
    assert req.state is State.APPROVED
    granted, new_base = grant_supplement(req, base, policy(), by="olu", amount=hours(MA, 150),
                                         at_=T0 + 3 * DAY)  # fmt: skip
    assert granted.state is State.GRANTED
    assert "150 GPU-hours added to base as its supplement 1" in granted.history[-1].what
    assert new_base.supplements == 1
    assert new_base.released() == {MA: 1150 * HOUR}  # the grant may differ from the ask
    assert new_base.history[-1].what == "supplement (sup)"
    # The request itself never holds GPU-time: balances count it once, on the base.
    assert not usable(granted, T0 + 4 * DAY)
    assert project_balances([granted, new_base], {}, T0 + 4 * DAY, {"p1"}) == {
        "p1": {MA: 1150 * HOUR}}


@pytest.mark.parametrize(
    ("change", "by", "amount", "why", "code"),
    [
        ({}, "stranger", hours(MA, 10), "x", "not-allowed"),
        ({"state": State.EXPIRED}, "mem", hours(MA, 10), "x", "bad-state"),
        ({"state": State.REQUESTED}, "pia", hours(MA, 10), "x", "bad-state"),
        ({}, "mem", Amount(), "x", "empty-request"),
        ({}, "mem", hours(MA, 0), "x", "empty-request"),
        ({}, "mem", hours(MA, -5), "x", "negative-hours"),
        ({}, "mem", hours(MA, 10), "   ", "no-justification"),
        ({}, "mem", hours(MA, 501), "x", "supplement-too-large"),  # innovator: ≤ 50 %
        ({"supplements": 1}, "mem", hours(MA, 10), "x", "too-many-supplements"),
    ],
)
def test_what_could_never_be_granted_is_refused_when_asked(
    change: dict[str, object], by: str, amount: Amount, why: str, code: str
) -> None:
    base = replace(innovator_base(), **change)  # type: ignore[arg-type]
    with pytest.raises(AccountingError) as err:
        request_supplement(base, policy(), id="s", by=by, amount=amount, justification=why,
                           at_=T0)  # fmt: skip
    assert err.value.code == code


def test_members_of_the_allocation_may_not_review_its_supplement_request() -> None:
    base = al.add_member(innovator_base(), by="pia", user="rita", role=Role.CO_PI, at_=T0)
    req = ask(base, by="rita")
    with pytest.raises(AccountingError) as err:
        al.review(req, policy(), step="admin-check", reviewer="rita", approve=True, comment="",
                  at_=T0)  # fmt: skip
    assert err.value.code == "conflict-of-interest"


def test_only_an_operator_grants_only_an_approved_request_and_never_awards_it() -> None:
    base = innovator_base()
    req = ask(base)
    with pytest.raises(AccountingError) as err:  # still in review
        grant_supplement(req, base, policy(), by="olu", amount=hours(MA, 1), at_=T0)
    assert err.value.code == "bad-state"
    req = approved(req)
    with pytest.raises(AccountingError) as err:
        grant_supplement(req, base, policy(), by="tariq", amount=hours(MA, 1), at_=T0)
    assert err.value.code == "not-an-operator"
    with pytest.raises(AccountingError) as err:
        grant_supplement(req, replace(base, id="other"), policy(), by="olu",
                         amount=hours(MA, 1), at_=T0)  # fmt: skip
    assert err.value.code == "not-a-supplement-request"
    with pytest.raises(AccountingError) as err:  # an award would make a second allocation
        al.award(req, policy(), by="olu", amount=hours(MA, 1), at_=T0)
    assert err.value.code == "supplement-request"
    # Caps are checked again at the grant: a direct supplement came meanwhile.
    topped = al.supplement(base, policy(), by="olu", amount=hours(MA, 400), at_=T0)
    with pytest.raises(AccountingError) as err:
        grant_supplement(req, topped, policy(), by="olu", amount=hours(MA, 200), at_=T0)
    assert err.value.code == "too-many-supplements"


def test_a_tier_without_review_steps_waits_for_an_operator() -> None:
    base = gateway(h=1000)
    req = request_supplement(base, policy(), id="s", by="pia", amount=hours(MA, 100),
                             justification="more", at_=T0)  # fmt: skip
    assert req.state is State.APPROVED and base.supplements == 0
    granted, new_base = grant_supplement(req, base, policy(), by="olu", amount=hours(MA, 100),
                                         at_=T0)  # fmt: skip
    assert granted.state is State.GRANTED and new_base.released() == {MA: 1100 * HOUR}


def test_the_rejection_is_the_rejecting_review_and_approvals_stay_private() -> None:
    req = ask(innovator_base())
    assert al.rejection(req) is None
    req = al.review(req, policy(), step="admin-check", reviewer="rita", approve=True,
                    comment="internal: fine", at_=T0)  # fmt: skip
    assert al.rejection(req) is None
    req = al.review(req, policy(), step="technical", reviewer="tariq", approve=False,
                    comment="the first award is barely used", at_=T0 + 5)  # fmt: skip
    found = al.rejection(req)
    assert found is not None and req.state is State.REJECTED
    assert (found.step, found.comment, found.at) == (
        "technical", "the first award is barely used", T0 + 5)
    # Applicants see no review at all through visible_reviews.
    assert al.visible_reviews(req, policy(), "mem") == ()
