"""The Unix account each tenant's jobs run as: declared in the factory description
(``unix_user``, ``default_unix_user``), checked against this machine, kept in the
store, put on each launch by the control loop, and said in ``masnaa up``'s banner.

The live tests run real jobs through a real control loop as throwaway accounts
(``unix_accounts``; skipped, with the reason, without root or ``useradd``)."""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import select

from live_loop import drive
from masnaa.cli.up import prepare
from masnaa.discovery import virtual_inventory
from masnaa.factory import FactoryError, apply_factory, from_inventory
from masnaa.factory.spec import FactorySpec, TenantSpec, check_unix_users, parse_factory
from masnaa.service import jobs
from masnaa.service.launch import Accounts, identity_line
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics
from masnaa.store import models as m
from masnaa.store.db import make_engine, upgrade
from unix_accounts import throwaway_accounts

from .conftest import Factory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factory.toml"
MINIMAL = {
    "sites": [{"name": "s1"}],
    "gpu_types": [{"name": "h100"}],
    "nodes": [{"site": "s1", "gpu_type": "h100", "gpus": 8, "count": 1}],
}


def with_accounts(default: str | None, **tenants: str | None) -> FactorySpec:
    spec = from_inventory(virtual_inventory("1x8", host="box"))
    return spec.model_copy(update={
        "default_unix_user": default,
        "tenants": [TenantSpec(name=t, unix_user=u) for t, u in tenants.items()],
    })


# -- the description -----------------------------------------------------------------------------
def test_the_factory_names_a_default_account_and_one_per_tenant() -> None:
    spec = parse_factory({
        "default_unix_user": "masnaa-jobs",
        **MINIMAL,
        "tenants": [{"name": "um6p", "unix_user": "masnaa-um6p"}, {"name": "uct"}],
    })
    assert spec.default_unix_user == "masnaa-jobs"
    assert [t.unix_user for t in spec.tenants] == ["masnaa-um6p", None]


def test_an_account_name_unix_would_refuse_is_an_error_naming_the_key() -> None:
    with pytest.raises(FactoryError) as caught:
        parse_factory({**MINIMAL, "tenants": [{"name": "a", "unix_user": "Bad Name"}]})
    assert caught.value.path == "tenants[0].unix_user"


def test_an_account_missing_here_or_root_is_refused_with_its_name_and_key() -> None:
    known = {"masnaa-um6p": 990, "root": 0}

    def lookup(name: str) -> pwd.struct_passwd:
        if name not in known:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", known[name], known[name], "", "/", "/bin/sh"))

    spec = parse_factory({**MINIMAL, "default_unix_user": "masnaa-um6p",
                          "tenants": [{"name": "a"}, {"name": "b", "unix_user": "masnaa-nope"}]})
    with pytest.raises(FactoryError) as caught:
        check_unix_users(spec, lookup)
    assert (caught.value.code, caught.value.path) == ("unknown-unix-user", "tenants[1].unix_user")
    assert "'masnaa-nope'" in caught.value.message and "useradd" in caught.value.message
    rooted = parse_factory({**MINIMAL, "default_unix_user": "root"})
    with pytest.raises(FactoryError) as caught:
        check_unix_users(rooted, lookup)
    assert (caught.value.code, caught.value.path) == ("root-unix-user", "default_unix_user")
    check_unix_users(parse_factory({**MINIMAL, "default_unix_user": "masnaa-um6p"}), lookup)


def test_the_accounts_are_kept_in_the_store_and_applying_twice_changes_nothing(
    factory: Factory,
) -> None:
    spec = with_accounts("masnaa-jobs", local="masnaa-local", other=None)
    with factory.sessions() as s, s.begin():
        assert apply_factory(s, spec).created["unix users"] == 1
    with factory.sessions() as s, s.begin():
        assert "unix users" not in apply_factory(s, spec).summary()
        accounts = Accounts.load(s)
    assert accounts.of("local") == "masnaa-local"
    assert accounts.of("other") == accounts.of("made-later-by-the-api") == "masnaa-jobs"
    with factory.sessions() as s, s.begin():
        apply_factory(s, with_accounts(None, other="masnaa-other"))
        accounts = Accounts.load(s)
    # The file's tenants take what it says now; the others keep theirs.
    assert (accounts.of("local"), accounts.of("other"), accounts.of("x")) == (
        "masnaa-local", "masnaa-other", None)


def test_up_refuses_a_factory_naming_an_account_missing_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("accounts are checked only where jobs would switch to them (as root)")
    described = tmp_path / "factory.toml"
    described.write_text(EXAMPLE.read_text().replace(
        'name = "atlas-ai"', 'name = "atlas-ai"\nunix_user = "mt-no-such-account"'))
    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with pytest.raises(typer.Exit):
            prepare(engine, db_url=db_url, home=tmp_path, url="http://127.0.0.1:1",
                    factory=described, virtual_gpus=None)
        said = capsys.readouterr().err
        assert "tenants[1].unix_user" in said and "'mt-no-such-account'" in said
        with engine.connect() as conn:  # nothing of the file was applied
            assert conn.scalar(select(m.Tenant.id).where(m.Tenant.name == "atlas-ai")) is None
    finally:
        engine.dispose()


# -- the banner ----------------------------------------------------------------------------------
def test_the_banner_says_plainly_when_jobs_are_not_isolated() -> None:
    none, some = Accounts(), Accounts(None, {"a": "masnaa-a"})
    every = Accounts("masnaa-jobs", {"a": "masnaa-a"})
    line, isolated = identity_line(none, ["a", "b"], user="root", root=True, local=True)
    assert not isolated and line.startswith("run as root, the control plane's user")
    assert "not isolated" in line and '"Isolating tenants"' in line
    line, isolated = identity_line(some, ["a", "b"], user="root", root=True, local=True)
    assert not isolated and "a as masnaa-a" in line and "b run as root" in line
    line, isolated = identity_line(every, ["a", "b"], user="root", root=True, local=True)
    assert isolated
    assert line == "run as their tenant's Unix account (a as masnaa-a, b as masnaa-jobs)"
    line, isolated = identity_line(every, ["a", "b"], user="alice", root=False, local=True)
    assert not isolated and line.startswith("run as alice (switching") and "needs root" in line
    line, isolated = identity_line(every, ["a"], user="masnaa", root=True, local=False)
    assert not isolated and "Slurm" in line
    shared = identity_line(Accounts("masnaa-jobs"), ["a", "b"], user="root", root=True, local=True)
    assert shared[1] and "not isolated from each other" in shared[0]


# -- live, as root -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def accounts() -> Iterator[list[pwd.struct_passwd]]:
    with throwaway_accounts(1) as made:
        yield made


def test_the_loop_runs_a_tenants_job_as_its_account_and_fails_one_whose_account_is_missing(
    factory: Factory, accounts: list[pwd.struct_passwd]
) -> None:
    a = accounts[0]
    with factory.sessions() as s, s.begin():
        apply_factory(s, with_accounts(None, local=a.pw_name, other="mt-no-such-account"))
    with factory.sessions() as s, s.begin():
        done = jobs.submit_batch(s, factory.caller, [
            jobs.JobSpec(project="local/default", command=["id", "-u"]),
            jobs.JobSpec(project="other/default", command=["id", "-u"]),
        ], now=time.time())
        ok, missing = (r.id for r in done.jobs)
    loop = ControlLoop(LoopConfig(db_url=factory.url, home=factory.home, tick=0.05),
                       engine=factory.engine, metrics=Metrics())
    loop.start()
    try:
        drive(loop, lambda: {factory.jobs()[j].state for j in (ok, missing)} <= {
            "succeeded", "failed"})
    finally:
        loop.release_lease()
        loop.close()
    rows = factory.jobs()
    assert rows[ok].state == "succeeded"
    with open(rows[ok].stdout_path or "") as out:
        assert out.read().strip() == str(a.pw_uid)
    assert rows[missing].state == "failed"
    with factory.sessions() as s:
        failed = s.scalars(select(m.JobEvent).where(
            m.JobEvent.job_id == missing, m.JobEvent.code == "launch-rejected")).one()
    assert "'mt-no-such-account'" in str(failed.reason) and "does not exist" in str(failed.reason)
