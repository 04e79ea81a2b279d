"""A real control loop driven from a test: one on an API test server's database, and
passes run until a condition holds (importable from any test directory, as
``live_loop``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics


def drive(
    loop: ControlLoop, until: Callable[[], bool], timeout: float = 20.0, pause: float = 0.02
) -> None:
    """Run passes until ``until()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not reached"
        loop.run_pass()
        time.sleep(pause)


@contextmanager
def loop_on(server: Any, **overrides: float) -> Iterator[ControlLoop]:
    """A started loop on ``server``'s database and home (``tests/api``'s ``Server``),
    with short graces so that tests of stopping runs stay short; released after."""
    running = ControlLoop(
        LoopConfig(db_url=server.state.settings.db_url, home=server.home, tick=0.05,
                   kill_grace=0.5, cancel_grace=0.5, **overrides),  # type: ignore[arg-type]
        engine=server.state.db.engine, metrics=Metrics(),
    )
    running.start()
    try:
        yield running
    finally:
        running.release_lease()
        running.close()
