"""``service.history.utilisation``: GPUs held per site and bucket, from run segments.

A real migrated SQLite store, two sites and hand-written run segments (the
rows the control loop writes), so every expected number is worked out here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from masnaa.service.history import MAX_BUCKETS, utilisation
from masnaa.service.tenancy import ServiceError
from masnaa.store import models as m
from masnaa.store.accounting import RunSegmentRow
from masnaa.store.db import make_engine, session_factory, upgrade


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    make = session_factory(engine)
    with make() as s, s.begin():
        a, b = m.Site(name="ma-1", country="MA"), m.Site(name="ke-1", country="KE")
        gpu = m.GpuType(name="h100")
        s.add_all([a, b, gpu])
        s.flush()
        s.add_all([
            m.Node(site_id=a.id, name="a0", gpu_count=8, gpu_type_id=gpu.id),
            m.Node(site_id=a.id, name="a1", gpu_count=8, gpu_type_id=gpu.id,
                   state=m.NodeState.DRAINED.value),
            m.Node(site_id=b.id, name="b0", gpu_count=4, gpu_type_id=gpu.id),
        ])
    yield make
    engine.dispose()


def segment(job: str, start: int, end: int | None, gpus: int, site: str, tenant: str
            ) -> RunSegmentRow:
    return RunSegmentRow(job_id=job, attempt=1, start=start, end=end, gpus=gpus,
                         gpu_type="h100", site=site, tenant=tenant, project=f"{tenant}/p")


def test_runs_are_split_across_buckets_and_sites(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        s.add_all([
            segment("j1", 1000, 1150, 8, "ma-1", "um6p"),   # buckets 0 (100 s) and 1 (50 s)
            segment("j2", 1050, None, 4, "ke-1", "uon"),    # still running at now=1250
            segment("j3", 500, 900, 16, "ma-1", "um6p"),    # before the window: not counted
            segment("j4", 1200, 1400, 2, "ma-1", "uon"),    # starts in bucket 2, cut at the end
        ])
    with sessions() as s:
        u = utilisation(s, start=1000, end=1300, buckets=3, now=1250)
    assert u.capacity == {"ma-1": 16, "ke-1": 4}  # a drained node still counts
    assert u.step == 100
    held = [b.held for b in u.buckets]
    assert held[0] == {"ma-1": 8.0, "ke-1": 2.0}
    assert held[1] == {"ma-1": 4.0, "ke-1": 4.0}
    assert held[2] == {"ma-1": 2.0, "ke-1": 2.0}  # j2 counts up to now (1250)
    assert [b.at for b in u.buckets] == [1000, 1100, 1200]
    assert u.fraction(u.buckets[0], "ma-1") == 0.5
    assert u.fraction(u.buckets[0]) == 10 / 20
    assert u.peak("ke-1") == 1.0
    assert u.mean("ma-1") == pytest.approx((8 + 4 + 2) / 3 / 16)
    # GPU-hours in the window only: j1 150 s × 8, j4 100 s × 2, j2 200 s × 4.
    assert u.gpu_hours == pytest.approx({"um6p": 1200 / 3600, "uon": (200 + 800) / 3600})


def test_held_gpu_seconds_are_conserved(sessions: sessionmaker[Session]) -> None:
    spans = [(1003, 1777, 3), (1111, 1112, 8), (999, 2001, 1), (1500, 1500, 4)]
    with sessions() as s, s.begin():
        s.add_all(segment(f"j{i}", a, b, g, "ma-1", "t") for i, (a, b, g) in enumerate(spans))
    with sessions() as s:
        u = utilisation(s, start=1000, end=2000, buckets=7, now=5000)
    total = sum(b.held["ma-1"] for b in u.buckets) * u.step
    expected = sum(g * (min(b, 2000) - max(a, 1000)) for a, b, g in spans)
    assert total == pytest.approx(expected)


@pytest.mark.parametrize(("start", "end", "buckets"),
                         [(10, 10, 5), (10, 5, 5), (0, 100, 0), (0, 100, MAX_BUCKETS + 1)])
def test_a_bad_window_is_refused(sessions: sessionmaker[Session], start: float, end: float,
                                 buckets: int) -> None:
    with sessions() as s, pytest.raises(ServiceError) as caught:
        utilisation(s, start=start, end=end, buckets=buckets, now=0)
    assert caught.value.code == "invalid-window" and caught.value.status == 422
