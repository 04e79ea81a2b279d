"""What the allocation check adds to a live scheduling pass, at the core's benchmark scale.

Scene: ``bench_decide``'s (10,000 GPUs, 5,000 running, 100,000 pending of 60
tenants' projects). Balances come from a real ``BalanceBook`` fed by a real
store: a SQLite database with ``--allocations`` allocations (one per project
of the scene, the rest for other projects), loaded by ``service.metering.Meter``.

Per pass the control loop adds, for accounting:
- ``Meter.sync`` (one probe of the store: max allocation seq, projects,
  tenants, terms; nothing changed, so no reload) and ``BalanceBook.advance``;
- ``decide`` reading ``Snapshot.balances`` (a dictionary lookup per job it
  reaches).

It prints p50 of ``decide`` without and with balances (interleaved, same
state), the p50 of the sync, and the overhead ratio; the target (issue 4) is
≤ 10 %. ``--append`` adds a row to docs/performance.md.

    .venv/bin/python benchmarks/bench_admission.py [--passes 30] [--allocations 10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import platform
import statistics
import tempfile
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from masnaa.accounting.allocation import AllocationPolicy, Amount
from masnaa.accounting.allocations import request
from masnaa.scheduler import SchedulerConfig, decide
from masnaa.service import accounting as acct
from masnaa.service.metering import Meter
from masnaa.store import accounting as t
from masnaa.store import models as m
from masnaa.store.db import make_engine, read_session_factory, session_factory, upgrade

HERE = Path(__file__).parent


def _bench_decide():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_decide", HERE / "bench_decide.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def seed_store(url: str, projects: list[str], total: int, now: float) -> None:
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    policy = AllocationPolicy.default({}, frozenset({"ops"}))
    names = projects + [f"x{i:05d}-p" for i in range(max(0, total - len(projects)))]
    with session_factory(engine)() as s, s.begin():
        for i, name in enumerate(names):
            tenant = name.removesuffix("-p")
            a = request(
                policy,
                id=f"alloc-{i:05d}",
                project=name,
                tier="purchase",
                pi="ops",
                amount=Amount({("site-1", "h100-sxm-80gb"): Decimal(1000 + i % 5000)}),
                start=date(1970, 1, 1),
                duration_days=30,
                justification="bench",
                at_=int(now),
            )
            s.add(
                t.AllocationRow(
                    id=a.id,
                    tenant=tenant,
                    project=name,
                    tier=a.tier,
                    programme="commercial",
                    state=a.state.value,
                    start=a.start,
                    expires=a.expires,
                    seq=i + 1,
                    doc=acct.to_doc(a),
                    updated_at=int(now),
                )
            )
        s.add(m.Tenant(name="t-none", kind="startup", created_at=now))
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=30)
    ap.add_argument("--allocations", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--append", action="store_true", help="append to docs/performance.md")
    args = ap.parse_args()
    bd = _bench_decide()
    snapshot, pending, fake = bd.build(args.seed)
    now = 1_000_000.0
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite"
        seed_store(url, sorted(fake), args.allocations, now)
        engine = make_engine(url, pool_size=2)
        meter = Meter(read_session_factory(engine), session_factory(engine))
        t0 = time.perf_counter()
        with meter.read() as s:
            meter.load(s, now)
            # The scene's projects are enforced (its tenants are not in the store's tenants).
            meter.book = meter.book.__class__(sorted(fake))
            for a in meter.allocs.values():
                meter.book.put(a, int(now))
        load_ms = (time.perf_counter() - t0) * 1000
        balances = meter.balances
        funded = dataclasses.replace(snapshot, balances=balances)
        gc.collect()
        gc.freeze()
        config = SchedulerConfig()
        plain_ms, funded_ms, sync_ms = [], [], []
        for i in range(args.passes):
            at_ = now + 10 * i
            t0 = time.perf_counter()
            decide(snapshot, pending, at_, config)
            plain_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            meter.sync(at_)
            sync_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            d = decide(funded, pending, at_, config)
            funded_ms.append((time.perf_counter() - t0) * 1000)
        engine.dispose()
    held = sum(1 for w in d.waiting.values() if w.code.value == "allocation-exhausted")
    p_plain, p_funded = statistics.median(plain_ms), statistics.median(funded_ms)
    p_sync = statistics.median(sync_ms)
    ratio = (p_funded + p_sync) / p_plain - 1
    print(f"allocations in the store: {args.allocations}; book loaded in {load_ms:.0f} ms")
    print(f"decide p50 without balances {p_plain:7.2f} ms")
    print(f"decide p50 with balances    {p_funded:7.2f} ms   ({held} jobs held for allocation)")
    print(f"Meter.sync p50 (no change)  {p_sync:7.2f} ms")
    print(f"admission overhead (decide + sync, p50): {ratio:+.1%}   target ≤ +10 %")
    if args.append:
        line = (
            f"\n### Admission cost of allocations ({datetime.now():%Y-%m-%d}, "
            f"{platform.machine()}, {platform.python_version()})\n\n"
            f"`benchmarks/bench_admission.py --passes {args.passes} --allocations "
            f"{args.allocations}`: bench_decide's scene; decide p50 {p_plain:.1f} ms without "
            f"balances, {p_funded:.1f} ms with; `Meter.sync` {p_sync:.2f} ms per pass; "
            f"overhead **{ratio:+.1%}** (target ≤ +10 %); book of {args.allocations} "
            f"allocations loaded from SQLite in {load_ms:.0f} ms.\n"
        )
        with (HERE.parent / "docs" / "performance.md").open("a") as f:
            f.write(line)


if __name__ == "__main__":
    main()
