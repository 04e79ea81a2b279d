"""Properties over random job histories: preemptions, restarts, re-emitted
and lost ticks. Usage is exact; charged = held − the documented uncharged
preempted time; records, balances and statements reconcile."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from acct_builders import H100, L40S, T0, context, gateway, seg
from hypothesis import given, settings
from hypothesis import strategies as st

from masnaa.accounting.balance import project_balances, remaining, used_by_allocation
from masnaa.accounting.instants import DAY
from masnaa.accounting.metering import (
    ChargePolicy,
    PreemptedCharge,
    Segment,
    SegmentEnd,
    UsageJournal,
    meter,
    uncharged_windows,
)
from masnaa.accounting.rating import rate
from masnaa.accounting.statements import build_statements

HORIZON = T0 + 4 * DAY
ENDINGS = [e for e in SegmentEnd if e is not SegmentEnd.RUNNING]
TAX = dict.fromkeys(("MAD", "ZAR", "NGN", "KES", "EGP", "USD"), Decimal("0.2"))


@st.composite
def histories(draw: st.DrawFn) -> list[Segment]:
    """Jobs of 1–4 attempts; every attempt but the last ends preempted (then
    requeued), the last ends any way or still runs at the horizon."""
    segments = []
    for j in range(draw(st.integers(1, 6))):
        t = T0 + draw(st.integers(0, DAY))
        attempts = draw(st.integers(1, 4))
        gpus = draw(st.sampled_from((1, 2, 8, 16)))
        tenant = draw(st.sampled_from(("uni", "seed", "corp", "ngo")))
        pool = draw(st.sampled_from((("ma-1", H100), ("za-1", L40S), ("ng-1", H100))))
        for k in range(attempts):
            dur = draw(st.integers(0, DAY // 2))
            last = k == attempts - 1
            if last and draw(st.booleans()):
                ended, end = SegmentEnd.RUNNING, None
            else:
                ended = SegmentEnd.PREEMPTED if not last else draw(st.sampled_from(ENDINGS))
                end = t + dur
            ckpt = notice = None
            if ended is SegmentEnd.PREEMPTED:
                assert end is not None
                if draw(st.booleans()):
                    ckpt = t + draw(st.integers(0, dur))
                notice = end - draw(st.integers(0, min(dur, 300)))
            segments.append(
                seg(
                    f"j{j}",
                    t,
                    end,
                    attempt=k,
                    gpus=gpus,
                    gpu_type=pool[1],
                    site=pool[0],
                    tenant=tenant,
                    project=f"p-{tenant}",
                    allocation=f"a-{tenant}",
                    ended=ended,
                    notice=notice,
                    checkpoint=ckpt,
                )
            )
            if end is None:
                break
            t = end + draw(st.integers(0, 3600))  # requeued, waits, restarts
    return segments


@dataclass
class Faults:
    lose_before_commit: float
    crash_after_commit: float
    duplicate: float


def drive(segments: list[Segment], ticks: list[int], faults: Faults, seed: int) -> UsageJournal:
    """A driver that ticks every segment, with faults; its memory of what is
    stored is lost on a crash and reloaded from the journal (the store). The
    last tick, at the horizon, is the first tick after the last restart: it
    runs without faults and must catch up on everything."""
    rng = random.Random(seed)
    journal = UsageJournal()
    memory: dict[tuple[str, int], int | None] = {}
    for i, now in enumerate([*ticks, HORIZON]):
        if i == len(ticks):
            faults = Faults(0, 0, 0)
        for s in segments:
            r = meter(s, memory.get(s.key), now)
            if r is None:
                continue
            if rng.random() < faults.lose_before_commit:
                memory = {k: journal.recorded_until(*k) for k in memory}  # restart
                continue
            assert journal.add(r)
            if rng.random() < faults.duplicate:
                assert not journal.add(r)  # re-emitted: same key, ignored
            if rng.random() < faults.crash_after_commit:
                # Crash before the driver noted the write; on restart it replays the tick …
                assert not journal.add(meter(s, memory.get(s.key), now))  # type: ignore[arg-type]
                memory = {k: journal.recorded_until(*k) for k in memory}  # … and reloads.
                memory[s.key] = journal.recorded_until(*s.key)
                continue
            memory[s.key] = r.end
    return journal


def expected_uncharged(s: Segment, rule: PreemptedCharge) -> int:
    """The documented rule, written out independently of ``uncharged_window``."""
    if s.ended is not SegmentEnd.PREEMPTED or s.end is None or rule is PreemptedCharge.NONE:
        return 0
    if rule is PreemptedCharge.WHOLE_SEGMENT:
        free = s.end - s.start
    elif rule is PreemptedCharge.GRACE:
        free = s.end - (s.preempt_notice if s.preempt_notice is not None else s.end)
    else:
        free = s.end - (s.last_checkpoint if s.last_checkpoint is not None else s.start)
    return s.gpus * free


@settings(max_examples=120, deadline=None)
@given(
    segments=histories(),
    ticks=st.lists(st.integers(T0, HORIZON), max_size=25).map(sorted),
    faults=st.builds(
        Faults, st.sampled_from((0, 0.2)), st.sampled_from((0, 0.2)), st.sampled_from((0, 0.3))
    ),
    rule=st.sampled_from(list(PreemptedCharge)),
    split=st.integers(T0, HORIZON),
    seed=st.integers(0, 2**32),
)
def test_charged_equals_held_minus_uncharged_and_totals_reconcile(
    segments: list[Segment],
    ticks: list[int],
    faults: Faults,
    rule: PreemptedCharge,
    split: int,
    seed: int,
) -> None:
    journal = drive(segments, ticks, faults, seed)
    records = journal.records

    # 1. Usage is exact: every segment's records tile what it held up to the horizon.
    held = 0
    for s in segments:
        end = HORIZON if s.end is None else s.end
        mine = sorted((r for r in records if (r.job, r.attempt) == s.key), key=lambda r: r.start)
        assert sum(r.gpu_seconds for r in mine) == s.gpus * (end - s.start)
        assert all(a.end == b.start for a, b in itertools.pairwise(mine))
        held += s.gpus * (end - s.start)

    # 2. Charged = held − documented uncharged preempted time, in rating …
    policy = ChargePolicy(rule)
    windows = uncharged_windows(segments, policy)
    uncharged = sum(expected_uncharged(s, rule) for s in segments)
    period = (T0, HORIZON)
    ctx = context(change_on=date(2026, 11, 2))
    lines = rate(records, period, ctx, windows)
    assert sum(li.charged_gpu_seconds for li in lines) == held - uncharged
    assert sum(li.uncharged_gpu_seconds for li in lines) == uncharged

    # … and in the allocations' usage.
    used = used_by_allocation(records, windows)
    assert sum(sum(p.values()) for p in used.values()) == held - uncharged

    # 3. Two consecutive periods add up to the whole.
    a, b = rate(records, (T0, split), ctx, windows), rate(records, (split, HORIZON), ctx, windows)
    assert sum(li.charged_gpu_seconds for li in a + b) == held - uncharged

    # 4. Statements reconcile with line items, per tenant and currency.
    for tenant in {s.tenant for s in segments}:
        mine_lines = [li for li in lines if li.tenant == tenant]
        sts = build_statements(lines, tenant, period, TAX)
        assert sum(st_.charged_gpu_seconds for st_ in sts) == sum(
            li.charged_gpu_seconds for li in mine_lines
        )
        for st_ in sts:
            assert st_.subtotal.amount == sum(li.net.amount for li in st_.lines)
            assert st_.gross.amount - st_.discount.amount == st_.subtotal.amount
            assert st_.total.amount == st_.subtotal.amount + st_.tax.amount

    # 5. Balances = released − charged, per allocation, matching the line items.
    allocs = [gateway(f"a-{t}", f"p-{t}", h=200, pool=pool)
              for t in ("uni", "seed", "corp", "ngo")
              for pool in [next(((s.site, s.gpu_type) for s in segments if s.tenant == t),
                                ("ma-1", H100))]]  # fmt: skip
    by_alloc: dict[str, int] = {}
    for li in lines:
        assert li.allocation is not None
        by_alloc[li.allocation] = by_alloc.get(li.allocation, 0) + li.charged_gpu_seconds
    balances = project_balances(allocs, used, T0 + 1, [a.project for a in allocs])
    for al_ in allocs:
        pools = remaining(al_, used.get(al_.id, {}))
        assert sum(pools.values()) == 200 * 3600 - by_alloc.get(al_.id, 0)
        # Usage in a pool the grant does not cover is that pool's overdraft; it
        # does not eat into the other pools.
        assert balances[al_.project] == {p: v for p, v in pools.items() if v > 0}
