"""Each rule of grants and balances at its edge: the last value allowed, the first refused.

A cap, a deadline or a due date is a promise to a PI or a funder, so its exact
boundary is part of the rule: a grant of exactly the tier's cap is allowed, a
report filed at the very instant a tranche was released counts, a due date that
falls on the expiry is due once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from acct_builders import H100, L40S, MONTH, NOV, T0, context, gateway, hours, policy, rec, seg

from masnaa.accounting import allocations as al
from masnaa.accounting import prices as pr
from masnaa.accounting.allocation import Allocation, Amount, Role, Tier
from masnaa.accounting.balance import (
    BalanceBook,
    choose_allocation,
    project_balances,
    wait_reason,
)
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR, at, to_second
from masnaa.accounting.metering import ChargePolicy, SegmentEnd
from masnaa.accounting.money import Money
from masnaa.accounting.rating import rate, rate_records
from masnaa.accounting.statements import build_statements, funders_report
from masnaa.domain.tenancy import TenantKind

MA_H100 = ("ma-1", H100)


def _refused(code: str, action: object) -> None:
    with pytest.raises(AccountingError) as err:
        action()  # type: ignore[operator]
    assert err.value.code == code


def test_a_request_of_exactly_the_tiers_cap_and_longest_duration_is_allowed() -> None:
    def ask(h: str, days: int) -> Allocation:
        return al.request(policy(), id="g", project="p1", pi="pia", tier="gateway",
                          amount=hours(MA_H100, h), start=NOV, duration_days=days,
                          justification="why", at_=T0)  # fmt: skip

    assert ask("10000", 92).awarded == {MA_H100: 10_000 * HOUR}
    _refused("over-tier-limit", lambda: ask("10000.001", 92))
    _refused("bad-duration", lambda: ask("10000", 93))


def test_a_tier_with_a_tranche_of_nothing_is_refused() -> None:
    _refused("bad-tier", lambda: Tier("t", tranches=(Decimal(0), Decimal(1))))
    assert Tier("t", tranches=(Decimal("0.25"), Decimal("0.75"))).tranches[0] > 0


def test_a_zero_credit_rate_is_no_rate() -> None:
    free = replace(policy(), type_credit_rates={H100: Decimal(0)})
    _refused("no-credit-rate", lambda: free.credits_per_hour(MA_H100))
    assert policy().credits_per_hour(MA_H100) == Decimal(100)


def _explore(credits: int = 1000) -> Allocation:
    return al.request(policy(), id="ex", project="p1", pi="pia", tier="explore",
                      amount=Amount(credits=Decimal(credits)), start=NOV, duration_days=365,
                      justification="explore", at_=T0)  # fmt: skip


def test_exchanging_every_credit_left_is_allowed_and_zero_credits_is_not() -> None:
    a = al.exchange(_explore(1000), policy(), by="pia", credits=Decimal(1000), pool=MA_H100,
                    at_=T0)  # fmt: skip
    assert a.credits_available == 0 and a.released() == {MA_H100: 10 * HOUR}
    _refused("negative-hours", lambda: al.exchange(_explore(), policy(), by="pia",
                                                   credits=Decimal(0), pool=MA_H100, at_=T0))


def _open_call() -> Allocation:
    a = al.request(policy(), id="oc", project="p1", pi="pia", tier="open-call",
                   amount=hours(MA_H100, 1000), start=NOV, duration_days=365,
                   justification="why", at_=T0)  # fmt: skip
    for step, who in (("admin-check", "rita"), ("technical", "tariq"), ("merit", "mona")):
        a = al.review(a, policy(), step=step, reviewer=who, approve=True, comment="", at_=T0)
    return al.award(a, policy(), by="olu", amount=hours(MA_H100, 1000), at_=T0)


def test_a_report_filed_at_the_instant_of_the_last_release_unlocks_the_next() -> None:
    a = al.report_progress(_open_call(), by="pia", text="started", at_=T0)
    a = al.release_tranche(a, policy(), by="olu", at_=T0 + DAY)
    assert a.released_tranches == 2


def test_an_extension_must_move_the_expiry_later() -> None:
    a = _open_call()
    _refused("bad-extension",
             lambda: al.extend(a, policy(), by="olu", new_expiry=a.expires, at_=T0))
    later = al.extend(a, policy(), by="olu", new_expiry=a.expires + timedelta(days=1), at_=T0)
    assert later.expires == a.expires + timedelta(days=1)


def test_a_report_at_a_due_instant_counts_for_that_due_date_not_the_one_before() -> None:
    a = _open_call()  # reports due at days 30, 91 and 274, and at expiry (day 365)
    due = [NOV + timedelta(days=d) for d in (30, 91)]
    on_time = al.report_progress(a, by="pia", text="month 1", at_=at(due[0]))
    assert al.reports_due(on_time, policy(), at(due[1]) - 1) == []
    # Filed the instant the second fell due: it answers the second, not the first.
    late = al.report_progress(a, by="pia", text="month 3", at_=at(due[1]))
    assert al.reports_due(late, policy(), at(due[1])) == [due[0]]


def test_a_report_date_on_the_expiry_is_due_once() -> None:
    tier = replace(policy().tiers["gateway"], report_after_days=(30, 60))
    p = replace(policy(), tiers={**policy().tiers, "gateway": tier})
    a = al.request(p, id="g", project="p1", pi="pia", tier="gateway",
                   amount=hours(MA_H100, 10), start=NOV, duration_days=60,
                   justification="why", at_=T0)  # fmt: skip
    assert al.reports_due(a, p, a.expires_at) == [NOV + timedelta(days=30), a.expires]


def test_a_renewal_by_a_co_pi_makes_them_its_one_pi_and_keeps_the_team() -> None:
    a = al.add_member(_open_call(), by="pia", user="cole", role=Role.CO_PI, at_=T0)
    a = al.add_member(a, by="pia", user="mo", role=Role.MEMBER, at_=T0)
    new = al.renew(a, policy(), id="oc2", by="cole", amount=hours(MA_H100, 10),
                   start=NOV + timedelta(days=365), duration_days=30, justification="more",
                   at_=T0)  # fmt: skip
    assert new.members == {"cole": Role.PI, "mo": Role.MEMBER}


def test_the_balance_book_counts_a_grant_from_the_instant_it_starts() -> None:
    book = BalanceBook(["p1"])
    book.put(gateway(h=5), T0 - 10)
    assert book.balances["p1"] == {}
    book.advance(T0)
    assert book.balances["p1"] == {MA_H100: 5 * HOUR}


def test_balances_and_the_grant_charged_ignore_other_projects_and_dead_grants() -> None:
    mine, theirs = gateway("a1", "p1", h=5), gateway("a2", "p2", h=7)
    over = replace(gateway("a3", "p1", h=9), expires=NOV - timedelta(days=1))
    grants = [mine, theirs, over]
    now = T0 + HOUR
    assert project_balances(grants, {}, now, ["p1"]) == {"p1": {MA_H100: 5 * HOUR}}
    assert choose_allocation("p1", MA_H100, grants, {}, now) == mine
    assert choose_allocation("p1", MA_H100, [theirs, over], {}, now) is None


def test_a_segment_charged_to_no_grant_credits_nothing_back_when_it_ends() -> None:
    book = BalanceBook(["p1"])
    book.put(gateway(h=10), T0)
    stopped = seg(end=T0 + 1500, ended=SegmentEnd.PREEMPTED, checkpoint=T0 + 900,
                  allocation=None)  # fmt: skip
    assert book.end_segment(stopped, ChargePolicy()) == 0
    assert book.used() == {} and book.balances["p1"] == {MA_H100: 10 * HOUR}


def test_a_grant_with_nothing_left_makes_jobs_wait_and_says_why() -> None:
    a = gateway(h=1)
    now = T0 + DAY
    assert wait_reason("p1", [a], {"a1": {MA_H100: HOUR - 1}}, now) is None
    spent = wait_reason("p1", [a], {"a1": {MA_H100: HOUR}}, now)
    assert spent is not None and spent.message == "allocation a1 exhausted; request a supplement"


def test_a_grant_is_expired_from_the_instant_of_its_expiry() -> None:
    a = gateway()
    assert wait_reason("p1", [a], {}, a.expires_at - 1) is None
    ended = wait_reason("p1", [a], {}, a.expires_at)
    assert ended is not None and ended.message.startswith("allocation a1 expired on")


def test_a_closed_grant_past_its_dates_is_no_grant_rather_than_an_expired_one() -> None:
    closed = al.close(gateway(), policy(), by="olu", reason="moved", at_=T0)
    r = wait_reason("p1", [closed], {}, closed.expires_at + DAY)
    assert r is not None and r.message == "project p1 has no allocation; request one"


def test_fractions_of_a_second_are_cut_and_a_time_that_is_not_finite_is_refused() -> None:
    assert to_second(1.7) == 1 and to_second(5) == 5
    _refused("bad-instant", lambda: to_second(float("nan")))


def test_a_charge_policy_may_forgive_no_time_but_not_less() -> None:
    assert ChargePolicy(max_uncharged_seconds=0).max_uncharged_seconds == 0
    _refused("bad-charge-policy", lambda: ChargePolicy(max_uncharged_seconds=-1))


def test_equal_amounts_are_neither_less_nor_more() -> None:
    a, b = Money.of("12.50", "MAD"), Money.of("12.50", "MAD")
    assert not a < b and a <= b and not a > b and a >= b
    assert Money.of("12.49", "MAD") < a < Money.of("12.51", "MAD")


def test_a_free_price_is_a_price_and_a_negative_one_is_refused() -> None:
    free = pr.PriceBook([pr.Price("ma-1", H100, Money.of("0", "MAD"), date(2026, 1, 1))],
                     {"ma-1": "MAD"})  # fmt: skip
    assert free.boundaries("ma-1", H100)[1][0].per_gpu_hour.amount == 0
    _refused("negative-price", lambda: pr.PriceBook(
        [pr.Price("ma-1", H100, Money.of("-0.01", "MAD"), date(2026, 1, 1))], {"ma-1": "MAD"}))


def test_the_same_exchange_rate_given_twice_for_a_day_is_one_rate() -> None:
    day = date(2026, 11, 2)
    twice = pr.ExchangeRates([pr.ExchangeRate(day, "MAD", Decimal("9.8")),
                           pr.ExchangeRate(day, "MAD", Decimal("9.80"))])  # fmt: skip
    assert twice.per_usd("MAD", day) == Decimal("9.8")
    differ = [pr.ExchangeRate(day, "MAD", Decimal("9.8")),
              pr.ExchangeRate(day, "MAD", Decimal("9.9"))]  # fmt: skip
    _refused("duplicate-rate", lambda: pr.ExchangeRates(differ))


def test_a_discount_for_every_tier_is_named_with_a_star() -> None:
    with pytest.raises(AccountingError) as err:
        pr.DiscountTable([pr.Discount(TenantKind.NGO, Decimal("0.5")),
                       pr.Discount(TenantKind.NGO, Decimal("0.4"))])  # fmt: skip
    assert err.value.code == "duplicate-discount" and "ngo/*" in err.value.message
    with pytest.raises(AccountingError) as err:
        pr.DiscountTable([pr.Discount(TenantKind.STARTUP, Decimal(2), tier="seed")])
    assert err.value.code == "bad-discount" and "startup/seed is 2" in err.value.message


def test_without_a_day_for_exchange_rates_lines_have_no_dollar_figure() -> None:
    ctx = replace(context(), fx_day=None)
    lines = rate([rec()], MONTH, ctx, {})
    assert lines and all(line.net_usd is None for line in lines)
    assert rate([rec()], MONTH, context(), {})[0].net_usd is not None


def test_a_job_moved_to_another_gpu_type_is_priced_per_type_on_the_fast_path() -> None:
    first = rec(end=T0 + HOUR)
    moved = rec(start=T0 + HOUR, end=T0 + 2 * HOUR, attempt=1, gpu_type=L40S)
    fast = rate([first, moved], MONTH, context(), {})
    assert fast == rate_records([first, moved], MONTH, context(), {})
    assert sorted(line.gpu_type for line in fast) == [H100, L40S]


@pytest.mark.parametrize("moved", [
    {"site": "za-1"},  # evacuated to another country's site
    {"allocation": "a2"},  # its first grant ran out; the next attempt charges another
])
def test_a_job_whose_next_attempt_runs_elsewhere_is_priced_there(moved: dict[str, str]) -> None:
    records = [rec(end=T0 + HOUR), rec(start=T0 + HOUR, end=T0 + 2 * HOUR, attempt=1, **moved)]
    fast = rate(records, MONTH, context(), {})
    assert fast == rate_records(records, MONTH, context(), {}) and len(fast) == 2


def test_usage_outside_the_period_makes_no_line() -> None:
    before = rec(start=T0 - HOUR, end=T0)  # ends the instant the month starts
    assert rate([before], MONTH, context(), {}) == []


def test_a_tax_rate_of_zero_is_a_rate_and_a_negative_one_is_not() -> None:
    lines = rate([rec(tenant="corp", allocation=None)], MONTH, context(), {})
    (mad,) = build_statements(lines, "corp", MONTH, {"MAD": Decimal(0)})
    assert mad.tax == Money.of("0", "MAD") and mad.total == mad.subtotal
    _refused("bad-tax-rate",
             lambda: build_statements(lines, "corp", MONTH, {"MAD": Decimal("-0.01")}))


def test_a_funders_report_counts_usage_begun_before_now_over_a_window_of_a_day_or_more() -> None:
    a = gateway(h=100)
    now = T0 + DAY
    records = [rec(start=T0, end=T0 + HOUR), rec("j2", start=now, end=now + HOUR)]
    (row,) = funders_report([a], policy(), "research", records, {}, now, burn_window_days=1)
    assert row.used_gpu_seconds == 8 * HOUR
    _refused("bad-window",
             lambda: funders_report([a], policy(), "research", records, {}, now, 0))
