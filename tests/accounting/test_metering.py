import pytest
from acct_builders import T0, seg

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.metering import (
    ChargePolicy,
    PreemptedCharge,
    SegmentEnd,
    UsageJournal,
    charged_seconds,
    meter,
    uncharged_window,
    uncharged_windows,
)


def test_ticks_tile_the_segment_and_stop_at_its_end() -> None:
    s = seg(end=T0 + 150)
    r1 = meter(s, None, T0 + 60)
    assert r1 is not None and (r1.start, r1.end, r1.gpu_seconds) == (T0, T0 + 60, 8 * 60)
    r2 = meter(s, r1.end, T0 + 400)  # a late tick is cut at the end
    assert r2 is not None and (r2.start, r2.end) == (T0 + 60, T0 + 150)
    assert meter(s, r2.end, T0 + 500) is None
    assert meter(s, None, T0 - 5) is None  # a tick before the start has nothing


def test_running_segment_is_metered_up_to_now() -> None:
    s = seg(end=None)
    r = meter(s, T0 + 30, T0 + 90)
    assert r is not None and (r.start, r.end) == (T0 + 30, T0 + 90)


def test_re_emitted_tick_has_the_same_key_and_is_ignored() -> None:
    s = seg(end=None)
    journal = UsageJournal()
    r = meter(s, journal.recorded_until("j1", 0), T0 + 60)
    assert r is not None and journal.add(r)
    # The driver crashes before it notes what it wrote and ticks the same interval again.
    again = meter(s, None, T0 + 60)
    assert again == r and again is not None and not journal.add(again)
    assert len(journal.records) == 1


def test_crash_between_ticks_loses_nothing() -> None:
    s = seg(end=T0 + 1000)
    journal = UsageJournal()
    for now in (T0 + 60, T0 + 120):
        r = meter(s, journal.recorded_until("j1", 0), now)
        assert r is not None
        journal.add(r)
    # Ticks at +180 … +900 were lost in a crash; the first tick after restart
    # covers from the last stored end.
    r = meter(s, journal.recorded_until("j1", 0), T0 + 1200)
    assert r is not None and (r.start, r.end) == (T0 + 120, T0 + 1000)
    journal.add(r)
    assert sum(x.gpu_seconds for x in journal.records) == 8 * 1000


@pytest.mark.parametrize(
    ("start", "code"), [(T0 + 30, "overlapping-usage"), (T0 + 90, "usage-gap")]
)
def test_journal_refuses_overlap_and_gap(start: int, code: str) -> None:
    s = seg(end=None)
    journal = UsageJournal()
    first = meter(s, None, T0 + 60)
    assert first is not None
    journal.add(first)
    bad = first._replace(start=start, end=T0 + 120)
    with pytest.raises(AccountingError) as err:
        journal.add(bad)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"gpus": 0}, "bad-segment"),
        ({"end": T0 - 1, "ended": SegmentEnd.COMPLETED}, "bad-segment"),
        ({"end": None, "ended": SegmentEnd.COMPLETED}, "bad-segment"),
        ({"end": T0 + 5, "ended": SegmentEnd.RUNNING}, "bad-segment"),
    ],
)
def test_bad_segments_are_rejected(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(AccountingError) as err:
        seg(**kwargs)  # type: ignore[arg-type]
    assert err.value.code == code


def test_bad_tick_before_segment_start() -> None:
    with pytest.raises(AccountingError) as err:
        meter(seg(), T0 - 10, T0 + 10)
    assert err.value.code == "bad-tick"


# Segment: 1000 s, preemption notice at +900, last checkpoint at +600.
P = dict(end=T0 + 1000, ended=SegmentEnd.PREEMPTED, notice=T0 + 900, checkpoint=T0 + 600)


@pytest.mark.parametrize(
    ("rule", "cap", "ended", "window"),
    [
        (PreemptedCharge.LOST_WORK, None, SegmentEnd.PREEMPTED, (T0 + 600, T0 + 1000)),
        (PreemptedCharge.LOST_WORK, 100, SegmentEnd.PREEMPTED, (T0 + 900, T0 + 1000)),
        (PreemptedCharge.GRACE, None, SegmentEnd.PREEMPTED, (T0 + 900, T0 + 1000)),
        (PreemptedCharge.WHOLE_SEGMENT, None, SegmentEnd.PREEMPTED, (T0, T0 + 1000)),
        (PreemptedCharge.NONE, None, SegmentEnd.PREEMPTED, None),
        (PreemptedCharge.LOST_WORK, None, SegmentEnd.FAILED, None),
        (PreemptedCharge.WHOLE_SEGMENT, None, SegmentEnd.TIME_LIMIT, None),
        (PreemptedCharge.WHOLE_SEGMENT, None, SegmentEnd.CANCELLED, None),
    ],
)
def test_uncharged_window_per_rule(
    rule: PreemptedCharge, cap: int | None, ended: SegmentEnd, window: tuple[int, int] | None
) -> None:
    s = seg(**{**P, "ended": ended})  # type: ignore[arg-type]
    assert uncharged_window(s, ChargePolicy(rule, cap)) == window


def test_lost_work_without_checkpoint_is_the_whole_attempt() -> None:
    s = seg(end=T0 + 1000, ended=SegmentEnd.PREEMPTED)
    assert uncharged_window(s, ChargePolicy()) == (T0, T0 + 1000)
    assert uncharged_window(s, ChargePolicy(PreemptedCharge.GRACE)) is None


def test_charged_seconds_subtracts_the_overlap_only() -> None:
    s = seg(**P)  # type: ignore[arg-type]
    windows = uncharged_windows([s], ChargePolicy())
    records = [meter(s, T0 + a, T0 + b) for a, b in ((0, 500), (500, 700), (700, 1000))]
    assert [charged_seconds(r, windows) for r in records if r] == [8 * 500, 8 * 100, 0]


def test_negative_cap_is_rejected() -> None:
    with pytest.raises(AccountingError) as err:
        ChargePolicy(max_uncharged_seconds=-1)
    assert err.value.code == "bad-charge-policy"
