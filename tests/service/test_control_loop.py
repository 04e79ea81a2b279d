"""The control loop against a real database and real processes: the lifecycle with a reason on
every change, cancellation, time limits, preemption with grace and requeue, reconciliation
after a crash at each step, the lease, and the table that settles ended runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from live_loop import drive
from masnaa.domain import reasons
from masnaa.executors import records
from masnaa.executors.base import Observed
from masnaa.scheduler import decide
from masnaa.service import apply, jobs
from masnaa.service.lease import LeaseHeld
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics
from masnaa.service.reconcile import settle
from masnaa.store import models as m

from .conftest import Factory


def make_loop(factory: Factory, **overrides: float) -> ControlLoop:
    config = LoopConfig(
        db_url=factory.url,
        home=factory.home,
        tick=0.05,
        kill_grace=float(overrides.pop("kill_grace", 0.5)),
        cancel_grace=float(overrides.pop("cancel_grace", 0.5)),
        lease_ttl=float(overrides.pop("lease_ttl", 15.0)),
    )
    return ControlLoop(config, engine=factory.engine, metrics=Metrics())


@pytest.fixture
def loop(factory: Factory) -> Iterator[ControlLoop]:
    running = make_loop(factory)
    running.start()
    yield running
    running.release_lease()
    running.close()



def states(factory: Factory, *ids: str) -> list[str]:
    rows = factory.jobs()
    return [rows[i].state for i in ids]


def codes(factory: Factory, job_id: str) -> list[str]:
    return [e.code for e in factory.events() if e.job_id == job_id]


def ended(factory: Factory, *ids: str) -> Callable[[], bool]:
    return lambda: all(s in ("succeeded", "failed", "cancelled") for s in states(factory, *ids))


def test_a_job_runs_on_its_gpus_with_a_reason_on_every_change(
    factory: Factory, loop: ControlLoop
) -> None:
    ok, bad = factory.submit(
        [
            {"command": ["sh", "-c", "echo $CUDA_VISIBLE_DEVICES"], "gpus_per_task": 3},
            {"command": ["sh", "-c", "exit 3"]},
        ]
    )
    drive(loop, ended(factory, ok, bad))
    rows = factory.jobs()
    assert (rows[ok].state, rows[ok].exit_code, rows[ok].attempt) == ("succeeded", 0, 1)
    assert (rows[bad].state, rows[bad].exit_code) == ("failed", 3)
    assert codes(factory, ok) == ["submitted", "admitted", "started", "succeeded"]
    assert all(e.reason for e in factory.events())
    gpus = [str(g) for s in rows[ok].placement or [] for g in s["gpus"]]
    assert Path(rows[ok].stdout_path or "").read_text().strip() == ",".join(gpus)
    assert rows[ok].started_at is not None and rows[ok].ended_at is not None
    assert loop.metrics is not None
    assert loop.metrics.transitions.labels("running", "succeeded")._value.get() >= 1


def test_waiting_jobs_get_a_reason_and_queue_in_order(factory: Factory, loop: ControlLoop) -> None:
    ids = factory.submit([{"command": ["sleep", "30"], "gpus_per_task": 8} for _ in range(3)])
    drive(loop, lambda: "running" in states(factory, *ids))
    loop.run_pass()
    rows = factory.jobs()
    assert sorted(states(factory, *ids)) == ["pending", "pending", "running"]
    for row in rows.values():
        if row.state == "pending":
            assert row.wait_code and row.wait_message
            assert row.estimated_start is None or row.estimated_start > time.time()
    assert any(r.wait_code == "reserved" for r in rows.values())
    with factory.sessions() as s, s.begin():
        for i in ids:
            jobs.cancel(s, factory.caller, i, now=time.time())
    drive(loop, ended(factory, *ids))
    assert states(factory, *ids) == ["cancelled"] * 3


def test_cancel_stops_a_running_job_with_term_then_kill(
    factory: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    (job,) = factory.submit(
        [
            {
                "command": [
                    "sh",
                    "-c",
                    f"trap 'echo term' TERM; touch {ready}; while :; do sleep 0.05; done",
                ]
            }
        ]
    )
    drive(loop, ready.exists)
    with factory.sessions() as s, s.begin():
        jobs.cancel(s, factory.caller, job, now=time.time())
    asked = time.monotonic()
    drive(loop, ended(factory, job))
    assert time.monotonic() - asked >= 0.45  # the grace was given
    row = factory.jobs()[job]
    assert row.state == "cancelled" and row.exit_code == 137
    assert codes(factory, job)[-2:] == ["cancel-requested", "cancelled"]
    assert "term" in Path(row.stdout_path or "").read_text()


def test_the_time_limit_fails_the_job_with_its_reason(factory: Factory, loop: ControlLoop) -> None:
    (job,) = factory.submit([{"command": ["sleep", "30"], "time_limit": 0.5}])
    drive(loop, ended(factory, job))
    row = factory.jobs()[job]
    assert row.state == "failed" and codes(factory, job)[-1] == "time-limit"
    assert row.state_reason.startswith("stopped at its time limit, ")


def test_preemption_gives_grace_then_requeues_under_a_new_attempt(
    factory: Factory, tmp_path: Path
) -> None:
    with factory.sessions() as s, s.begin():
        s.execute(
            update(m.PriorityClass).where(m.PriorityClass.name == "low").values(grace_seconds=1.0)
        )
    loop = make_loop(factory)
    loop.start()
    try:
        marks = tmp_path / "marks"
        marks.mkdir()
        body = (
            f"echo $MASNAA_ATTEMPT >> {marks}/low; "
            "trap 'echo checkpoint; exit 0' TERM; "
            "if [ $MASNAA_ATTEMPT = 1 ]; then sleep 60 & wait; fi"
        )
        (low,) = factory.submit(
            [{"command": ["sh", "-c", body], "gpus_per_task": 8, "priority_class": "low"}]
        )
        drive(loop, (marks / "low").exists)  # really running, not just launched
        (high,) = factory.submit(
            [{"command": ["sh", "-c", "sleep 0.2"], "gpus_per_task": 8, "priority_class": "high"}]
        )
        drive(loop, ended(factory, low, high), timeout=30)
    finally:
        loop.release_lease()
        loop.close()
    rows = factory.jobs()
    assert rows[high].state == "succeeded" and rows[low].state == "succeeded"
    low_codes = codes(factory, low)
    assert (
        low_codes.index("preempting") < low_codes.index("preempted") < low_codes.index("succeeded")
    )
    assert rows[low].attempt == 2
    assert (marks / "low").read_text().split() == ["1", "2"]
    assert rows[low].attained_service > 0
    high_started = next(e.at for e in factory.events() if e.job_id == high and e.code == "started")
    preempted_at = next(e.at for e in factory.events() if e.job_id == low and e.code == "preempted")
    assert high_started >= preempted_at  # the GPUs were handed over, not shared


def test_a_crash_after_admitted_launches_on_restart(factory: Factory, tmp_path: Path) -> None:
    (job,) = factory.submit([{"command": ["sh", "-c", "echo once >> " + str(tmp_path / "runs")]}])
    first = make_loop(factory)
    first.start()
    first._observe()
    assert first.live is not None
    decision = decide(first.live.snapshot(), first.live.queue, time.time(), first.scheduler)
    with factory.sessions() as s, s.begin():  # what the loop commits before it launches...
        apply.admit(s, decision.starts, now=time.time(), log_paths=first._log_paths)
    first.close()  # ...and then it dies, its lease left behind
    assert states(factory, job) == ["admitted"]
    second = make_loop(factory)
    second.start()
    # The launch at start is counted like any pass's.
    assert second.metrics is not None
    assert second.metrics.transitions.labels("admitted", "running")._value.get() == 1
    drive(second, ended(factory, job))
    second.release_lease()
    second.close()
    assert states(factory, job) == ["succeeded"]
    assert (tmp_path / "runs").read_text() == "once\n"


def test_a_claim_that_never_spawned_is_lost_and_requeued(factory: Factory, tmp_path: Path) -> None:
    (job,) = factory.submit(
        [{"command": ["sh", "-c", "echo $MASNAA_ATTEMPT >> " + str(tmp_path / "runs")]}]
    )
    with factory.sessions() as s, s.begin():
        row = s.get(m.Job, job)
        assert row is not None
        row.state, row.attempt = "admitted", 1
        row.placement, row.site, row.gpu_type = (
            [{"node": "box", "gpus": [0]}],
            "local",
            "virtual-gpu",
        )
    d = records.attempt_dir(factory.home / "jobs", job, 1)
    d.mkdir(parents=True)
    records.create_json(d / records.SPEC, {"argv": ["true"]})  # claimed, then the launcher died
    loop = make_loop(factory)
    loop.start()
    drive(loop, ended(factory, job))
    loop.release_lease()
    loop.close()
    row = factory.jobs()[job]
    assert row.state == "succeeded" and row.attempt == 2
    assert "requeued" in codes(factory, job)
    assert (tmp_path / "runs").read_text() == "2\n"


def test_a_launch_the_machine_fails_waits_and_the_others_go_on(
    factory: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    (first,) = factory.submit([{"command": ["sh", "-c", "sleep 0.5; exit 3"]}])
    drive(loop, lambda: states(factory, first) == ["running"])
    (blocked,) = factory.submit([{"command": ["sh", "-c", "echo ran >> " + str(tmp_path / "b")]}])
    # A file where its run directory goes: even root cannot make that directory.
    (factory.home / "jobs" / blocked).write_text("in the way")
    for _ in range(10):
        loop.run_pass()
    drive(loop, lambda: states(factory, first) == ["failed"])  # its exit still recorded
    assert factory.jobs()[first].exit_code == 3
    assert states(factory, blocked) == ["admitted"]  # waits for the machine, not failed
    row = factory.jobs()[blocked]
    assert row.wait_code == "launch-retry" and "Not a directory" in (row.wait_message or "")
    (factory.home / "jobs" / blocked).unlink()
    drive(loop, ended(factory, blocked))
    assert states(factory, blocked) == ["succeeded"]
    assert factory.jobs()[blocked].wait_message is None
    assert (tmp_path / "b").read_text() == "ran\n"


def test_a_run_that_never_launched_is_cancelled_or_moved_at_once(
    factory: Factory, loop: ControlLoop
) -> None:
    cancelled, moved = factory.submit([{"command": ["true"]}, {"command": ["true"]}])
    for job in (cancelled, moved):  # both wait on a launch the machine fails
        (factory.home / "jobs" / job).write_text("in the way")
    drive(loop, lambda: [r.wait_code for r in map(factory.jobs().get, (cancelled, moved))]
          == ["launch-retry"] * 2)  # fmt: skip
    with factory.sessions() as s, s.begin():
        jobs.cancel(s, factory.caller, cancelled, now=time.time())
        row = s.get(m.Job, moved)
        assert row is not None
        row.preempt_deadline = time.time() + 120  # as a drain asks it to move
    # Back in the queue (it is admitted again at once, and blocked again there).
    drive(loop, lambda: states(factory, cancelled) == ["cancelled"]
          and "preempted" in codes(factory, moved))
    assert factory.jobs()[moved].attempt == 2
    (factory.home / "jobs" / moved).unlink()
    (later,) = factory.submit([{"command": ["true"]}])  # and the loop goes on
    drive(loop, ended(factory, later, moved))
    assert states(factory, later, moved) == ["succeeded", "succeeded"]


def test_one_loop_per_database(factory: Factory, loop: ControlLoop) -> None:
    other = make_loop(factory)
    other.lease.identity = {**other.lease.identity, "host": "another-host"}
    with pytest.raises(LeaseHeld, match="another control loop"):
        other.start()
    loop.release_lease()
    other.start()
    other.release_lease()
    other.close()


def exited(code: int | None, reason: str = "exited", sig: int | None = None) -> Observed:
    return Observed("exited", exit_code=code, signal=sig, reason=reason)  # type: ignore[arg-type]


LOST = Observed("lost", message="gone")


@pytest.mark.parametrize(
    ("seen", "attempt", "cancel", "preempting", "state", "code", "said"),
    [
        (exited(0), 1, False, False, "succeeded", "succeeded", "exited with code 0"),
        (exited(3), 1, False, False, "failed", "exit-code", "exited with code 3"),
        (exited(0), 1, True, False, "succeeded", "succeeded",  # finished before the stop
         "exited with code 0"),
        (exited(None, sig=9), 1, False, False, "failed", "exit-code", "ended by signal 9"),
        (exited(137, "time-limit", 9), 1, False, False, "failed", "time-limit",
         "stopped at its time limit, exit code 137 (signal 9)"),
        (exited(143, "stopped", 15), 1, True, False, "cancelled", "cancelled",
         "cancelled; stopped, exit code 143 (signal 15)"),
        (exited(0, "stopped"), 1, False, True, "pending", "preempted",
         "preempted; stopped, exit code 0; back in the queue"),
        (exited(None, "stopped"), 1, True, True, "cancelled", "cancelled",
         "cancelled; stopped, no exit code"),
        (exited(143, "stopped", 15), 1, False, False, "pending", "requeued",
         "stopped from outside Masnaa, exit code 143 (signal 15); requeued for run 2"),
        (exited(143, "stopped", 15), 5, False, False, "failed", "requeued",
         "stopped from outside Masnaa, exit code 143 (signal 15); it ran 5 times, the most "
         "allowed"),
        (Observed("exited", signal=15, reason="cancelled-outside", stop_reason="cancelled in "
                  "Slurm by uid 0 (root)"), 1, False, False, "cancelled", "cancelled",
         "cancelled in Slurm by uid 0 (root), not by Masnaa: not run again; stopped, "
         "signal 15"),
        (exited(127, "launch-failed"), 1, False, False, "failed", "launch-failed",
         "could not start, exit code 127"),
        (LOST, 1, False, False, "pending", "requeued",
         "run 1 was lost: gone; requeued for run 2"),
        (LOST, 5, False, False, "failed", "lost", "run 5 was lost: gone; it ran 5 times, the most "
         "allowed"),
        (LOST, 2, True, False, "cancelled", "cancelled", "cancelled; run 2 was lost: gone"),
        (LOST, 2, False, True, "pending", "preempted",
         "preempted; run 2 was lost: gone; back in the queue"),
    ],
)
def test_settle_table(
    seen: Observed, attempt: int, cancel: bool, preempting: bool, state: str, code: str, said: str
) -> None:
    out = settle(
        seen, attempt=attempt, cancel_requested=cancel, preempting=preempting, max_attempts=5
    )
    assert (out.state.value, out.code) == (state, code)
    assert reasons.english(out.reason) == said


def test_settle_refuses_a_run_that_has_not_ended() -> None:
    with pytest.raises(ValueError):
        settle(
            Observed("running"), attempt=1, cancel_requested=False, preempting=False, max_attempts=5
        )


def test_pending_set_follows_submissions_and_cancels(factory: Factory, loop: ControlLoop) -> None:
    ids = factory.submit([{"command": ["sleep", "30"], "gpus_per_task": 8} for _ in range(2)])
    drive(loop, lambda: "running" in states(factory, *ids))
    if states(factory, ids[0]) != ["running"]:
        ids.reverse()
    assert loop.live is not None and ids[1] in loop.live.queue
    waiting = factory.jobs()[ids[1]]  # the loop writes why it waits, as text and phrases
    assert waiting.wait_code and waiting.wait_message and waiting.wait_phrases
    assert reasons.english(reasons.from_json(waiting.wait_phrases)) == waiting.wait_message
    with factory.sessions() as s, s.begin():
        jobs.cancel(s, factory.caller, ids[1], now=time.time())
    loop.run_pass()
    assert ids[1] not in loop.live.queue
    assert factory.jobs()[ids[1]].wait_phrases == []
    with factory.sessions() as s, s.begin():
        jobs.cancel(s, factory.caller, ids[0], now=time.time())
    drive(loop, ended(factory, *ids))
    with factory.sessions() as s:
        assert s.scalars(select(m.Job.state).where(m.Job.id == ids[1])).one() == "cancelled"


def test_a_site_without_its_executor_takes_no_work(factory: Factory) -> None:
    from masnaa.executors.local import LocalExecutor
    from masnaa.factory import apply_factory
    from masnaa.factory.spec import parse_factory

    doc = {
        "sites": [
            {
                "name": "za-1",
                "country": "ZA",
                "currency": "ZAR",
                "executor": "slurm",
                "slurm": {"partition": "gpu"},
            }
        ],
        "gpu_types": [{"name": "virtual-gpu"}],
        "nodes": [{"site": "za-1", "gpu_type": "virtual-gpu", "gpus": 8, "names": ["za-n0"]}],
    }
    with factory.sessions() as s, s.begin():
        report = apply_factory(s, parse_factory(doc))
        assert report.created["site options"] == 1
        stored = s.get(m.ServiceState, "site-options:za-1")
        assert stored is not None and stored.value == {"slurm": {"partition": "gpu"}}
    only_local = ControlLoop(
        LoopConfig(db_url=factory.url, home=factory.home, tick=0.05),
        engine=factory.engine,
        executors={"local": LocalExecutor(factory.home / "jobs")},
    )
    only_local.start()
    try:
        za, anywhere = factory.submit(
            [{"command": ["true"], "sites": ["za-1"]}, {"command": ["true"]}]
        )
        drive(only_local, ended(factory, anywhere))
        only_local.run_pass()
        rows = factory.jobs()
        assert rows[anywhere].state == "succeeded" and rows[anywhere].site == "local"
        assert rows[za].state == "pending" and rows[za].wait_code == "nodes-unavailable"
    finally:
        only_local.release_lease()
        only_local.close()


def test_a_quota_set_while_the_loop_runs_holds_from_the_next_passes(factory: Factory) -> None:
    from masnaa.service.tenancy import set_quota

    running = ControlLoop(
        LoopConfig(db_url=factory.url, home=factory.home, tick=0.05, catalog_interval=0.0),
        engine=factory.engine,
    )
    running.start()  # reads tenancy before the quota exists
    try:
        with factory.sessions() as s, s.begin():
            site, gpu = s.execute(select(m.Site.name, m.GpuType.name)).one()
            set_quota(s, factory.caller, tenant="local", site=site, gpu_type=gpu, nominal=2,
                      borrowing_limit=0, lending_limit=None)
        ids = factory.submit([{"command": ["sleep", "30"]} for _ in range(4)])
        drive(running, lambda: states(factory, *ids).count("running") >= 2)
        running.run_pass()
        rows = factory.jobs()
        assert sorted(states(factory, *ids)) == ["pending", "pending", "running", "running"]
        assert {rows[i].wait_code for i in ids if rows[i].state == "pending"} == {"quota"}
        with factory.sessions() as s, s.begin():
            for i in ids:
                jobs.cancel(s, factory.caller, i, now=time.time())
        drive(running, ended(factory, *ids))
    finally:
        running.release_lease()
        running.close()
