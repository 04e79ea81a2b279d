"""The scheduler a live loop runs: the policy and knobs named on ``masnaa up``/``masnaa loop``
reach the core, and what the loop cannot run is refused before anything is touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app
from masnaa.service import jobs
from masnaa.service.daemon import main as daemon_main
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics
from masnaa.service.scheduling import (
    Knob,
    SchedulingError,
    describe,
    live_policies,
    live_scheduler,
    parse_knobs,
)
from masnaa.store import models as m

from .conftest import Factory


def test_knobs_reach_the_config_typed_like_their_defaults() -> None:
    knobs = parse_knobs(["reclaim_after=600", "short-first-in-tenant=true", "backfill_depth=3"])
    config = live_scheduler("masnaa", knobs)
    assert (config.reclaim_after, config.short_first_in_tenant, config.backfill_depth) == (
        600.0, True, 3
    )
    assert config.explain_waits  # users read the reasons the live loop writes
    assert describe(config, knobs) == (
        "masnaa (reclaim_after=600.0, short_first_in_tenant=True, backfill_depth=3)"
    )
    assert describe(live_scheduler("fifo-backfill"), ()) == "fifo-backfill"


@pytest.mark.parametrize(
    ("policy", "texts", "code", "says"),
    [
        ("nope", [], "unknown-policy", "choose one of: fifo, fifo-backfill, las, masnaa"),
        ("srtf-oracle", [], "oracle-policy", "true runtime"),
        ("masnaa", ["nope=1"], "bad-knob", "valid knobs: backfill_depth"),
        ("masnaa", ["explain_waits=false"], "bad-knob", "valid knobs"),
        ("masnaa", ["reclaim_after=soon"], "bad-knob", "takes a number"),
        ("masnaa", ["backfill_depth=-1"], "bad-knob", "backfill_depth must be ≥ 0"),
        ("masnaa", ["reclaim_after=1", "reclaim_after=2"], "bad-knob", "more than once"),
    ],
)
def test_what_a_live_loop_cannot_run_is_refused_with_a_code(
    policy: str, texts: list[str], code: str, says: str
) -> None:
    with pytest.raises(SchedulingError, match=says) as caught:
        live_scheduler(policy, parse_knobs(texts))
    assert caught.value.code == code
    assert "srtf-oracle" not in live_policies()


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--policy", "srtf-oracle"], "oracle-policy"),
        (["--knob", "backfill_depth=-1"], "bad-knob"),
    ],
)
def test_up_refuses_before_it_creates_anything(
    tmp_path: Path, args: list[str], code: str
) -> None:
    home = tmp_path / "home"
    res = CliRunner().invoke(app, ["up", "--home", str(home), "--port", "1", *args])
    assert res.exit_code == 1
    assert f"({code})" in res.output
    assert not home.exists()  # no database, no token, no factory applied


def test_the_loop_process_refuses_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "m.sqlite"
    with pytest.raises(SystemExit) as caught:
        daemon_main(["--db", f"sqlite:///{db}", "--knob", "nope=1"])
    assert caught.value.code == 2
    assert "[bad-knob]" in capsys.readouterr().err
    assert not os.path.exists(db)  # not even migrated


def _loop(factory: Factory, policy: str = "masnaa", knobs: tuple[Knob, ...] = ()) -> ControlLoop:
    loop = ControlLoop(
        LoopConfig(db_url=factory.url, home=factory.home, tick=0.05, policy=policy,
                   knobs=knobs),
        engine=factory.engine,
        metrics=Metrics(),
    )
    loop.start()
    return loop


def _start(loop: ControlLoop, factory: Factory, spec: dict[str, object]) -> str:
    """Submit ``spec`` and run passes until it runs."""
    (job_id,) = factory.submit([spec])
    deadline = time.monotonic() + 15
    while factory.jobs()[job_id].state != "running":
        assert time.monotonic() < deadline, "the first job did not start"
        loop.run_pass()
        time.sleep(0.03)
    return job_id


def _cancel_all(loop: ControlLoop, factory: Factory, ids: list[str]) -> None:
    with factory.sessions() as s, s.begin():
        for i in ids:
            jobs.cancel(s, factory.caller, i, now=time.time())
    for _ in range(100):
        loop.run_pass()
        if all(r.state == "cancelled" for r in factory.jobs().values()):
            return
        time.sleep(0.05)


def _scene(
    factory: Factory, policy: str, knobs: tuple[Knob, ...], first: dict[str, object],
    then: list[dict[str, object]],
) -> list[m.Job]:
    """Run ``first`` under a loop with ``policy`` and ``knobs``, then submit ``then`` and
    give the loop a few passes: the rows of ``then`` as they are after them."""
    loop = _loop(factory, policy, knobs)
    try:
        busy = _start(loop, factory, first)
        ids = [factory.submit([spec])[0] for spec in then]  # one after another, in order
        for _ in range(5):
            loop.run_pass()
            time.sleep(0.03)
        rows = factory.jobs()
        _cancel_all(loop, factory, [busy, *ids])
        return [rows[busy], *(rows[i] for i in ids)]
    finally:
        loop.release_lease()
        loop.close()


BUSY = {"command": ["sleep", "30"], "gpus_per_task": 6, "time_limit": 3600.0}
HEAD = {"command": ["sleep", "30"], "gpus_per_task": 8, "time_limit": 3600.0}
SHORT = {"command": ["sleep", "30"], "gpus_per_task": 2, "time_limit": 60.0}


@pytest.mark.parametrize(("policy", "short"), [("masnaa", "running"), ("fifo", "pending")])
def test_the_policy_named_is_the_one_the_live_loop_runs(
    factory: Factory, policy: str, short: str
) -> None:
    # Six GPUs busy for an hour, a blocked 8-GPU head, then a 2-GPU job that ends before
    # the head could start: masnaa backfills it, fifo keeps it behind the head.
    _, head, pair = _scene(factory, policy, (), BUSY, [HEAD, SHORT])
    assert (head.state, pair.state) == ("pending", short), (head.wait_message, pair.wait_message)


@pytest.mark.parametrize(("knobs", "stops"), [((), True), (
    (("max_preemptions_per_pass", 0),), False)])
def test_a_knob_changes_what_the_live_loop_decides(
    factory: Factory, knobs: tuple[Knob, ...], stops: bool
) -> None:
    # A high-class job stops a low-class one, unless the pass may issue no preemption.
    low_job = {"command": ["sleep", "30"], "gpus_per_task": 8, "priority_class": "low"}
    high_job = {"command": ["sleep", "30"], "gpus_per_task": 8, "priority_class": "high"}
    low, high = _scene(factory, "masnaa", knobs, low_job, [high_job])
    stopped = [e.code for e in factory.events() if e.job_id == low.id].count("preempting")
    assert stopped == (1 if stops else 0)
    if not stops:
        assert (low.state, high.state) == ("running", "pending")


def test_the_live_loop_keeps_the_holder_across_passes_and_restarts(factory: Factory) -> None:
    hold: tuple[Knob, ...] = (("hold_reservation", True),)
    loop = _loop(factory, knobs=hold)
    try:
        busy = _start(loop, factory, BUSY)
        (head,) = factory.submit([HEAD])
        loop.run_pass()
        loop.run_pass()
        assert factory.jobs()[head].wait_code == "reserved"
        assert loop.live is not None and loop.live.reserved_for == head
    finally:
        loop.release_lease()
        loop.close()
    again = _loop(factory, knobs=hold)  # a new process reads the hold back from the store
    try:
        assert again.live is not None and again.live.reserved_for == head
        _cancel_all(again, factory, [busy, head])
        assert again.live.reserved_for is None  # the holder left the queue
    finally:
        again.release_lease()
        again.close()
