"""``masnaa up``'s first hint: a ``submit`` that works on the factory it just set up."""

from __future__ import annotations

from pathlib import Path

from masnaa.cli.up import prepare
from masnaa.store.db import make_engine, upgrade

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factory.toml"


def _prepared_project(tmp_path: Path, factory: Path | None) -> str | None:
    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        ready = prepare(engine, db_url=db_url, home=tmp_path, url="http://127.0.0.1:1",
                        factory=factory, virtual_gpus="1x8")
    finally:
        engine.dispose()
    return ready.project


def test_one_project_needs_no_name_in_the_hint(tmp_path: Path) -> None:
    assert _prepared_project(tmp_path, None) is None


def test_a_factory_with_several_projects_names_one_in_the_hint(tmp_path: Path) -> None:
    # The example declares projects under three tenants; the first by name is hinted.
    assert _prepared_project(tmp_path, EXAMPLE) == "atlas-ai/default"


def test_a_factory_that_declares_its_tenants_gets_no_other(tmp_path: Path) -> None:
    from sqlalchemy import select

    from masnaa.store import models as m

    _prepared_project(tmp_path, EXAMPLE)
    engine = make_engine(f"sqlite:///{tmp_path / 'masnaa.sqlite'}")
    try:
        with engine.connect() as conn:
            names = sorted(conn.execute(select(m.Tenant.name)).scalars())
            operators = conn.execute(
                select(m.User.name).where(m.User.role == m.Role.OPERATOR.value)
            ).scalars().all()
    finally:
        engine.dispose()
    assert names == ["atlas-ai", "uct", "um6p"]  # no "local" beside the declared three
    assert operators == ["operator"]
    # Without a factory there is the default tenant to submit to.
    (tmp_path / "bare").mkdir()
    assert _prepared_project(tmp_path / "bare", None) is None


def test_a_start_that_loses_the_race_issues_no_token(tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from masnaa.cli.up import operator_token
    from masnaa.store import models as m

    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)

    def tokens() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(m.ApiToken)).scalar_one())

    try:
        upgrade(engine)
        first = prepare(engine, db_url=db_url, home=tmp_path, url="http://127.0.0.1:1",
                        factory=None, virtual_gpus="1x8")
        assert first.token is not None and tokens() == 1  # bootstrap's own
        # A second start on the same fresh home, before the first wrote its credentials:
        # it has no token to show, and makes none until it holds the lease.
        second = prepare(engine, db_url=db_url, home=tmp_path, url="http://127.0.0.1:1",
                         factory=None, virtual_gpus="1x8")
        assert second.token is None and tokens() == 1
        assert operator_token(engine, first) == first
        won = operator_token(engine, second)  # had it won the lease
        assert won.token is not None and tokens() == 2
    finally:
        engine.dispose()


def test_a_start_refused_by_a_running_loop_changes_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from sqlalchemy import select

    from masnaa.executors import records
    from masnaa.store import models as m
    from masnaa.store.db import session_factory

    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with session_factory(engine)() as s, s.begin():  # a live loop holds the database
            me = os.getpid()
            s.add(m.ServiceState(key="control-loop", updated_at=9e18, value={
                "host": os.uname().nodename, "pid": me,
                "start_ticks": records.process_start_ticks(me)}))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
        done = subprocess.run(
            [sys.executable, "-c", "from masnaa.cli.main import app; app()", "up", "--db",
             db_url, "--home", str(tmp_path / "home"), "--factory", str(EXAMPLE),
             "--port", "1"], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 1 and "loop-running" in done.stderr, done
        with session_factory(engine)() as s:
            assert s.scalars(select(m.Site.name)).all() == []  # its factory was not applied
            assert s.scalars(select(m.Tenant.name)).all() == []
    finally:
        engine.dispose()


def test_a_start_without_the_file_keeps_the_factory_the_file_declared(tmp_path: Path) -> None:
    import pytest
    import typer
    from sqlalchemy import delete, select

    from masnaa.factory import source
    from masnaa.store import models as m
    from masnaa.store.db import session_factory

    factory = tmp_path / "factory.toml"
    factory.write_text(EXAMPLE.read_text().replace(
        "[[sites]]", 'default_unix_user = "nobody"\n\n[[sites]]', 1))
    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)

    def stored() -> tuple[list[str], dict[str, float], object]:
        with session_factory(engine)() as s:
            sites = sorted(s.scalars(select(m.Site.name)))
            graces = {p.name: p.grace_seconds for p in s.scalars(select(m.PriorityClass))}
            users = s.get(m.ServiceState, "tenant-unix-users")
            return sites, graces, None if users is None else users.value

    try:
        upgrade(engine)
        first = dict(url="http://127.0.0.1:1", db_url=db_url, home=tmp_path, virtual_gpus=None)
        prepare(engine, factory=factory, **first)  # type: ignore[arg-type]
        before = stored()
        assert before[2] is not None and before[2]["default"] == "nobody"
        again = prepare(engine, factory=None, **first)  # type: ignore[arg-type]
        assert stored() == before  # no discovered site, classes and accounts as declared
        assert str(factory.resolve()) in again.applied and "not applied again" in again.applied
        with pytest.raises(typer.Exit):  # discovery is refused, not laid over the file's
            prepare(engine, factory=None, **{**first, "virtual_gpus": "1x8"})  # type: ignore[arg-type]
        # A home from before the source was recorded: declared, as its sites say.
        with session_factory(engine)() as s, s.begin():
            s.execute(delete(m.ServiceState).where(m.ServiceState.key == source.SOURCE_KEY))
        prepare(engine, factory=None, **first)  # type: ignore[arg-type]
        assert stored() == before
    finally:
        engine.dispose()
