"""Metering through a real control loop with the local executor: usage records tile each run
to the second across a restart of the loop (no double count, no loss), the book's balance and
the Prometheus counter follow them, statements reconcile with them, a preempted run is
recorded but credited back, and a project whose allocation is exhausted waits with a reason
naming it until a supplement arrives."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select, update

from live_loop import drive
from masnaa.accounting import allocations as core
from masnaa.accounting.metering import UsageRecord
from masnaa.accounting.statements import build_statements
from masnaa.service import accounting as acct
from masnaa.service import terms
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metering import Meter, _insert_record
from masnaa.service.metrics import Metrics
from masnaa.service.statements import statement_lines
from masnaa.store import accounting as t
from masnaa.store import models as m
from service.conftest import Factory

POOL = ("local", "virtual-gpu")


def make_loop(factory: Factory, metrics: Metrics | None = None) -> ControlLoop:
    config = LoopConfig(
        db_url=factory.url,
        home=factory.home,
        tick=0.05,
        kill_grace=0.5,
        cancel_grace=0.5,
        meter_interval=0.3,
    )
    return ControlLoop(config, engine=factory.engine, metrics=metrics or Metrics())



def ended(factory: Factory, job: str) -> Callable[[], bool]:
    return lambda: factory.jobs()[job].state in ("succeeded", "failed", "cancelled")


def records(factory: Factory, job: str) -> list[t.UsageRecordRow]:
    with factory.sessions() as s:
        return list(
            s.scalars(
                select(t.UsageRecordRow)
                .where(t.UsageRecordRow.job_id == job)
                .order_by(t.UsageRecordRow.start)
            )
        )


def grant(factory: Factory, hours: str, tier: str = "purchase") -> str:
    with factory.sessions() as s, s.begin():
        a = acct.request_allocation(
            s,
            factory.caller,
            project="local/default",
            tier=tier,
            amount=acct.amount_of([(*POOL, Decimal(hours))], Decimal(0)),
            start=date.today(),
            duration_days=30,
            justification="live metering",
            renewal_of=None,
            now=time.time(),
        )
        return a.id


def test_records_tile_the_run_across_a_restart_and_reconcile(factory: Factory) -> None:
    alloc = grant(factory, "10")
    (job,) = factory.submit([{"command": ["sleep", "2.5"], "gpus_per_task": 2}])
    metrics = Metrics()
    first = make_loop(factory, metrics)
    first.start()
    drive(first, lambda: bool(records(factory, job)))  # a tick stored while it runs
    assert factory.jobs()[job].state == "running"
    first.close()  # the loop dies: no final tick, lease left behind, the run goes on
    time.sleep(0.5)
    second = make_loop(factory, metrics)
    second.start()
    drive(second, ended(factory, job))
    row = factory.jobs()[job]
    assert row.state == "succeeded" and row.started_at and row.ended_at
    recs = records(factory, job)
    assert len(recs) >= 2
    assert recs[0].start == int(row.started_at) and recs[-1].end == int(row.ended_at)
    assert all(a.end == b.start for a, b in itertools.pairwise(recs))  # no gap, overlap
    held = sum(r.gpus * (r.end - r.start) for r in recs)
    assert held == 2 * (int(row.ended_at) - int(row.started_at))
    assert abs(held - 2 * (row.ended_at - row.started_at)) <= 2  # whole seconds, per run end
    assert {r.allocation_id for r in recs} == {alloc}
    # The loop's incremental book, a book rebuilt from the store, and Prometheus agree.
    assert second.meter.balances["local/default"] == {POOL: 36_000 - held}
    rebuilt = Meter(second.read, second.write)
    with second.read() as s:
        rebuilt.load(s, time.time())
    assert dict(rebuilt.balances) == dict(second.meter.balances)
    charged = metrics.gpu_hours_charged.labels("public-body", "local")._value.get()
    assert abs(charged - held / 3600) < 1e-9
    # Re-emitting a stored record is a no-op.
    r0 = recs[0]
    dup = UsageRecord(
        r0.job_id,
        r0.attempt,
        r0.start,
        r0.end,
        r0.gpus,
        r0.gpu_type,
        r0.site,
        r0.tenant,
        r0.project,
        r0.allocation_id,
    )
    with factory.sessions() as s, s.begin():
        assert _insert_record(s, dup) is False
    assert len(records(factory, job)) == len(recs)
    # The month's statement charges exactly the records' GPU-seconds.
    with factory.sessions() as s, s.begin():
        s.add(
            t.PriceRow(
                site="local",
                gpu_type="virtual-gpu",
                valid_from=date(2026, 1, 1),
                valid_to=None,
                amount="30.00",
                currency="MAD",
            )
        )
        s.add(
            t.DatedTermRow(
                term=terms.TAX_RATES, valid_from=date(2026, 1, 1), value={"rates": {"MAD": "0.20"}}
            )
        )
    with factory.sessions() as s:
        tenant = recs[0].tenant
        span, lines = statement_lines(s, tenant, date.today().strftime("%Y-%m"))
        total_records = s.scalar(
            select(
                func.sum(t.UsageRecordRow.gpus * (t.UsageRecordRow.end - t.UsageRecordRow.start))
            ).where(t.UsageRecordRow.tenant == tenant)
        )
        (st,) = build_statements(lines, tenant, span, terms.tax_rates(s, span[0]))
    assert sum(li.charged_gpu_seconds + li.uncharged_gpu_seconds for li in lines) == total_records
    assert st.subtotal.amount == sum(li.net.amount for li in lines)
    assert st.tax.amount == (st.subtotal.amount * Decimal("0.20")).quantize(Decimal("0.01"))
    assert st.total.amount == st.subtotal.amount + st.tax.amount
    second.release_lease()
    second.close()


def test_an_exhausted_allocation_holds_jobs_until_a_supplement(factory: Factory) -> None:
    alloc = grant(factory, "0.0015")  # 5 GPU-seconds
    (burn,) = factory.submit([{"command": ["sleep", "2"], "gpus_per_task": 4}])
    loop = make_loop(factory)
    loop.start()
    drive(loop, ended(factory, burn))  # 4 GPUs × ~2 s: overdrawn, never stopped
    (nxt,) = factory.submit([{"command": ["true"]}])
    drive(loop, lambda: factory.jobs()[nxt].wait_code == "allocation-exhausted")
    row = factory.jobs()[nxt]
    assert row.state == "pending"
    message = row.wait_message or ""
    assert f"allocation {alloc} exhausted on {date.today()}" in message, message
    assert "supplement" in message
    assert loop.meter.balances["local/default"] == {}  # nothing left in any pool
    with factory.sessions() as s, s.begin():
        acct.command(
            s,
            factory.caller,
            alloc,
            lambda a, p: core.supplement(
                a,
                p,
                by=factory.caller.user,
                amount=acct.amount_of([(*POOL, Decimal("0.01"))], Decimal(0)),
                at_=int(time.time()),
            ),
            now=time.time(),
        )
    drive(loop, ended(factory, nxt))
    assert factory.jobs()[nxt].state == "succeeded"
    loop.release_lease()
    loop.close()


def test_a_preempted_run_is_recorded_but_not_charged(factory: Factory, tmp_path: Path) -> None:
    with factory.sessions() as s, s.begin():
        s.execute(
            update(m.PriorityClass).where(m.PriorityClass.name == "low").values(grace_seconds=1.0)
        )
    alloc = grant(factory, "10")
    marks = tmp_path / "marks"
    marks.mkdir()
    body = (
        f"echo $MASNAA_ATTEMPT >> {marks}/low; "
        "trap 'exit 0' TERM; "
        "if [ $MASNAA_ATTEMPT = 1 ]; then sleep 60 & wait; fi"
    )
    metrics = Metrics()
    loop = make_loop(factory, metrics)
    loop.start()
    (low,) = factory.submit(
        [{"command": ["sh", "-c", body], "gpus_per_task": 8, "priority_class": "low"}]
    )
    drive(loop, (marks / "low").exists)
    time.sleep(1.1)  # hold the GPUs for at least a whole second
    (high,) = factory.submit(
        [{"command": ["sleep", "0.2"], "gpus_per_task": 8, "priority_class": "high"}]
    )
    drive(loop, lambda: ended(factory, low)() and ended(factory, high)(), timeout=30)
    with factory.sessions() as s:
        segs = {
            (g.job_id, g.attempt): g
            for g in s.scalars(select(t.RunSegmentRow).where(t.RunSegmentRow.job_id == low))
        }
    first = segs[(low, 1)]
    assert first.ended == "preempted" and first.metered and first.end is not None
    held_first = sum(r.gpus * (r.end - r.start) for r in records(factory, low) if r.attempt == 1)
    assert held_first == 8 * (first.end - first.start) > 0  # recorded in full ...
    held_all = sum(r.gpus * (r.end - r.start) for job in (low, high) for r in records(factory, job))
    # ... but credited back: the balance charges only the other runs.
    assert loop.meter.balances["local/default"] == {POOL: 36_000 - (held_all - held_first)}
    credited = metrics.gpu_hours_credited.labels("public-body", "local")._value.get()
    assert abs(credited - held_first / 3600) < 1e-9
    with factory.sessions() as s:
        assert acct.used_of(s, [alloc])[alloc][POOL] == held_all - held_first
    loop.release_lease()
    loop.close()
