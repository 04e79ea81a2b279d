"""``masnaa up`` (the whole factory in one process) and ``masnaa loop`` (the control loop alone).

``masnaa up`` on a fresh machine:

1. migrates the database (default ``sqlite:///$MASNAA_HOME/masnaa.sqlite``);
2. applies the factory: ``--factory FILE`` (TOML, see ``examples/factory.toml``)
   or, without one, this machine's GPUs (NVML) or a virtual inventory
   (``--virtual-gpus 2x8``), labelled as such — idempotent on every run;
3. bootstraps, on the first run only, an operator, a default tenant
   (``local``) and project (``default``), and writes the operator's URL and
   token to ``$MASNAA_HOME/credentials.toml`` so the CLI works at once;
4. serves the API and the web portal with uvicorn and runs the control loop
   in a thread of the same process, and prints where everything is.

Ctrl-C (or SIGTERM) stops the server and the loop. Running jobs keep running
under their supervisors; the next ``masnaa up`` (or ``masnaa loop``) adopts
them, and records the real exit status of those that ended meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine, select

if TYPE_CHECKING:
    from masnaa.service.scheduling import Knob

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEFAULT_PORT = 8642


@dataclass(frozen=True, slots=True)
class Prepared:
    url: str
    db_url: str
    home: Path
    token: str | None
    """None until ``operator_token`` issues one (after the lease is taken)."""
    gpus: str
    """What the factory runs on, in words (real or virtual, and how many)."""
    applied: str
    project: str | None = None
    """A project to name on ``submit`` ("tenant/name"), where there are several to charge."""


PolicyOpt = Annotated[str, typer.Option(
    help="Scheduling policy: masnaa, fifo-backfill, fifo or las (docs/scheduler.md)."
)]
KnobOpt = Annotated[list[str] | None, typer.Option(
    "--knob",
    help="Set a scheduler knob as NAME=VALUE (repeatable), as with `masnaa sim --knob`, "
    "e.g. --knob reclaim_after=3600; docs/scheduler.md lists them.",
)]


def _scheduler(policy: str, texts: list[str] | None) -> tuple[tuple[Knob, ...], str]:
    """The knobs, and a line naming the scheduler; a refusal exits before anything starts."""
    from masnaa.service.scheduling import SchedulingError, describe, live_scheduler, parse_knobs

    try:
        knobs = parse_knobs(texts or ())
        return knobs, describe(live_scheduler(policy, knobs), knobs)
    except SchedulingError as e:
        raise _fail(str(e), e.code) from None


def _fail(message: str, code: str) -> typer.Exit:
    err.print(f"[red]error[/red] ({code}): {message}")
    return typer.Exit(1)


def unknown_live_runs(engine: Engine, home: Path) -> list[tuple[str, int]]:
    """Runs alive under ``home/jobs`` whose job this database does not know as active:
    after the database was deleted or replaced, their GPUs are in use unseen."""
    from sqlalchemy import inspect, select

    from masnaa.executors.local import LocalExecutor
    from masnaa.store import models as m

    live = LocalExecutor(home / "jobs").running_attempts()
    if not live:
        return []
    known: set[tuple[str, int]] = set()
    if inspect(engine).has_table(m.Job.__tablename__):
        with engine.connect() as conn:
            active = [s.value for s in m.ACTIVE_STATES]
            rows = conn.execute(select(m.Job.id, m.Job.attempt).where(m.Job.state.in_(active)))
            known = {(job, attempt) for job, attempt in rows}
    return [run for run in live if run not in known]


def prepare(
    engine: Engine,
    *,
    db_url: str,
    home: Path,
    url: str,
    factory: Path | None,
    virtual_gpus: str | None,
) -> Prepared:
    """Apply the factory and bootstrap (idempotent) on a migrated database, which ``up``
    holds the lease of; ``publish`` writes the credentials."""
    from masnaa.discovery import discover
    from masnaa.factory import FactoryError, apply_factory, from_inventory, load_factory, source
    from masnaa.factory.spec import check_unix_users
    from masnaa.service.tenancy import bootstrap
    from masnaa.store.db import session_factory

    sessions = session_factory(engine)
    if factory is None:
        with sessions() as s:
            declared = source.declared_file(s)
        if declared is not None:  # a home declared from a file is the file's
            if virtual_gpus:
                raise _fail(f"this home's factory was declared in {declared}: give --factory "
                            "to change it, not --virtual-gpus", "factory-declared")
            return _as_declared(engine, db_url=db_url, home=home, url=url, declared=declared)
    if factory is not None:
        try:
            spec = load_factory(factory)
        except FactoryError as exc:
            raise _fail(str(exc), exc.code) from None
        virtual = all(group.virtual for group in spec.nodes)
        gpus = sum(n.gpu_count for n in spec.expand_nodes())
        what = f"{gpus} GPUs declared in {factory}" + (" (virtual)" if virtual else "")
    else:
        try:
            inventory = discover(virtual_gpus)
        except ValueError as exc:
            raise _fail(str(exc), "invalid-virtual-gpus") from None
        spec = from_inventory(inventory)
        kind = "virtual" if inventory.virtual else "real"
        what = f"{inventory.gpu_count} {kind} GPUs — {inventory.source}"
    if os.geteuid() == 0 and any(site.executor == "local" for site in spec.sites):
        try:  # jobs will run as these accounts: each must exist here, and not be root
            check_unix_users(spec)
        except FactoryError as exc:
            raise _fail(str(exc), exc.code) from None
    with sessions() as s, s.begin():
        report = apply_factory(s, spec)
        source.record(s, None if factory is None else str(factory.resolve()))
        # A factory that declares its tenants gets no tenant it did not declare.
        boot = bootstrap(s, tenant=None if spec.tenants else "local")
        if factory is None:
            _default_quotas(s, boot.tenant)
        project = _first_of_several_projects(s)
        token = boot.token.secret if boot.token is not None else _known_token(home)
    return Prepared(url, db_url, home, token, what, report.summary(), project)


def _known_token(home: Path) -> str | None:
    """The token the CLI already stores for this home, if it can be read."""
    from masnaa.client.config import read_credentials

    try:
        return read_credentials(home).token
    except Exception:
        return None


def _as_declared(engine: Engine, *, db_url: str, home: Path, url: str, declared: str) -> Prepared:
    """``prepare`` for a home whose factory a file declared, started without it: the
    stored factory is used as it is; nothing of this machine's is applied over it."""
    from masnaa.store import models as m
    from masnaa.store.db import session_factory

    with session_factory(engine)() as s:
        gpus = sum(s.scalars(select(m.Node.gpu_count)))
        project = _first_of_several_projects(s)
    return Prepared(url, db_url, home, _known_token(home), f"{gpus} GPUs declared in {declared}",
                    f"as declared in {declared} (not applied again: give --factory to change it)",
                    project)


def operator_token(engine: Engine, ready: Prepared) -> Prepared:
    """``ready`` with a token for the CLI: the one it has, or a new operator token.

    Called once this process holds the control loop's lease, so that a start refused
    because another one runs (even one racing it on a fresh home) issues nothing."""
    from masnaa.service.tenancy import Caller
    from masnaa.service.tokens import issue_token
    from masnaa.store import models as m
    from masnaa.store.db import session_factory

    if ready.token is not None:
        return ready
    with session_factory(engine)() as s, s.begin():
        op = s.scalars(
            select(m.User).where(m.User.role == m.Role.OPERATOR.value).order_by(m.User.id)
        ).first()
        assert op is not None
        caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        token = issue_token(s, caller, None, now=_now(), label="masnaa up").secret
    return dataclasses.replace(ready, token=token)


def publish(ready: Prepared) -> None:
    """Write where the CLI finds this server; only once it runs, so that a refused
    start leaves the running server's credentials alone."""
    from masnaa.client.config import credentials_path, write_credentials

    write_credentials(ready.url, ready.token, ready.home)
    os.chmod(credentials_path(ready.home), 0o600)


def _first_of_several_projects(session: object) -> str | None:
    """The first project by name where the operator must choose one to submit."""
    from sqlalchemy.orm import Session

    from masnaa.store import models as m

    assert isinstance(session, Session)
    rows = session.execute(
        select(m.Tenant.name, m.Project.name)
        .join(m.Tenant, m.Project.tenant_id == m.Tenant.id)
        .order_by(m.Tenant.name, m.Project.name)
        .limit(2)
    ).all()
    return f"{rows[0][0]}/{rows[0][1]}" if len(rows) > 1 else None


def _now() -> float:
    import time

    return time.time()


def _default_quotas(session: object, tenant: str) -> None:
    """On a discovered machine, the default tenant is guaranteed every GPU."""
    from sqlalchemy.orm import Session

    from masnaa.store import models as m

    assert isinstance(session, Session)
    owner = session.scalars(select(m.Tenant).where(m.Tenant.name == tenant)).first()
    if (
        owner is None
        or session.scalars(select(m.Quota.id).where(m.Quota.tenant_id == owner.id)).first()
        is not None
    ):
        return
    totals: dict[tuple[int, int], int] = {}
    for node in session.scalars(select(m.Node)):
        key = (node.site_id, node.gpu_type_id)
        totals[key] = totals.get(key, 0) + node.gpu_count
    for (site_id, type_id), total in totals.items():
        session.add(
            m.Quota(tenant_id=owner.id, site_id=site_id, gpu_type_id=type_id, nominal=total)
        )


def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    factory: Annotated[
        Path | None, typer.Option("--factory", "-f", help="Factory description (TOML).")
    ] = None,
    home: Annotated[
        Path | None, typer.Option(help="Home directory (default: $MASNAA_HOME or ~/.masnaa).")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: SQLite in the home directory).")
    ] = None,
    virtual_gpus: Annotated[
        str | None,
        typer.Option(help="Virtual inventory when no GPU is found: GPUS or NODESxGPUS, e.g. 2x8."),
    ] = None,
    policy: PolicyOpt = "masnaa",
    knob: KnobOpt = None,
) -> None:
    """Run the factory here: API, portal and control loop, on SQLite and this machine's GPUs."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from masnaa.api.app import create_app
    from masnaa.api.settings import Settings
    from masnaa.service.lease import LeaseHeld
    from masnaa.service.loop import ControlLoop, LoopConfig
    from masnaa.service.metrics import Metrics
    from masnaa.store.db import (
        database_error,
        default_db_url,
        make_engine,
        masnaa_home,
        upgrade,
    )

    knobs, scheduler = _scheduler(policy, knob)
    if home is not None:
        os.environ["MASNAA_HOME"] = str(home.resolve())
    home = masnaa_home().resolve()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The database, the operator's credentials and every run's records: the control
    # plane's alone (jobs that run as other accounts must not read them).
    os.chmod(home, 0o700)
    db_url = db or default_db_url()
    engine = make_engine(db_url, pool_size=10)
    loop = ControlLoop(
        LoopConfig(db_url=db_url, home=home, policy=policy, knobs=knobs),
        engine=engine,
        metrics=(metrics := Metrics()),
    )
    try:
        strays = unknown_live_runs(engine, home)
        # Migrate, then hold the loop's lease before changing anything: a start refused
        # because another loop runs on this database must leave its factory as it is.
        upgrade(engine)
        loop.lease.take(_now())
    except LeaseHeld as exc:
        raise _fail(str(exc), "loop-running") from None
    except SQLAlchemyError as exc:
        raise _fail(database_error(db_url, exc), "database-unavailable") from None
    if strays:
        loop.release_lease()
        named = ", ".join(f"{job} run {attempt}" for job, attempt in strays[:5])
        raise _fail(
            f"{len(strays)} run(s) under {home / 'jobs'} are alive but this database does not "
            f"know them ({named}{', ...' if len(strays) > 5 else ''}): was the database deleted "
            "or replaced? Their GPUs are in use. Restore the database they belong to, or stop "
            "them (each one's supervisor holds jobs/JOB/RUN/lock) and start again",
            "unknown-runs",
        )
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown_host}:{port}"
    try:
        ready = prepare(
            engine, db_url=db_url, home=home, url=url, factory=factory, virtual_gpus=virtual_gpus
        )
    except BaseException:
        loop.release_lease()
        raise
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(db_url=db_url, home=home, log_dir=home / "jobs", migrate=False)
    app = create_app(settings, engine=engine, metrics=metrics)
    try:
        loop.start()  # the lease is this process's already
    except LeaseHeld as exc:
        raise _fail(str(exc), "loop-running") from None
    ready = operator_token(engine, ready)
    publish(ready)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), name="masnaa-loop", daemon=True)
    thread.start()
    out.print(f"[bold]Masnaa[/bold] is up at {ready.url}/  (API docs: {ready.url}/api/v1/docs)")
    out.print(f"  database     {_display(db_url)}")
    out.print(f"  GPUs         {ready.gpus}")
    out.print(f"  scheduler    {scheduler}", markup=False)
    out.print(f"  factory      {ready.applied}")
    out.print(f"  job logs     {home / 'jobs'}")
    out.print(f"  jobs         {_jobs_identity(engine)}", markup=False)
    out.print(f"  credentials  {home / 'credentials.toml'}")
    out.print(f"  token        {ready.token}")
    charge = f"-p {ready.project} " if ready.project else ""
    out.print(
        f"Try: masnaa submit {charge}--gpus 2 -- sh -c 'echo $CUDA_VISIBLE_DEVICES'   "
        "(Ctrl-C stops)",
        markup=False,
    )
    out.file.flush()  # seen at once even when stdout is a file or a pipe
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run()
    finally:
        stop.set()
        thread.join(timeout=10)
        try:
            loop.release_lease()
        finally:
            loop.close()
            engine.dispose()
        out.print("Masnaa stopped; running jobs keep running and are adopted on the next start.")


def _jobs_identity(engine: Engine) -> str:
    """The banner's line on whose Unix account jobs run as (never root unsaid)."""
    from masnaa.service.launch import jobs_identity
    from masnaa.store.db import read_session_factory

    with read_session_factory(engine)() as s:
        return jobs_identity(s)[0]


def _display(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(db_url)
    if parsed.get_backend_name() == "sqlite":
        return f"{parsed.database} (SQLite)"
    return parsed.render_as_string(hide_password=True)


def loop(
    home: Annotated[
        Path | None, typer.Option(help="Home directory (default: $MASNAA_HOME).")
    ] = None,
    db: Annotated[str | None, typer.Option(help="Database URL.")] = None,
    policy: PolicyOpt = "masnaa",
    knob: KnobOpt = None,
    tick: Annotated[float, typer.Option(help="Longest seconds between passes.")] = 0.5,
    migrate: Annotated[bool, typer.Option(help="Migrate the database first.")] = True,
    kill_grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL at a time limit.")
    ] = 30.0,
    cancel_grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL on cancel.")
    ] = 30.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve the loop's Prometheus metrics on 127.0.0.1:PORT/metrics."),
    ] = None,
) -> None:
    """Run the control loop alone (production: next to API workers; one per database)."""
    from masnaa.service.daemon import run_forever

    knobs, _ = _scheduler(policy, knob)
    raise typer.Exit(
        run_forever(
            home=home,
            db_url=db,
            policy=policy,
            knobs=knobs,
            tick=tick,
            migrate=migrate,
            kill_grace=kill_grace,
            cancel_grace=cancel_grace,
            metrics_port=metrics_port,
        )
    )


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("loop")(loop)
