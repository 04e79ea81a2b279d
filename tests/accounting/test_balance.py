import dataclasses
import random
from datetime import date, timedelta

import pytest
from acct_builders import H100, L40S, T0, gateway, hours, policy, rec, seg

from masnaa.accounting import allocations as al
from masnaa.accounting.allocation import LIVE, Allocation, State
from masnaa.accounting.balance import (
    BalanceBook,
    burn_down,
    choose_allocation,
    exhausted_at,
    overdraft,
    overdraft_bound,
    project_balances,
    total,
    used_by_allocation,
    wait_reason,
)
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR, at, day_of
from masnaa.accounting.metering import (
    ChargePolicy,
    SegmentEnd,
    UsageJournal,
    meter,
    uncharged_windows,
)

MA_H100 = ("ma-1", H100)
MA_L40S = ("ma-1", L40S)


def test_balances_for_the_scheduler_snapshot() -> None:
    a1 = gateway("a1", "p1", h=10)
    a2 = gateway("a2", "p1", h=5, pool=("ma-1", L40S))
    b1 = gateway("b1", "p2", h=1)
    used = used_by_allocation([rec(end=T0 + 1800, gpus=8)], {})  # 4 GPU-hours on a1
    bal = project_balances([a1, a2, b1], used, T0 + HOUR, limited=["p1", "p2", "p3"])
    # Per pool: the scheduler starts a job only where its project has time left.
    assert bal == {
        "p1": {MA_H100: 6 * HOUR, MA_L40S: 5 * HOUR},
        "p2": {MA_H100: 1 * HOUR},
        "p3": {},
    }
    assert total(bal["p1"]) == (10 - 4 + 5) * HOUR
    assert "postpaid" not in bal  # projects not limited are absent: not limited
    # Before the start and at the expiry, nothing is usable.
    assert project_balances([a1], used, T0 - 1, ["p1"]) == {"p1": {}}
    assert project_balances([a1], used, at(a1.expires), ["p1"]) == {"p1": {}}


def test_several_allocations_of_a_project_add_up_per_pool() -> None:
    # Two grants in the same pool and one elsewhere; one pool of a1 is overdrawn,
    # which takes nothing from a2's time in the same pool.
    a1 = gateway("a1", "p1", h=10)
    a2 = gateway("a2", "p1", h=3)
    a3 = gateway("a3", "p1", h=2, pool=MA_L40S)
    used = {"a1": {MA_H100: 12 * HOUR}, "a3": {MA_L40S: 1 * HOUR}}
    assert project_balances([a1, a2, a3], used, T0, ["p1"]) == {
        "p1": {MA_H100: 3 * HOUR, MA_L40S: 1 * HOUR}
    }


def test_uncharged_preempted_time_does_not_use_the_grant() -> None:
    s = seg(end=T0 + HOUR, ended=SegmentEnd.PREEMPTED, checkpoint=T0 + 900)
    w = uncharged_windows([s], ChargePolicy())
    used = used_by_allocation([rec(end=T0 + HOUR)], w)
    assert used == {"a1": {MA_H100: 8 * 900}}


def test_overdraft_is_bounded_by_running_time_limits() -> None:
    a = gateway(h=1)
    used = {"a1": {MA_H100: 3 * HOUR}}
    assert overdraft(a, used["a1"]) == 2 * HOUR
    assert project_balances([a], used, T0, ["p1"]) == {"p1": {}}
    assert overdraft_bound([(8, T0 + 600), (4, T0 - 5)], T0) == 8 * 600


def test_job_charges_the_allocation_expiring_first_with_time_left() -> None:
    early = gateway("early", h=1)
    late = al.request(policy(), id="late", project="p1", pi="pia", tier="gateway",
                      amount=hours(MA_H100, 10), start=date(2026, 11, 1), duration_days=90,
                      justification="x", at_=T0)  # fmt: skip
    assert choose_allocation("p1", MA_H100, [late, early], {}, T0).id == "early"  # type: ignore[union-attr]
    spent = {"early": {MA_H100: HOUR}}
    assert choose_allocation("p1", MA_H100, [late, early], spent, T0).id == "late"  # type: ignore[union-attr]
    assert choose_allocation("p1", ("ma-1", L40S), [late, early], {}, T0) is None


def test_wait_messages() -> None:
    a = gateway("a1", h=2)
    records = [rec(start=T0 + DAY * d, end=T0 + DAY * d + 1800, gpus=4) for d in range(19, 25)]
    used = used_by_allocation(records, {})
    when = exhausted_at(a, records, {})
    assert when is not None
    r = wait_reason("p1", [a], used, T0 + 25 * DAY, {"a1": when})
    assert r is not None and r.allocation == "a1"
    assert r.message == "allocation a1 exhausted on 2026-11-20; request a supplement"
    assert wait_reason("p1", [a], {}, T0 + DAY) is None
    r = wait_reason("p1", [a], {}, at(a.expires) + 1)
    assert r is not None
    assert r.message == f"allocation a1 expired on {a.expires}; request a renewal"
    assert wait_reason("p1", [a], {}, T0 - DAY).message.startswith("allocation a1 starts on")  # type: ignore[union-attr]
    assert wait_reason("p9", [a], {}, T0).message == "project p9 has no allocation; request one"  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [State.REQUESTED, State.IN_REVIEW, State.APPROVED])
def test_an_allocation_not_yet_awarded_names_its_state_in_a_phrase_of_its_own(
    state: State,
) -> None:
    a = dataclasses.replace(gateway("a1"), state=state)
    r = wait_reason("p1", [a], {}, T0)
    assert r is not None and r.why.key == f"alloc-{state}"  # the state is a word to translate
    said = state.value.replace("-", " ")
    assert r.message == f"allocation a1 is {said}, not yet awarded"


def test_exhausted_at_is_the_second_the_total_is_reached() -> None:
    a = gateway(h=1)  # 3600 GPU-s
    records = [rec(end=T0 + 300, gpus=4), rec(start=T0 + 300, end=T0 + 900, gpus=4)]
    # 1200 GPU-s in the first record, then 4 GPU-s per second: 2400 more take 600 s.
    assert exhausted_at(a, records, {}) == T0 + 900
    assert exhausted_at(a, records[:1], {}) is None


def test_burn_down_day_by_day() -> None:
    a = gateway(h=100)
    records = [
        rec(start=T0 + DAY - 1800, end=T0 + DAY + 1800, gpus=2),  # across midnight: 1 h each day
        rec(start=T0 + 2 * DAY, end=T0 + 2 * DAY + HOUR, gpus=8),
        rec(allocation="other", end=T0 + HOUR),
    ]
    points = burn_down(a, records, {}, T0 + 2 * DAY + HOUR)
    assert [(p.day.day, p.used_gpu_seconds // HOUR) for p in points] == [(1, 1), (2, 2), (3, 10)]
    assert points[-1].remaining_gpu_seconds == 90 * HOUR
    assert burn_down(a, records, {}, T0) == []


def test_balance_book_matches_recomputing_every_pass() -> None:
    rng = random.Random(3)
    pol = policy()
    projects = ["p0", "p1", "p2"]
    book = BalanceBook(projects)
    allocs: dict[str, Allocation] = {}
    records = []
    positive = 0
    now = T0 - DAY
    book.advance(now)
    for step in range(400):
        now += rng.randrange(0, 6 * HOUR)
        op = rng.random()
        if op < 0.15 or not allocs:
            i = len(allocs)
            # From yesterday (the earliest start a request may have) to 19 days ahead.
            start = day_of(now) + timedelta(days=rng.randrange(-1, 19))
            a = al.request(pol, id=f"a{i}", project=rng.choice([*projects, "postpaid"]),
                           pi="pia", tier="gateway", amount=hours(MA_H100, rng.randrange(1, 50)),
                           start=start, duration_days=rng.randrange(1, 15), justification="x",
                           at_=now)  # fmt: skip
            allocs[a.id] = a
            book.put(a, now)
        elif op < 0.25:
            a = rng.choice(list(allocs.values()))
            if a.state in LIVE and a.supplements == 0:
                a = al.supplement(a, pol, by="olu", amount=hours(MA_L40S, 1), at_=now)
                allocs[a.id] = a
                book.put(a, now)
        else:
            a = rng.choice(list(allocs.values()))
            r = rec(f"j{step}", now - rng.randrange(1, HOUR), now, gpus=rng.choice((1, 8)),
                    gpu_type=rng.choice((H100, L40S)), allocation=a.id)  # fmt: skip
            records.append(r)
            book.charge(r, {})
        book.advance(now)
        expected = project_balances(allocs.values(), used_by_allocation(records, {}), now, projects)
        assert dict(book.balances) == expected, step
        positive += any(expected.values())
    assert positive > 100  # the comparison was not between zeros only
    with pytest.raises(AccountingError):
        book.advance(now - 1)


def test_balance_book_credits_preempted_time_when_the_segment_ends() -> None:
    a = gateway(h=10)
    book = BalanceBook(["p1"])
    book.put(a, T0)
    running = seg(end=None)
    journal = UsageJournal()
    for now in (T0 + 600, T0 + 1200):
        r = meter(running, journal.recorded_until("j1", 0), now)
        assert r is not None and journal.add(r)
        book.charge(r, {})  # ending unknown: charged in full
    ended = seg(end=T0 + 1500, ended=SegmentEnd.PREEMPTED, checkpoint=T0 + 900)
    last = meter(ended, journal.recorded_until("j1", 0), T0 + 1500)
    assert last is not None and journal.add(last)
    book.charge(last, {})
    assert book.end_segment(ended, ChargePolicy()) == 8 * 600
    windows = uncharged_windows([ended], ChargePolicy())
    expected = project_balances([a], used_by_allocation(journal.records, windows), T0, ["p1"])
    assert dict(book.balances) == expected == {"p1": {MA_H100: 10 * HOUR - 8 * 900}}
