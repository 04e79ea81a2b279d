"""Draining moves the work: a real control loop, the real local executor, a two-node factory
(node ``gpu-a`` at ma-1 in Morocco, ``gpu-b`` at ke-1 in Kenya).

- drain A (evacuate, the default): the run gets SIGTERM within its class's grace, is
  requeued with its attained service, and runs again on B; the history names the drain
  and who asked, and the audit chain records it;
- drain A with ``evacuate=False``: the run finishes on A;
- a job whose data may not leave Morocco waits, with a reason naming the drain and the
  rule, and runs on A again once A is undrained;
- a drained site moves its runs the same way; drains are idempotent and refuse bad input
  with a code and a sentence; concurrent drains of the same runs ask each job once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from live_loop import drive
from masnaa.service import evacuation, residency
from masnaa.service.audit import verify_chain
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.tenancy import Caller, ServiceError, bootstrap, set_quota
from masnaa.store import models as m
from masnaa.store.residency import AuditRow

from .conftest import Database, Factory

GRACE = 1.0


@pytest.fixture
def two(database: Database, tmp_path: Path) -> Factory:
    """ma-1 (MA) with node gpu-a, ke-1 (KE) with node gpu-b, 2 GPUs each; short grace."""
    with database.sessions() as s, s.begin():
        bootstrap(s)
        op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
        caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        ma = m.Site(name="ma-1", country="MA", currency="MAD")
        ke = m.Site(name="ke-1", country="KE", currency="KES")
        gpu = m.GpuType(name="h100")
        s.add_all([ma, ke, gpu])
        s.flush()
        s.add_all([
            m.Node(site_id=ma.id, name="gpu-a", gpu_type_id=gpu.id, gpu_count=2,
                   domains=["gpu-a", "ma-1"], virtual=True),
            m.Node(site_id=ke.id, name="gpu-b", gpu_type_id=gpu.id, gpu_count=2,
                   domains=["gpu-b", "ke-1"], virtual=True),
        ])
        for site in ("ma-1", "ke-1"):
            set_quota(s, caller, tenant="local", site=site, gpu_type="h100", nominal=4,
                      borrowing_limit=None, lending_limit=None)
        s.execute(update(m.PriorityClass).values(grace_seconds=GRACE))
    home = tmp_path / "home"
    home.mkdir()
    return Factory(database.url, home, database.engine, database.sessions, caller)


@pytest.fixture
def loop(two: Factory) -> Iterator[ControlLoop]:
    running = ControlLoop(
        LoopConfig(db_url=two.url, home=two.home, tick=0.05, kill_grace=0.5, cancel_grace=0.5),
        engine=two.engine,
    )
    running.start()
    yield running
    running.release_lease()
    running.close()



def drain(f: Factory, node: str, *, evacuate: bool = True, reason: str = "fan failure",
          caller: Caller | None = None) -> evacuation.Change:
    with f.sessions() as s, s.begin():
        _, change = evacuation.drain_node(s, caller or f.caller, node, reason=reason,
                                          evacuate_runs=evacuate, now=time.time())
        return change


def undrain(f: Factory, node: str) -> None:
    with f.sessions() as s, s.begin():
        evacuation.undrain_node(s, f.caller, node, reason="", now=time.time())


def events(f: Factory, job: str) -> list[tuple[str, str]]:
    return [(e.code, e.reason) for e in f.events() if e.job_id == job]


def node_of(row: m.Job) -> str:
    return str((row.placement or [{}])[0]["node"])


def audit(f: Factory, action: str) -> list[AuditRow]:
    with f.sessions() as s:
        return list(s.scalars(select(AuditRow).where(AuditRow.action == action)
                              .order_by(AuditRow.seq)))


def checkpointing(marks: Path, *, until: Path | None = None) -> list[str]:
    """Writes its attempt to ``marks``; on SIGTERM writes ``term`` and exits 0 (a checkpoint).
    The first run waits (for ``until``, or a minute); later runs end at once."""
    first = f"while [ ! -e {until} ]; do sleep 0.05; done" if until else "sleep 60 & wait"
    body = (f"echo $MASNAA_ATTEMPT >> {marks}; trap 'echo term >> {marks}; exit 0' TERM; "
            f"if [ $MASNAA_ATTEMPT = 1 ]; then {first}; fi")
    return ["sh", "-c", body]


def start_on_a(f: Factory, loop: ControlLoop, marks: Path, until: Path | None = None) -> str:
    """Submit a job and see it really running on gpu-a (gpu-b is kept drained meanwhile)."""
    drain(f, "gpu-b", evacuate=False, reason="kept free")
    (job,) = f.submit([{"command": checkpointing(marks, until=until), "gpus_per_task": 2}])
    drive(loop, marks.exists)
    row = f.jobs()[job]
    assert (row.state, node_of(row), row.attempt) == ("running", "gpu-a", 1)
    undrain(f, "gpu-b")
    return job


def test_a_drained_node_moves_its_run_to_the_other_node(
    two: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    job = start_on_a(two, loop, marks)
    change = drain(two, "gpu-a")
    asked = time.monotonic()
    assert change.evacuated == (job,) and change.state == "drained"
    drive(loop, lambda: two.jobs()[job].state == "succeeded")
    assert time.monotonic() - asked < GRACE + 5
    row = two.jobs()[job]
    assert (node_of(row), row.site, row.attempt) == ("gpu-b", "ke-1", 2)
    assert marks.read_text().split() == ["1", "term", "2"]  # SIGTERM, checkpoint, run again
    assert row.attained_service > 0  # the first run's GPU-seconds were kept
    history = events(two, job)
    codes = [c for c, _ in history]
    assert codes.index("preempting") < codes.index("preempted") < codes.index("succeeded")
    why = dict(history)["preempting"]
    assert "node gpu-a was drained by operator; note: fan failure" in why
    assert f"{GRACE:g} s to checkpoint" in why
    (record,) = [r for r in audit(two, "node-state") if r.details["node"] == "gpu-a"]
    assert record.actor == "operator" and record.site == "ma-1"
    assert record.details["evacuate"] is True and record.details["evacuated_jobs"] == [job]
    assert record.details["previous_state"] == "up" and record.details["state"] == "drained"
    with two.sessions() as s:
        assert verify_chain(s).ok


def test_a_drain_with_evacuate_false_lets_the_run_finish_where_it_is(
    two: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    marks, go = tmp_path / "marks", tmp_path / "go"
    job = start_on_a(two, loop, marks, until=go)
    change = drain(two, "gpu-a", evacuate=False)
    assert change.evacuated == () and change.state == "drained"
    for _ in range(10):
        loop.run_pass()
        time.sleep(0.03)
    row = two.jobs()[job]
    assert (row.state, node_of(row), row.preempt_deadline) == ("running", "gpu-a", None)
    go.touch()
    drive(loop, lambda: two.jobs()[job].state == "succeeded")
    row = two.jobs()[job]
    assert (node_of(row), row.attempt) == ("gpu-a", 1)
    assert "term" not in marks.read_text()
    assert "preempting" not in [c for c, _ in events(two, job)]
    (record,) = [r for r in audit(two, "node-state") if r.details["node"] == "gpu-a"]
    assert record.details["evacuate"] is False and record.details["evacuated_jobs"] == []


def test_a_job_whose_data_may_not_leave_waits_naming_the_drain_and_the_rule(
    two: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    with two.sessions() as s, s.begin():
        data = residency.register_dataset(
            s, two.caller, residency.DatasetIn(name="scans", home_site="ma-1",
                                               data_class="health", tenant="local"),
            now=time.time())
    marks = tmp_path / "marks"
    (job,) = two.submit([{"command": checkpointing(marks), "gpus_per_task": 2,
                          "datasets": [data.row.id]}])
    assert two.jobs()[job].sites == ["ma-1"]  # Moroccan health data stays in Morocco
    drive(loop, marks.exists)
    assert node_of(two.jobs()[job]) == "gpu-a"
    assert drain(two, "gpu-a").evacuated == (job,)
    drive(loop, lambda: (r := two.jobs()[job]).state == "pending" and bool(r.wait_message)
          and "drain" in (r.wait_message or ""))
    row = two.jobs()[job]
    message = row.wait_message or ""
    assert row.wait_code == "nodes-unavailable"
    assert "node gpu-a is drained (fan failure)" in message
    assert "its data may go only to ma-1" in message
    assert "the rules refuse ke-1 (MA." in message and "Law 09-08" in message
    for _ in range(5):  # gpu-b is free, but the law keeps the job off it
        loop.run_pass()
    assert two.jobs()[job].state == "pending"
    undrain(two, "gpu-a")  # back in service: it runs there again
    drive(loop, lambda: two.jobs()[job].state == "succeeded")
    row = two.jobs()[job]
    assert (node_of(row), row.attempt) == ("gpu-a", 2)


def test_a_drained_site_moves_its_runs_and_undrain_is_bring_back(
    two: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    job = start_on_a(two, loop, marks)
    with two.sessions() as s, s.begin():
        site, change = evacuation.set_site_state(s, two.caller, "ma-1", "drained", "power work",
                                                 evacuate_runs=None, now=time.time())
    assert change.evacuated == (job,) and site.state == "drained"
    drive(loop, lambda: two.jobs()[job].state == "succeeded")
    assert two.jobs()[job].site == "ke-1"
    said = dict(events(two, job))["preempting"]
    assert "site ma-1 was drained by operator; note: power work" in said
    with two.sessions() as s, s.begin():
        site, _ = evacuation.set_site_state(s, two.caller, "ma-1", "up", "",
                                            evacuate_runs=None, now=time.time())
    assert site.state == "up"
    states = [(r.details["state"], r.details["evacuated_jobs"]) for r in audit(two, "site-state")]
    assert states == [("drained", [job]), ("up", [])]


def test_drains_are_idempotent_and_each_job_is_asked_once(
    two: Factory, loop: ControlLoop, tmp_path: Path
) -> None:
    marks, go = tmp_path / "marks", tmp_path / "go"
    job = start_on_a(two, loop, marks, until=go)
    assert drain(two, "gpu-a", evacuate=False).evacuated == ()
    before = len(audit(two, "node-state"))
    assert drain(two, "gpu-a", evacuate=False).evacuated == ()  # the same drain again: nothing
    assert len(audit(two, "node-state")) == before
    # A let-finish drain followed by an evacuating one moves what was left, once.
    results: list[evacuation.Change] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(drain(two, "gpu-a"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r.evacuated) for r in results) == [0, 0, 0, 1]
    assert [c for c, _ in events(two, job)].count("preempting") == 1
    go.touch()
    drive(loop, lambda: two.jobs()[job].state == "succeeded")


@pytest.mark.parametrize(
    ("call", "code", "status"),
    [
        (lambda s, c: evacuation.drain_node(s, c, "gpu-z", reason="", evacuate_runs=True,
                                            now=0.0), "node-not-found", 404),
        (lambda s, c: evacuation.undrain_node(s, c, "gpu-z", reason="", now=0.0),
         "node-not-found", 404),
        (lambda s, c: evacuation.set_site_state(s, c, "zz-9", "drained", "",
                                                evacuate_runs=True, now=0.0),
         "site-not-found", 404),
        (lambda s, c: evacuation.set_site_state(s, c, "ma-1", "up", "", evacuate_runs=False,
                                                now=0.0), "evacuate-not-applicable", 422),
        (lambda s, c: evacuation.set_site_state(s, c, "ma-1", "gone", "", evacuate_runs=None,
                                                now=0.0), "invalid-state", 422),
        (lambda s, c: evacuation.drain_node(s, Caller(0, "amina", m.Role.MEMBER, 1, "local", 0),
                                            "gpu-a", reason="", evacuate_runs=True, now=0.0),
         "forbidden", 403),
    ],
    ids=["unknown-node", "undrain-unknown-node", "unknown-site", "evacuate-with-up",
         "bad-state", "member"],
)
def test_bad_drains_are_refused_with_a_code_and_a_sentence(
    two: Factory, call: Callable[..., object], code: str, status: int
) -> None:
    with two.sessions() as s, s.begin(), pytest.raises(ServiceError) as err:
        call(s, two.caller)
    assert (err.value.code, err.value.status) == (code, status)
    assert len(err.value.message) > 20
