"""Rating throughput: a month of usage records → statements' line items.

Target (issue 4): 10 million usage records rated in ≤ 60 s on a 2-core
machine. The records are synthetic but shaped like production: jobs of 1–64
GPUs at five sites, ticked every 60 s, some preempted, a price change in the
middle of the month, clipped to the month.

Usage:  .venv/bin/python benchmarks/bench_rating.py [--records 10000000] [--check 200000]
        [--append docs/performance.md]
``--check N`` also rates the first N records with the per-record reference
path and asserts both paths give identical line items.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal

from masnaa.accounting.instants import at
from masnaa.accounting.metering import (
    ChargePolicy,
    Segment,
    SegmentEnd,
    UsageRecord,
    uncharged_windows,
)
from masnaa.accounting.money import Money
from masnaa.accounting.prices import (
    DEFAULT_DISCOUNTS,
    DiscountTable,
    ExchangeRate,
    ExchangeRates,
    Price,
    PriceBook,
    TenantTerms,
)
from masnaa.accounting.rating import RatingContext, aggregate, price_lines, rate, rate_records
from masnaa.domain.tenancy import TenantKind

SITES = {"ma-1": "MAD", "za-1": "ZAR", "ng-1": "NGN", "ke-1": "KES", "eg-1": "EGP"}
TYPES = ("h100-sxm-80gb", "h200", "l40s")
TICK = 60


def build(n_records: int, seed: int) -> tuple[list[UsageRecord], list[Segment], RatingContext]:
    rng = random.Random(seed)
    month = (at(date(2026, 11, 1)), at(date(2026, 12, 1)))
    tenants = {f"t{i:03d}": TenantTerms(rng.choice(list(TenantKind))) for i in range(300)}
    names = sorted(tenants)
    records: list[UsageRecord] = []
    segments: list[Segment] = []
    j = 0
    while len(records) < n_records:
        j += 1
        tenant = rng.choice(names)
        site = rng.choice(list(SITES))
        gpu_type = rng.choice(TYPES)
        gpus = rng.choice((1, 1, 2, 4, 8, 8, 16, 32, 64))
        start = rng.randrange(month[0] - 86_400, month[1])
        ticks = min(rng.randrange(1, 3_000), n_records - len(records))
        end = start + ticks * TICK
        preempted = rng.random() < 0.05
        seg = Segment(
            f"job-{j}",
            0,
            start,
            end,
            gpus,
            gpu_type,
            site,
            tenant,
            f"{tenant}-p",
            f"alloc-{tenant}",
            SegmentEnd.PREEMPTED if preempted else SegmentEnd.COMPLETED,
            last_checkpoint=start + (ticks // 2) * TICK if preempted else None,
        )
        segments.append(seg)
        for k in range(ticks):
            records.append(
                UsageRecord(
                    seg.job,
                    0,
                    start + k * TICK,
                    start + (k + 1) * TICK,
                    gpus,
                    gpu_type,
                    site,
                    tenant,
                    seg.project,
                    seg.allocation,
                )
            )
    prices = []
    mid = date(2026, 11, 16)
    for site, cur in SITES.items():
        for t in TYPES:
            prices.append(Price(site, t, Money.of("30.00", cur), date(2026, 1, 1), mid))
            prices.append(Price(site, t, Money.of("32.50", cur), mid, None))
    fx = ExchangeRates(
        ExchangeRate(date(2026, 11, 30), c, Decimal(r))
        for c, r in (
            ("MAD", "9.2"),
            ("ZAR", "17.6"),
            ("NGN", "1530"),
            ("KES", "129"),
            ("EGP", "48.7"),
        )
    )
    ctx = RatingContext(
        PriceBook(prices, SITES), DiscountTable(DEFAULT_DISCOUNTS), tenants, fx, date(2026, 11, 30)
    )
    return records, segments, ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--check", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--append", metavar="FILE", help="append the result line to FILE")
    args = ap.parse_args()
    month = (at(date(2026, 11, 1)), at(date(2026, 12, 1)))

    t0 = time.perf_counter()
    records, segments, ctx = build(args.records, args.seed)
    t1 = time.perf_counter()
    windows = uncharged_windows(segments, ChargePolicy())
    totals = aggregate(records, month, ctx.prices, windows)
    t2 = time.perf_counter()
    lines = price_lines(totals, ctx)
    t3 = time.perf_counter()
    n = len(records)
    assert sum(li.charged_gpu_seconds + li.uncharged_gpu_seconds for li in lines) == sum(
        max(0, min(r.end, month[1]) - max(r.start, month[0])) * r.gpus for r in records
    ), "rated GPU-seconds differ from the records'"
    summary = (
        f"bench_rating: {n:,} records ({len(segments):,} jobs) → {len(lines):,} line items in "
        f"{t3 - t1:.1f} s (aggregate {t2 - t1:.1f} s, money {t3 - t2:.2f} s), "
        f"{n / (t3 - t1) / 1e6:.2f} M records/s, one core; target 10 M in ≤ 60 s"
    )
    print(f"machine: {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"building the records (not rating): {t1 - t0:.1f} s")
    print(summary)
    if args.check:
        sub = records[: args.check]
        c0 = time.perf_counter()
        ref = rate_records(sub, month, ctx, windows)
        c1 = time.perf_counter()
        fast = rate(sub, month, ctx, windows)
        c2 = time.perf_counter()
        assert ref == fast, "fast and reference rating differ"
        print(
            f"check on {len(sub):,} records: identical line items; reference "
            f"{c1 - c0:.2f} s, fast {c2 - c1:.2f} s ({(c1 - c0) / (c2 - c1):.1f}× faster)"
        )
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write(
                f"\n- {datetime.now(UTC):%Y-%m-%d} ({platform.machine()}, "
                f"CPython {sys.version.split()[0]}): {summary}.\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
