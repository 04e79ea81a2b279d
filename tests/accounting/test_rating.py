import random
from datetime import date
from decimal import Decimal

import pytest
from acct_builders import H100, L40S, MONTH, SITES, T0, TERMS, context, rec, seg

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import HOUR, at
from masnaa.accounting.metering import ChargePolicy, SegmentEnd, uncharged_windows
from masnaa.accounting.money import Money
from masnaa.accounting.rating import RatingContext, rate, rate_records


def test_one_line_by_hand() -> None:
    # 8 H100 for 1.5 h at 30.00 MAD/h, university: 60 % off; USD at 9.5 MAD on 30 Nov.
    (li,) = rate([rec(end=T0 + 5400)], MONTH, context(), {})
    assert li.charged_gpu_seconds == 8 * 5400 and li.gpu_hours == Decimal(12)
    assert li.gross == Money.of("360.00", "MAD")
    assert li.discount_rate == Decimal("0.60")
    assert li.discount == Money.of("216.00", "MAD")
    assert li.net == Money.of("144.00", "MAD")
    assert li.net_usd == Money.of("15.16", "USD")  # 144 / 9.5 = 15.157…


def test_records_of_a_job_group_and_round_once() -> None:
    # 3 records of 1 s on 1 GPU: 3 × 30/3600 = 0.025 → rounded once to 0.03, not 3 × 0.01.
    rs = [rec(start=T0 + i, end=T0 + i + 1, gpus=1, tenant="corp") for i in range(3)]
    (li,) = rate(rs, MONTH, context(), {})
    assert li.gross == Money.of("0.03", "MAD") and li.net == li.gross


def test_price_change_splits_lines() -> None:
    change = at(date(2026, 11, 16))
    lines = rate([rec(start=change - HOUR, end=change + HOUR, gpus=1, tenant="corp")], MONTH,
                 context(change_on=date(2026, 11, 16)), {})  # fmt: skip
    assert [(li.price.per_gpu_hour.amount, li.net.amount) for li in lines] == [
        (Decimal("30.00"), Decimal("30.00")),
        (Decimal("33.00"), Decimal("33.00")),
    ]


def test_period_clips_records() -> None:
    r = rec(start=MONTH[1] - 600, end=MONTH[1] + 600, gpus=2, tenant="corp")
    (li,) = rate([r], MONTH, context(), {})
    assert li.charged_gpu_seconds == 2 * 600
    assert rate([r], (MONTH[1], MONTH[1] + 3600), context(), {})[0].charged_gpu_seconds == 1200


def test_preempted_time_is_not_charged_but_kept() -> None:
    s = seg(end=T0 + 3600, ended=SegmentEnd.PREEMPTED, checkpoint=T0 + 2400, tenant="corp")
    windows = uncharged_windows([s], ChargePolicy())
    (li,) = rate([rec(end=T0 + 3600, tenant="corp")], MONTH, context(), windows)
    assert li.charged_gpu_seconds == 8 * 2400
    assert li.uncharged_gpu_seconds == 8 * 1200
    assert li.gross == Money.of("160.00", "MAD")


def test_site_currency_and_unknown_tenant() -> None:
    lines = rate([rec(site="ng-1", gpu_type=L40S, tenant="ngo")], MONTH, context(), {})
    assert lines[0].net == Money.of("40.00", "NGN")  # 8 h × 10 × (1 − 0.5)
    with pytest.raises(AccountingError) as err:
        rate([rec(tenant="nobody")], MONTH, context(), {})
    assert err.value.code == "unknown-tenant"


def test_a_missing_fx_rate_leaves_out_only_the_usd_view() -> None:
    ctx = context(fx_day=date(2026, 10, 15))  # no ZAR rate before 1 Nov; MAD has one
    records = [rec("j1", site="za-1", tenant="corp"), rec("j2", site="ma-1", tenant="corp")]
    za, ma = rate(records, MONTH, ctx, {})
    assert (za.net, za.net_usd) == (Money.of("240.00", "ZAR"), None)  # charged all the same
    assert ma.net_usd == Money.of("24.00", "USD")  # 240 MAD at 10 per USD
    (gap,) = ctx.missing_rates(li.currency for li in (za, ma))
    assert (gap.currency, gap.day, gap.first) == ("ZAR", date(2026, 10, 15), date(2026, 11, 1))
    assert "ZAR/USD" in gap.message and "2026-11-01" in gap.message
    assert context(fx_day=None).missing_rates(["ZAR"]) == ()  # no USD view asked: none missing


def test_fast_path_equals_reference_path_on_random_usage() -> None:
    rng = random.Random(7)
    change = date(2026, 11, 16)
    ctx: RatingContext = context(change_on=change)
    segments, records = [], []
    for j in range(300):
        start = rng.randrange(MONTH[0] - 3 * 86400, MONTH[1])
        if j % 20 == 0:  # make sure some jobs run across the price change
            start = at(change) - rng.randrange(1, 20_000)
        n = rng.randrange(1, 40)
        step = rng.choice((60, 600, 7200))
        ended = rng.choice((SegmentEnd.COMPLETED, SegmentEnd.PREEMPTED, SegmentEnd.FAILED))
        end = start + n * step
        ckpt = start + rng.randrange(0, n * step + 1) if rng.random() < 0.7 else None
        s = seg(f"j{j}", start, end, gpus=rng.choice((1, 8, 64)), gpu_type=rng.choice((H100, L40S)),
                site=rng.choice(sorted(SITES)), tenant=rng.choice(sorted(TERMS)),
                project=f"p{j % 7}", allocation=rng.choice(("a1", "a2", None)), ended=ended,
                checkpoint=ckpt)  # fmt: skip
        segments.append(s)
        records += [rec(s.job, start + k * step, start + (k + 1) * step, gpus=s.gpus,
                        gpu_type=s.gpu_type, site=s.site, tenant=s.tenant, project=s.project,
                        allocation=s.allocation) for k in range(n)]  # fmt: skip
    rng.shuffle(records)
    windows = uncharged_windows(segments, ChargePolicy())
    fast = rate(records, MONTH, ctx, windows)
    ref = rate_records(records, MONTH, ctx, windows)
    assert fast == ref
    # In job order (as a database index returns them) and in tick order (as
    # they are written), consecutive records take the cached-group path.
    assert rate(sorted(records), MONTH, ctx, windows) == ref
    assert rate(sorted(records, key=lambda r: (r.start, r.job)), MONTH, ctx, windows) == ref
    jobs = [li.job for li in fast]
    assert any(jobs.count(j) > 1 for j in jobs)  # some jobs cross the price change
    assert any(li.uncharged_gpu_seconds for li in fast)
    # The money of the fast path equals pricing every record exactly and summing.
    exact = Decimal(0)
    for li in fast:
        exact += li.price.per_gpu_hour.amount * li.charged_gpu_seconds / HOUR
    assert abs(sum(li.gross.amount for li in fast) - exact) <= Decimal("0.005") * len(fast)


def test_a_record_across_a_price_change_between_two_records_of_another_job() -> None:
    change = at(date(2026, 11, 16))
    ctx = context(change_on=date(2026, 11, 16))
    records = [
        rec("a", start=change - 300, end=change - 200, gpus=1, tenant="corp"),
        rec("b", start=change - 100, end=change + 100, gpus=2, tenant="corp"),
        rec("a", start=change - 200, end=change - 150, gpus=1, tenant="corp"),
    ]
    got = rate(records, MONTH, ctx, {})
    assert got == rate_records(records, MONTH, ctx, {})
    assert [(li.job, li.charged_gpu_seconds) for li in got] == [("a", 150), ("b", 200), ("b", 200)]
