"""The control loop's process: ``masnaa loop`` and ``python -m masnaa.service.daemon``.

One ``ControlLoop`` (``service.loop``) over one database, with the policy and
knobs it is given (``service.scheduling``; a refusal exits with code 2 before
anything is touched), migrated first unless told not to, run until SIGTERM or
SIGINT; runs keep going under their supervisors after it stops. The lease is
released on the way out, so the next loop need not wait for it to go stale; a
loop that finds the lease held by another exits with code 3.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from masnaa.service.launch import jobs_identity
from masnaa.service.lease import LeaseHeld
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics
from masnaa.service.scheduling import (
    Knob,
    SchedulingError,
    describe,
    live_scheduler,
    parse_knobs,
)
from masnaa.store.db import database_error, upgrade

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m masnaa.service.daemon", description="Run Masnaa's control loop."
    )
    parser.add_argument(
        "--db", default=None, help="database URL (default: MASNAA_DB_URL or the home's SQLite)"
    )
    parser.add_argument("--home", default=None, help="MASNAA_HOME (default ~/.masnaa)")
    parser.add_argument("--policy", default="masnaa")
    parser.add_argument(
        "--knob", action="append", default=[], metavar="NAME=VALUE",
        help="a scheduler knob (repeatable), as with `masnaa sim --knob`",
    )
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--kill-grace", type=float, default=30.0)
    parser.add_argument("--cancel-grace", type=float, default=30.0)
    parser.add_argument("--no-migrate", action="store_true")
    parser.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT",
        help="serve the loop's Prometheus metrics on 127.0.0.1:PORT/metrics",
    )
    args = parser.parse_args(argv)
    try:
        knobs = parse_knobs(args.knob)
        live_scheduler(args.policy, knobs)
    except SchedulingError as e:
        parser.error(f"{e} [{e.code}]")
    return run_forever(
        home=Path(args.home) if args.home else None,
        db_url=args.db,
        policy=args.policy,
        knobs=knobs,
        tick=args.tick,
        kill_grace=args.kill_grace,
        cancel_grace=args.cancel_grace,
        migrate=not args.no_migrate,
        metrics_port=args.metrics_port,
    )


def run_forever(
    *,
    home: Path | None,
    db_url: str | None,
    policy: str = "masnaa",
    knobs: tuple[Knob, ...] = (),
    tick: float = 0.5,
    kill_grace: float = 30.0,
    cancel_grace: float = 30.0,
    migrate: bool = True,
    metrics_port: int | None = None,
) -> int:
    """The ``masnaa loop`` command: run until SIGTERM or SIGINT.

    ``metrics_port``: serve the loop's own metrics (passes, transitions, metering) on
    ``127.0.0.1:PORT/metrics``. API workers serve theirs on their own port; under
    ``masnaa up`` one process serves both."""
    from masnaa.store.db import default_db_url, masnaa_home

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if home is not None:
        os.environ["MASNAA_HOME"] = str(home)
    home = home or masnaa_home()
    url = db_url or default_db_url()
    try:
        if migrate:
            upgrade(url)
    except SQLAlchemyError as exc:
        log.error("%s", database_error(url, exc))
        return 1
    config = LoopConfig(
        db_url=url,
        home=home,
        policy=policy,
        knobs=knobs,
        tick=tick,
        kill_grace=kill_grace,
        cancel_grace=cancel_grace,
    )
    metrics = Metrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    loop = ControlLoop(config, metrics=metrics)
    log.info("scheduling with %s", describe(loop.scheduler, knobs))
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        try:
            loop.start()
        except (ProgrammingError, OperationalError) as exc:  # absent, unreachable, or old
            log.error("%s%s", database_error(url, exc),
                      "" if migrate else " (run with --migrate if its schema is older)")
            return 1
        with loop.read() as s:  # said once, plainly: whose account every job runs as
            line, isolated = jobs_identity(s)
        log.log(logging.INFO if isolated else logging.WARNING, "jobs %s", line)
        loop.run(stop)
    except LeaseHeld as exc:
        log.error("%s", exc)
        return 3
    finally:
        with contextlib.suppress(Exception):
            loop.release_lease()
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
