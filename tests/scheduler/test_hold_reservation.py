"""``hold_reservation``: the job that held the EASY reservation in the last pass comes first
until it starts, ahead of its own class and the lower ones, and only when the knob is on."""

from __future__ import annotations

import pytest

from masnaa.scheduler import SchedulerConfig, decide
from masnaa.scheduler.decision import Decision, Reservation, WaitCode

from .builders import Scene, job, started


def two_gangs(
    held: str | None, *, free_node: bool = False, b_class: str = "normal", x_class: str = "normal"
) -> Scene:
    """Tenant ``a`` has used far more than ``b``, so fair share puts ``b``'s gang first;
    ``a``'s gang held the reservation in the pass before when ``held`` says so."""
    s = Scene(nodes=3, reserved_for=held).tenant("a").tenant("b").tenant("x")
    s.usage.charge("a", 1e7, now=0)
    for i, node in enumerate(("n0000", "n0001", "n0002")[: 2 if free_node else 3]):
        end = 100.0 * (i + 1)
        x = job(f"x{i}").gpus(8).tenant("x").limit(end).priority(x_class)
        s.running(x, node, start=0, end=end)
    s.pending(job("ga").gpus(8).tenant("a").submitted(0))
    s.pending(job("gb").gpus(8).tenant("b").priority(b_class).submitted(1))
    return s


def reserved(d: Decision) -> list[str]:
    return [r.job_id for r in d.reservations]


@pytest.mark.parametrize(("hold", "held", "first"), [
    (False, None, "gb"), (False, "ga", "gb"), (True, None, "gb"), (True, "ga", "ga"),
])
def test_the_holder_keeps_the_reservation_only_with_the_knob(
    hold: bool, held: str | None, first: str
) -> None:
    d = two_gangs(held).decide("masnaa", now=10, hold_reservation=hold)
    assert started(d) == [] and reserved(d) == [first]
    assert d.reservations[0].start_time == 100  # the first node to free up
    other = "ga" if first == "gb" else "gb"
    assert d.wait_for(other).code is not WaitCode.RESERVED


def test_a_higher_class_still_goes_ahead_of_the_holder() -> None:
    # The running jobs are of the high class too, so gb cannot stop them: it is blocked.
    s = two_gangs("ga", b_class="high", x_class="high")
    assert reserved(s.decide("masnaa", now=10, hold_reservation=True)) == ["gb"]


@pytest.mark.parametrize(("hold", "starts", "waits"), [(False, "gb", "ga"), (True, "ga", "gb")])
def test_a_holder_that_fits_starts_before_the_job_fair_share_puts_first(
    hold: bool, starts: str, waits: str
) -> None:
    d = two_gangs("ga", free_node=True).decide("masnaa", now=10, hold_reservation=hold)
    assert started(d) == [starts] and reserved(d) == [waits]


def test_fifo_backfill_reads_it_too() -> None:
    # Its line is arrival order, ga first: held, gb goes ahead of it.
    s = two_gangs("gb")
    assert reserved(s.decide("fifo-backfill", now=10)) == ["ga"]
    assert reserved(s.decide("fifo-backfill", now=10, hold_reservation=True)) == ["gb"]


def test_a_holder_that_left_the_queue_is_no_one() -> None:
    d = two_gangs("gone").decide("masnaa", now=10, hold_reservation=True)
    assert reserved(d) == ["gb"]


def test_the_hold_passes_from_decision_to_decision() -> None:
    held = Decision(reservations=[Reservation("ga", 100.0, ("n0000",))])
    assert held.reserved_for("gb", {"ga", "gb"}) == "ga"
    nothing = Decision()
    assert nothing.reserved_for("ga", {"ga"}) == "ga"  # e.g. it waited on its quota
    assert nothing.reserved_for("ga", {"gb"}) is None  # it started, or was cancelled
    assert nothing.reserved_for(None, {"gb"}) is None


def test_chained_passes_keep_the_drain_for_the_holder() -> None:
    # Pass 1 reserves for gb (fair share); a's usage then decays below b's, so without the
    # knob pass 2 hands the drain to ga; with it gb keeps it until it starts.
    for hold, second in ((False, "ga"), (True, "gb")):
        s = two_gangs(None)
        d1 = s.decide("masnaa", now=10, hold_reservation=hold)
        assert reserved(d1) == ["gb"]
        s.reserved_for = d1.reserved_for(None, s.queue)
        s.usage.charge("b", 1e8, now=10)
        d2 = decide(s.snapshot(), s.queue, 20, SchedulerConfig(hold_reservation=hold))
        assert reserved(d2) == [second]
