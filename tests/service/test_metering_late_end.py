"""A run's true end learned late (its site's controller was down, so it was not polled):
the usage records metered past that end are cut back to it, and agree with the segment."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import func, select

from masnaa.service.metering import Meter
from masnaa.service.metrics import Metrics
from masnaa.store import accounting as t
from service.conftest import Database


def stored(db: Database) -> list[tuple[int, int]]:
    with db.sessions() as s:
        rows = s.scalars(select(t.UsageRecordRow).order_by(t.UsageRecordRow.start))
        return [(r.start, r.end) for r in rows]


def test_usage_metered_past_a_runs_true_end_is_taken_back(database: Database) -> None:
    metrics = Metrics()
    meter = Meter(database.sessions, database.sessions, interval=60, metrics=metrics)
    with database.sessions() as s, s.begin():
        s.add(t.RunSegmentRow(job_id="j-1", attempt=1, start=1000, end=None, gpus=4,
                              gpu_type="h100", site="ma-slurm", tenant="um6p",
                              project="um6p/vision", allocation_id=None, ended="running",
                              metered=False))  # fmt: skip
    meter.tick(1030)
    meter.tick(1111)  # the controller is down: the run is not polled, but metered on
    assert stored(database)[-1][1] == 1111
    # The controller is back: the run had ended at 1009 (completed).
    with database.sessions() as s, s.begin():
        meter.on_end(s, SimpleNamespace(id="j-1", attempt=1), "succeeded", 1009.4)  # type: ignore[arg-type]
    meter.tick(1115)
    recs = stored(database)
    assert recs == [(1000, 1009)]  # the record across the end cut, the one past it deleted
    with database.sessions() as s:
        seg = s.get(t.RunSegmentRow, ("j-1", 1))
        assert seg is not None and seg.metered and seg.end == 1009
        # int(): PostgreSQL sums integers as NUMERIC (a Decimal here).
        held = int(s.scalar(select(func.sum(t.UsageRecordRow.gpus
                                            * (t.UsageRecordRow.end - t.UsageRecordRow.start)))))
    assert held == 4 * (seg.end - seg.start)  # what `masnaa usage` (segments) says
    charged = metrics.gpu_hours_charged.labels("unknown", "ma-slurm")._value.get()
    credited = metrics.gpu_hours_credited.labels("unknown", "ma-slurm")._value.get()
    assert abs((charged - credited) - held / 3600) < 1e-9
    assert meter.tick(1200, force=True) == 0 and stored(database) == recs  # stays cut
