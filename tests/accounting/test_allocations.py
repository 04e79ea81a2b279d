import functools
from datetime import date, timedelta
from decimal import Decimal

import pytest
from acct_builders import H100, L40S, NOV, T0, gateway, hours, policy

from masnaa.accounting import allocations as al
from masnaa.accounting.allocation import Allocation, Amount, Role, State
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR, at

MA_H100 = ("ma-1", H100)
MA_L40S = ("ma-1", L40S)


def open_call(h: int | str = 100_000) -> Allocation:
    return al.request(policy(), id="oc1", project="p1", pi="pia", tier="open-call",
                      amount=hours(MA_H100, h), start=NOV, duration_days=365,
                      justification="train a Swahili foundation model", at_=T0)  # fmt: skip


def reviewed(a: Allocation) -> Allocation:
    for step, who in (("admin-check", "rita"), ("technical", "tariq"), ("merit", "mona")):
        a = al.review(a, policy(), step=step, reviewer=who, approve=True, comment="ok", at_=T0)
    return a


def awarded(h: int = 80_000) -> Allocation:
    return al.award(reviewed(open_call()), policy(), by="olu", amount=hours(MA_H100, h), at_=T0)


def test_small_tier_is_auto_approved_and_awarded_as_asked() -> None:
    a = gateway(h=1000)
    assert a.state is State.AWARDED
    assert a.released() == {MA_H100: 1000 * HOUR}
    assert a.members == {"pia": Role.PI}


def test_full_review_pipeline_then_award_that_differs_from_request() -> None:
    a = open_call(100_000)
    assert a.state is State.REQUESTED
    a = al.review(
        a, policy(), step="admin-check", reviewer="rita", approve=True, comment="", at_=T0
    )
    assert a.state is State.IN_REVIEW
    a = reviewed(open_call(100_000))
    assert a.state is State.APPROVED and len(a.reviews) == 3
    a = al.award(a, policy(), by="olu", amount=hours(MA_H100, 80_000), at_=T0)
    assert a.state is State.AWARDED
    assert a.awarded == {MA_H100: 80_000 * HOUR}
    assert a.released() == {MA_H100: 40_000 * HOUR}  # first of two tranches


def test_a_rejection_ends_the_request() -> None:
    a = al.review(open_call(), policy(), step="admin-check", reviewer="rita", approve=False,
                  comment="not eligible", at_=T0)  # fmt: skip
    assert a.state is State.REJECTED
    with pytest.raises(AccountingError) as err:
        al.review(a, policy(), step="technical", reviewer="tariq", approve=True, comment="", at_=T0)
    assert err.value.code == "bad-state"


def _request(**kw: object) -> Allocation:
    args: dict[str, object] = dict(id="x", project="p1", pi="pia", tier="open-call",
                                   amount=hours(MA_H100, 10), start=NOV, duration_days=30,
                                   justification="why", at_=T0)  # fmt: skip
    args.update(kw)
    return al.request(policy(), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (lambda: _request(amount=hours(MA_H100, -5)), "negative-hours"),
        (lambda: _request(amount=Amount(credits=Decimal(-1))), "negative-hours"),
        (lambda: _request(amount=Amount()), "empty-request"),
        (lambda: _request(tier="platinum"), "unknown-tier"),
        (lambda: _request(duration_days=0), "bad-duration"),
        (lambda: _request(tier="gateway", duration_days=200), "bad-duration"),
        (lambda: _request(tier="gateway", amount=hours(MA_H100, 10_001)), "over-tier-limit"),
        (lambda: _request(tier="explore", amount=Amount(credits=Decimal(400_001))),
         "over-tier-limit"),
        (lambda: _request(justification="  "), "no-justification"),
        # a review by someone who is not a reviewer of that step
        (lambda: al.review(open_call(), policy(), step="admin-check", reviewer="tariq",
                           approve=True, comment="", at_=T0), "not-a-reviewer"),
        (lambda: al.review(open_call(), policy(), step="admin-check", reviewer="eve",
                           approve=True, comment="", at_=T0), "not-a-reviewer"),
        (lambda: al.review(open_call(), policy(), step="merit", reviewer="mona", approve=True,
                           comment="", at_=T0), "wrong-review-step"),
        (lambda: al.review(al.add_member(open_call(), by="pia", user="rita", role=Role.MEMBER,
                                         at_=T0),
                           policy(), step="admin-check", reviewer="rita", approve=True,
                           comment="", at_=T0), "conflict-of-interest"),
        # awards
        (lambda: al.award(reviewed(open_call()), policy(), by="olu",
                          amount=hours(MA_H100, -1), at_=T0), "negative-hours"),
        (lambda: al.award(reviewed(open_call()), policy(), by="mona",
                          amount=hours(MA_H100, 1), at_=T0), "not-an-operator"),
        (lambda: al.award(open_call(), policy(), by="olu", amount=hours(MA_H100, 1), at_=T0),
         "bad-state"),
        (lambda: al.award(reviewed(open_call()), policy(), by="olu",
                          amount=hours(MA_H100, 1_400_001), at_=T0), "over-tier-limit"),
        # tranches, supplements, extensions
        (lambda: al.release_tranche(awarded(), policy(), by="olu", at_=T0 + DAY),
         "report-required"),
        (lambda: al.supplement(awarded(), policy(), by="olu",
                               amount=hours(MA_H100, 40_001), at_=T0), "supplement-too-large"),
        (lambda: al.supplement(awarded(), policy(), by="olu",
                               amount=hours(MA_H100, -1), at_=T0), "negative-hours"),
        (lambda: al.supplement(al.supplement(awarded(), policy(), by="olu",
                                             amount=hours(MA_H100, 10), at_=T0),
                               policy(), by="olu", amount=hours(MA_H100, 10), at_=T0),
         "too-many-supplements"),
        (lambda: al.extend(awarded(), policy(), by="olu", new_expiry=date(2026, 1, 1), at_=T0),
         "bad-extension"),
        (lambda: al.extend(awarded(), policy(), by="olu",
                           new_expiry=awarded().expires + timedelta(days=91), at_=T0),
         "bad-extension"),
        (lambda: al.extend(awarded(), policy(), by="pia",
                           new_expiry=awarded().expires + timedelta(days=9), at_=T0),
         "not-an-operator"),
        # roles
        (lambda: al.add_member(awarded(), by="pia", user="bob", role=Role.PI, at_=T0), "one-pi"),
        (lambda: al.add_member(al.add_member(awarded(), by="pia", user="mo", role=Role.MANAGER,
                                             at_=T0),
                               by="mo", user="bob", role=Role.CO_PI, at_=T0), "not-allowed"),
        (lambda: al.report_progress(awarded(), by="stranger", text="x", at_=T0), "not-allowed"),
        (lambda: al.report_progress(awarded(), by="pia", text=" ", at_=T0), "empty-report"),
        (lambda: al.close(awarded(), policy(), by="stranger", reason="", at_=T0), "not-allowed"),
    ],
)  # fmt: skip
def test_rejected_actions(action, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AccountingError) as err:
        action()
    assert err.value.code == code
    assert err.value.message  # a sentence for the user


def test_second_tranche_after_a_progress_report() -> None:
    a = al.report_progress(awarded(), by="pia", text="month 1: baseline trained",
                           products=("10.5281/zenodo.1",), at_=T0 + 30 * DAY)  # fmt: skip
    a = al.release_tranche(a, policy(), by="olu", at_=T0 + 31 * DAY)
    assert a.released() == {MA_H100: 80_000 * HOUR}
    with pytest.raises(AccountingError) as err:
        al.release_tranche(a, policy(), by="olu", at_=T0 + 32 * DAY)
    assert err.value.code == "no-tranche-left"


def test_supplement_up_to_half_and_extension_within_limit() -> None:
    a = al.supplement(awarded(), policy(), by="olu", amount=hours(MA_L40S, 40_000), at_=T0)
    assert a.released() == {MA_H100: 40_000 * HOUR, MA_L40S: 40_000 * HOUR}
    assert a.awarded_total_seconds() == 120_000 * HOUR
    new = a.expires + timedelta(days=60)
    a = al.extend(a, policy(), by="olu", new_expiry=new, at_=T0)
    a = al.extend(a, policy(), by="olu", new_expiry=new + timedelta(days=30), at_=T0)
    assert a.expires == new + timedelta(days=30)
    with pytest.raises(AccountingError):  # 91 days past the first expiry in total
        al.extend(a, policy(), by="olu", new_expiry=new + timedelta(days=31), at_=T0)


def test_credits_exchange_at_operator_rates() -> None:
    a = al.request(policy(), id="ex1", project="p1", pi="pia", tier="explore",
                   amount=Amount(credits=Decimal(400_000)), start=NOV, duration_days=365,
                   justification="explore", at_=T0)  # fmt: skip
    assert a.state is State.AWARDED and a.credits_available == Decimal(400_000)
    a = al.exchange(a, policy(), by="pia", credits=Decimal(100_000), pool=MA_H100, at_=T0)
    a = al.exchange(a, policy(), by="pia", credits=Decimal(35_000), pool=MA_L40S, at_=T0)
    # 100 credits per H100-hour, 35 per L40S-hour: the same credits buy fewer H100 hours.
    assert a.released() == {MA_H100: 1000 * HOUR, MA_L40S: 1000 * HOUR}
    assert a.credits_available == Decimal(265_000)
    for kw, code in (
        ({"credits": Decimal(300_000)}, "insufficient-credits"),
        ({"credits": Decimal(-5)}, "negative-hours"),
        ({"by": "stranger"}, "not-allowed"),
        ({"pool": ("ma-1", "tpu-v9")}, "no-credit-rate"),
    ):
        args = {"by": "pia", "credits": Decimal(10), "pool": MA_H100, "at_": T0, **kw}
        with pytest.raises(AccountingError) as err:
            al.exchange(a, policy(), **args)  # type: ignore[arg-type]
        assert err.value.code == code


def test_settle_activates_exhausts_reactivates_and_lapses() -> None:
    a = gateway(h=10)
    assert al.settle(a, T0 - 1, {}).state is State.AWARDED
    a = al.settle(a, T0, {})
    assert a.state is State.ACTIVE
    assert al.settle(a, T0 + 5, {}) is a  # idempotent
    full = {MA_H100: 10 * HOUR}
    a = al.settle(a, T0 + DAY, full)
    assert a.state is State.EXHAUSTED
    a = al.supplement(a, policy(), by="olu", amount=hours(MA_H100, 5), at_=T0 + DAY)
    a = al.settle(a, T0 + DAY, full)
    assert a.state is State.ACTIVE
    a = al.settle(a, at(a.expires), {MA_H100: 12 * HOUR})
    assert a.state is State.EXPIRED
    assert a.lapsed_gpu_seconds == 3 * HOUR
    with pytest.raises(AccountingError):
        al.supplement(a, policy(), by="olu", amount=hours(MA_H100, 1), at_=at(a.expires))


def test_activation_is_dated_by_the_start_not_by_who_looks_when() -> None:
    a = gateway(h=10)
    late, later = al.settle(a, T0 + 7, {}), al.settle(a, T0 + DAY, {})
    assert late.history == later.history  # every reader sees the same history
    assert late.history[-1].at == max(T0, *(e.at for e in a.history))


def test_unreleased_tranches_lapse_too() -> None:
    a = al.settle(awarded(80_000), at(awarded().expires), {MA_H100: 10_000 * HOUR})
    assert a.lapsed_gpu_seconds == 70_000 * HOUR


def test_renewal_links_to_the_old_allocation_and_keeps_members() -> None:
    old = al.add_member(gateway(), by="pia", user="sam", role=Role.MEMBER, at_=T0)
    new = al.renew(old, policy(), id="a2", by="pia", amount=hours(MA_H100, 500),
                   start=old.expires, duration_days=60, justification="go on", at_=T0)  # fmt: skip
    assert new.renewal_of == "a1" and new.project == old.project and new.tier == old.tier
    assert new.members == {"pia": Role.PI, "sam": Role.MEMBER}
    assert new.state is State.AWARDED


def test_only_operators_and_reviewers_see_reviews() -> None:
    a = reviewed(open_call())
    assert len(al.visible_reviews(a, policy(), "olu")) == 3
    assert len(al.visible_reviews(a, policy(), "mona")) == 3
    assert al.visible_reviews(a, policy(), "pia") == ()


def test_close_by_pi_or_operator() -> None:
    assert al.close(awarded(), policy(), by="pia", reason="done", at_=T0).state is State.CLOSED
    assert al.close(awarded(), policy(), by="olu", reason="x", at_=T0).state is State.CLOSED


def test_history_records_who_did_what() -> None:
    whats = [e.what for e in awarded().history]
    assert whats[0] == "requested (open-call)"
    assert whats[-1].startswith("awarded")


def test_progress_reports_fall_due_after_1_3_and_9_months_and_at_expiry() -> None:
    a = awarded()  # open-call: 365 days from 1 Nov 2026
    day = lambda n: at(NOV) + n * DAY  # noqa: E731
    assert al.reports_due(a, policy(), day(29)) == []
    assert al.reports_due(a, policy(), day(30)) == [NOV + timedelta(days=30)]
    a = al.report_progress(a, by="pia", text="month 1", at_=day(35))
    assert al.reports_due(a, policy(), day(90)) == []
    late = al.reports_due(a, policy(), day(400))
    assert late == [NOV + timedelta(days=91), NOV + timedelta(days=274), a.expires]
    assert al.reports_due(gateway(), policy(), day(400)) == []  # no reports in that tier


@pytest.mark.parametrize(("days_back", "refused"), [(0, False), (1, False), (2, True), (400, True)])
def test_a_start_more_than_a_day_before_today_is_refused(days_back: int, refused: bool) -> None:
    now = T0 + 10 * HOUR
    start = date(2026, 11, 1) - timedelta(days=days_back)
    ask = functools.partial(al.request, policy(), id="a", project="p1", pi="pia", tier="gateway",
                            amount=hours(("ma-1", H100), 10), start=start, duration_days=30,
                            justification="x", at_=now)
    if not refused:
        assert ask().start == start
        return
    with pytest.raises(AccountingError) as err:
        ask()
    assert err.value.code == "start-in-past" and "2026-10-31 or later" in err.value.message
