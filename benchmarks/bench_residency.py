"""What residency eligibility costs a scheduling pass.

Scale (the scheduler core's benchmark scale): 100,000 pending jobs reading
~1,000 datasets, 5 sites. Jobs belong to projects; a project's jobs read the
same dataset set (``--sets`` distinct sets). The target: eligibility adds at
most 10 % to a 50 ms pass, i.e. ≤ 5 ms per pass.

Measured, side by side in one run:
- ``uncached``: ``eligible_sites`` per job, no cache (per-job cost);
- ``cold pass``: all jobs through an empty ``EligibilityCache`` (each distinct
  set computed once) — what a restart or a rules change costs, once;
- ``warm pass, stored keys``: all jobs, key kept on the job (a frozenset
  caches its hash) — what re-checking every job each pass would cost;
- ``warm pass, keys rebuilt``: the same, building each job's key again;
- ``distinct sets``: one lookup per distinct dataset set (jobs grouped by key);
- ``steady pass``: the jobs that arrived since the last pass (``--arrivals``)
  plus ``refresh(now)`` with nothing expired: the per-pass cost when the
  driver keeps each answer in ``Job.sites`` (docs/residency.md);
- ``expiry pass``: ``refresh`` on a pass where grounds expired (the sets
  whose answer changed are recomputed).

Run: ``.venv/bin/python benchmarks/bench_residency.py [--append]``
(``--append`` adds the numbers to docs/performance.md with machine and date).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from masnaa.policy import (
    Dataset,
    EligibilityCache,
    GroundKind,
    SiteView,
    TransferGround,
    dataset,
    dataset_key,
    eligible_sites,
)
from masnaa.policy.loader import load_rules

NOW = datetime(2026, 11, 25, tzinfo=UTC)
COUNTRIES = ("MA", "ZA", "NG", "KE", "EG")
SITES = tuple(SiteView(f"{c.lower()}-1", c) for c in COUNTRIES)
PASS_MS = 50.0
CLASSES = ("public", "personal", "personal", "health", "sensitive", "government",
           "health_care", "children", "financial", "mystery")


def make_datasets(rng: random.Random, n: int) -> list[Dataset]:
    rules = load_rules()
    out = []
    for i in range(n):
        country = rng.choice(COUNTRIES)
        law = rules.countries[country]
        conditions = [c for alt in law.conditions for c in alt]
        grounds = []
        for _ in range(rng.choice((0, 1, 2))):
            cond = rng.choice(conditions)
            kind = rules.condition_kinds[cond]
            grounds.append(TransferGround(country, cond, kind, f"REF-{i}",
                                          NOW + timedelta(days=rng.randint(30, 400))
                                          if kind is GroundKind.AUTHORISATION else None))
        out.append(dataset(f"ds-{i}", jurisdiction=country, data_class=rng.choice(CLASSES),
                           home_site=f"{country.lower()}-1", grounds=grounds,
                           serving_copy_countries=[country] if rng.random() < 0.3 else []))
    return out


def best_of(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--datasets", type=int, default=1_000)
    ap.add_argument("--sets", type=int, default=2_000, help="distinct dataset sets (projects)")
    ap.add_argument("--arrivals", type=int, default=1_000, help="new jobs per pass")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    rules = load_rules()
    pool = make_datasets(rng, args.datasets)
    sets = [tuple(rng.sample(pool, rng.choice((1, 1, 2, 3)))) for _ in range(args.sets)]
    jobs = [rng.choice(sets) for _ in range(args.jobs)]
    keys = [dataset_key(j) for j in jobs]
    distinct = len(set(keys))

    sample = jobs[: min(5_000, len(jobs))]
    uncached = best_of(lambda: [eligible_sites(j, SITES, rules, NOW) for j in sample], 3)
    per_job_us = uncached / len(sample) * 1e6

    def cold() -> None:
        cache = EligibilityCache()
        for j, k in zip(jobs, keys, strict=True):
            cache.get(j, SITES, rules, NOW, key=k)

    cold_s = best_of(cold, 1)
    warm = EligibilityCache()
    for j, k in zip(jobs, keys, strict=True):
        warm.get(j, SITES, rules, NOW, key=k)

    def warm_stored() -> None:
        get = warm.get
        for j, k in zip(jobs, keys, strict=True):
            get(j, SITES, rules, NOW, key=k)

    def warm_rebuilt() -> None:
        get = warm.get
        for j in jobs:
            get(j, SITES, rules, NOW)

    arrivals = [rng.choice(sets) for _ in range(args.arrivals)]
    distinct_sets = {k: j for j, k in zip(jobs, keys, strict=True)}

    def distinct_pass() -> None:
        get = warm.get
        for k, j in distinct_sets.items():
            get(j, SITES, rules, NOW, key=k)

    def steady_pass() -> None:
        get = warm.get
        for j in arrivals:
            get(j, SITES, rules, NOW)
        assert not warm.refresh(NOW)

    expiring = sum(1 for k in distinct_sets if warm.get(distinct_sets[k], SITES, rules, NOW,
                                                        key=k).valid_until is not None)
    later = NOW + timedelta(days=400)

    stored_s = best_of(warm_stored, 5)
    rebuilt_s = best_of(warm_rebuilt, 5)
    distinct_s = best_of(distinct_pass, 5)
    steady_s = statistics.median(best_of(steady_pass, 3) for _ in range(5))
    t0 = time.perf_counter()
    recomputed = len(warm.refresh(later))
    expiry_s = time.perf_counter() - t0

    rows = [
        ("uncached, per job", f"{per_job_us:.1f} µs", f"{per_job_us * args.jobs / 1e3:.0f} ms "
         f"for {args.jobs:,} jobs"),
        (f"cold pass ({distinct:,} distinct sets computed)", f"{cold_s * 1e3:.1f} ms",
         "once per rules/sites change or restart"),
        ("warm pass, stored keys", f"{stored_s * 1e3:.1f} ms",
         f"{stored_s * 1e3 / PASS_MS:.0%} of a {PASS_MS:.0f} ms pass"),
        ("warm pass, keys rebuilt", f"{rebuilt_s * 1e3:.1f} ms",
         f"{rebuilt_s * 1e3 / PASS_MS:.0%} of a {PASS_MS:.0f} ms pass"),
        (f"distinct sets ({distinct:,} lookups)", f"{distinct_s * 1e3:.2f} ms",
         f"{distinct_s * 1e3 / PASS_MS:.1%} of a {PASS_MS:.0f} ms pass"),
        (f"steady pass ({args.arrivals:,} arrivals + refresh)", f"{steady_s * 1e3:.2f} ms",
         f"{steady_s * 1e3 / PASS_MS:.1%} of a {PASS_MS:.0f} ms pass"),
        (f"expiry pass ({recomputed:,} of {expiring:,} sets with expiring grounds)",
         f"{expiry_s * 1e3:.1f} ms", "only on a pass where grounds expired"),
    ]
    print(f"residency eligibility: {args.jobs:,} jobs, {args.datasets:,} datasets, "
          f"{len(SITES)} sites, {distinct:,} distinct dataset sets")
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")
    if args.append:
        doc = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
        with doc.open("a") as f:
            f.write(f"\n## Residency eligibility (benchmarks/bench_residency.py)\n\n"
                    f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
                    f"CPython {platform.python_version()}; {args.jobs:,} jobs, "
                    f"{args.datasets:,} datasets, {len(SITES)} sites, {distinct:,} distinct "
                    f"sets, {args.arrivals:,} arrivals per pass.\n\n"
                    "| measure | time | note |\n|---|---|---|\n")
            for name, value, note in rows:
                f.write(f"| {name} | {value} | {note} |\n")


if __name__ == "__main__":
    main()
