"""The schema, its migrations, and the write rules every writer relies on."""

from __future__ import annotations

import os
import threading
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from masnaa import domain
from masnaa.domain.reasons import Phrase
from masnaa.store import models as m
from masnaa.store.base import Base
from masnaa.store.convert import load_cluster, load_jobs, load_quotas, load_tenants
from masnaa.store.db import make_engine, session_factory, upgrade
from masnaa.store.events import transition


def _seed(session: Session) -> m.Job:
    now = time.time()
    tenant = m.Tenant(name="um6p", kind="university", country="MA", share=2.0, created_at=now)
    project = m.Project(tenant=tenant, name="llm", created_at=now)
    site = m.Site(name="ma-1", country="MA", currency="MAD", executor="local")
    gpu = m.GpuType(name="h100-sxm-80gb", memory_gb=80)
    session.add_all([tenant, project, site, gpu])
    session.flush()
    session.add(
        m.Node(site=site, name="n0", gpu_type=gpu, gpu_count=8, domains=["nvl0", "leaf0"])
    )
    session.add(m.Quota(tenant=tenant, site=site, gpu_type=gpu, nominal=4))
    job = m.Job(
        id="j-test0001",
        tenant=tenant,
        project=project,
        command=["python", "train.py"],
        gpu_types=["h100-sxm-80gb"],
        tasks=1,
        gpus_per_task=2,
        time_limit=3600.0,
        submitted_at=now,
    )
    session.add(job)
    transition(session, job, m.JobState.PENDING, at=now, code="submitted",
               reason=(Phrase("submitted"),))
    return job


def test_models_match_the_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(store_url: str) -> None:
    upgrade(store_url)
    upgrade(store_url)


def test_rows_convert_to_the_domain(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        _seed(s)
    with session_factory(engine)() as s:
        cluster = load_cluster(s)
        assert cluster.by_name["n0"].domains == ("nvl0", "leaf0", "ma-1")
        assert cluster.total_gpus == 8
        assert load_tenants(s)["um6p"].share == 2.0
        assert load_quotas(s) == (domain.Quota("um6p", "ma-1", "h100-sxm-80gb", nominal=4),)
        [(_row, job)] = load_jobs(s, (m.JobState.PENDING,))
        assert job.total_gpus == 2 and job.tenant == "um6p" and job.project == "llm"


def test_every_transition_writes_an_event(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        job = _seed(s)
        transition(s, job, m.JobState.CANCELLED, at=time.time(), code="cancelled",
                   reason=(Phrase("cancelled-pending", {"user": "amina"}),))
    with session_factory(engine)() as s:
        events = s.scalars(select(m.JobEvent).order_by(m.JobEvent.id)).all()
        assert [(e.from_state, e.to_state, e.code) for e in events] == [
            (None, "pending", "submitted"),
            ("pending", "cancelled", "cancelled"),
        ]
        assert s.get(m.Job, "j-test0001").state_reason == "cancelled by amina while pending"  # type: ignore[union-attr]


def test_racing_writers_on_one_job_conflict_instead_of_losing_a_write(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        _seed(s)
    factory = session_factory(engine)
    # Two readers see version 1; the first writer wins, the second must fail.
    a = factory()
    job_a = a.get(m.Job, "j-test0001")
    a.commit()
    b = factory()
    job_b = b.get(m.Job, "j-test0001")
    b.commit()
    assert job_a is not None and job_b is not None
    job_a.cancel_requested = True
    a.add(job_a)
    a.commit()
    job_b.exit_code = 3
    b.add(job_b)
    with pytest.raises(StaleDataError):
        b.commit()
    b.rollback()
    with factory() as s:
        fresh = s.get(m.Job, "j-test0001")
        assert fresh is not None and fresh.cancel_requested and fresh.exit_code is None
        assert fresh.version == 2


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), session_factory(engine).begin() as s:
        s.add(m.Project(tenant_id=424242, name="orphan", created_at=0.0))


def test_concurrent_writers_queue_instead_of_failing(engine: Engine) -> None:
    with session_factory(engine).begin() as s:
        s.add(m.Tenant(name="t", created_at=0.0))
    factory = session_factory(engine)
    errors: list[BaseException] = []

    def bump(worker: int) -> None:
        try:
            for i in range(20):
                with factory.begin() as s:
                    t = s.scalars(
                        select(m.Tenant).where(m.Tenant.name == "t").with_for_update()
                    ).one()
                    t.share = t.share + 1.0
                    s.add(m.Tenant(name=f"w{worker}-{i}", created_at=0.0))
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=bump, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        assert s.scalars(select(m.Tenant.share).where(m.Tenant.name == "t")).one() == 121.0
        assert s.scalar(select(func.count()).select_from(m.Tenant)) == 121


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    engine.dispose()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_takes_no_more_writes(
    tmp_path: Path, how: str
) -> None:
    import shutil

    from sqlalchemy import text

    from masnaa.store.db import DatabaseFileGone

    path = tmp_path / "masnaa.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with session_factory(engine).begin() as s:
        _seed(s)
    shutil.copy(path, tmp_path / "copy.sqlite")
    if how == "deleted":
        path.unlink()
    else:  # e.g. a backup restored over it while Masnaa runs
        os.replace(tmp_path / "copy.sqlite", path)
    for _ in range(2):  # and it stays refused
        with pytest.raises(DatabaseFileGone, match="deleted or replaced"), engine.begin() as conn:
            conn.execute(text("SELECT 1"))
    engine.dispose()


def test_rows_from_before_phrases_keep_their_english_reason(engine: Engine) -> None:
    from alembic import command

    from masnaa.store.db import _alembic_config

    with session_factory(engine).begin() as s:
        _seed(s)
    cfg = _alembic_config(engine)
    with engine.connect() as connection:  # back to the schema before phrases, rows kept
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0003")
        connection.commit()
    upgrade(engine)
    with session_factory(engine)() as s:
        job = s.get(m.Job, "j-test0001")
        assert job is not None and (job.state_reason, job.state_phrases) == ("submitted", [])
        (event,) = s.scalars(select(m.JobEvent)).all()
        assert (event.reason, event.phrases) == ("submitted", [])


def _usage(start: int, end: int, gpus: int, job: str = "j-wide") -> Any:
    from masnaa.store import accounting as t

    return t.UsageRecordRow(job_id=job, attempt=0, start=start, end=end, gpus=gpus,
                            gpu_type="h100-sxm-80gb", site="ma-1", tenant="um6p",
                            project="um6p/llm")


Y2040 = 2208988800  # 2040-01-01 00:00 UTC, past 2^31 seconds (2038-01-19)


def test_usage_after_2038_and_gpu_seconds_past_2_31_round_trip(engine: Engine) -> None:
    from masnaa.store import accounting as t

    # 1,024 GPUs for 30 days: 2,654,208,000 GPU-seconds in one record, > 2^31.
    month = 30 * 86400
    with session_factory(engine).begin() as s:
        s.add(_usage(Y2040, Y2040 + month, 1024))
        s.add(t.RunSegmentRow(job_id="j-wide", attempt=0, start=Y2040, end=Y2040 + month,
                              gpus=1024, gpu_type="h100-sxm-80gb", site="ma-1", tenant="um6p",
                              project="um6p/llm", preempt_notice=Y2040 + month - 60,
                              last_checkpoint=Y2040 + 3600))
    U = t.UsageRecordRow
    with session_factory(engine)() as s:
        row = s.scalars(select(U).where(U.start >= Y2040)).one()
        assert (row.start, row.end) == (Y2040, Y2040 + month)
        held = s.scalar(select(func.sum(U.gpus * (U.end - U.start))))
        assert int(held) == 1024 * month > 2**31
        seg = s.get(t.RunSegmentRow, ("j-wide", 0))
        assert seg is not None and seg.preempt_notice == Y2040 + month - 60


def test_widening_instants_keeps_the_rows(engine: Engine) -> None:
    from alembic import command

    from masnaa.store import accounting as t
    from masnaa.store.db import _alembic_config

    with session_factory(engine).begin() as s:
        s.add(_usage(1_793_491_200, 1_793_491_260, 8))  # 2026-11-01, fits in 32 bits
    cfg = _alembic_config(engine)
    with engine.connect() as connection:  # back to 32-bit instants on PostgreSQL, rows kept
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0004")
        connection.commit()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn, pytest.raises(DBAPIError):  # the bug: 2040 did not fit
            conn.execute(t.UsageRecordRow.__table__.insert().values(
                job_id="j-2040", attempt=0, start=Y2040, end=Y2040 + 60, gpus=1,
                gpu_type="h100-sxm-80gb", site="ma-1", tenant="um6p", project="um6p/llm"))
    upgrade(engine)
    with session_factory(engine).begin() as s:
        s.add(_usage(Y2040, Y2040 + 60, 1, job="j-2040"))
    with session_factory(engine)() as s:
        rows = s.scalars(select(t.UsageRecordRow).order_by(t.UsageRecordRow.start)).all()
        assert [(r.job_id, r.start, r.gpus) for r in rows] == [
            ("j-wide", 1_793_491_200, 8), ("j-2040", Y2040, 1)]


def test_dating_terms_keeps_the_discounts_tax_rates_and_tiers(engine: Engine) -> None:
    from alembic import command
    from sqlalchemy import text

    from masnaa.accounting.prices import TenantTerms
    from masnaa.service import terms
    from masnaa.store.db import _alembic_config

    cfg = _alembic_config(engine)
    with engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")
        connection.commit()
    with engine.begin() as conn:  # what the schema before 0006 held
        conn.execute(text("INSERT INTO discounts (kind, tier, rate) VALUES "
                          "('university', '', '0.6'), ('startup', 'seed', '0.4')"))
        conn.execute(text("INSERT INTO tenant_terms (tenant, tier, enforced) VALUES "
                          "('atlas', 'seed', false), ('um6p', '', true)"))
        conn.execute(text("INSERT INTO accounting_settings (key, value) VALUES "
                          "('tax-rates', '{\"MAD\": \"0.2\"}')"))  # fmt: skip
    upgrade(engine)
    with session_factory(engine)() as s:
        book = terms.terms_book(s)
        assert terms.versions(s, terms.TIER + "atlas") == [
            (date(1970, 1, 1), {"tier": "seed"})]  # fmt: skip
        assert terms.versions(s, terms.TIER + "um6p") == []  # no tier, no version
        assert book.taxes(0) == {"MAD": Decimal("0.2")}
        seed = TenantTerms(domain.TenantKind.STARTUP, "seed")
        assert book.discount_table(0).rate_for(seed) == Decimal("0.4")
        uni = TenantTerms(domain.TenantKind.UNIVERSITY, None)
        assert book.discount_table(0).rate_for(uni) == Decimal("0.6")
    with engine.connect() as connection:  # and back: the latest version of each
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0005")
        connection.commit()
        rows = connection.execute(text("SELECT tenant, tier FROM tenant_terms ORDER BY tenant"))
        assert [tuple(r) for r in rows] == [("atlas", "seed"), ("um6p", "")]
    upgrade(engine)


def test_a_schema_behind_the_code_is_named(engine: Engine) -> None:
    from alembic import command

    from masnaa.store.db import _alembic_config, head_revision, schema_behind

    with session_factory(engine)() as s:
        assert schema_behind(s) is None
    cfg = _alembic_config(engine)
    with engine.connect() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0006")
        connection.commit()
    try:
        with session_factory(engine)() as s:
            behind = schema_behind(s)
        assert behind is not None and "at 0006" in behind and f"needs {head_revision()}" in behind
    finally:
        upgrade(engine)


def test_an_empty_database_has_no_schema(tmp_path: Path) -> None:
    from masnaa.store.db import schema_behind

    engine = make_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    with session_factory(engine)() as s:
        behind = schema_behind(s)
    engine.dispose()
    assert behind is not None and "no schema" in behind
