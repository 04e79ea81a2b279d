"""``service.run_writes``: one pass's launches, refusals and ends written to a real database.

The control loop's tests drive these writes through real processes; here each kind of
report meets a row that is, or is no longer, in the state and attempt it speaks of.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import update

from masnaa.executors.base import Observed
from masnaa.service.loop import ControlLoop
from masnaa.service.run_writes import RunWrites, write_runs
from masnaa.store import models as m

from .conftest import Factory
from .test_control_loop import codes, make_loop

NOW = 1_000.0


@pytest.fixture
def loop(factory: Factory) -> Iterator[ControlLoop]:
    running = make_loop(factory)
    running.start()  # nothing is admitted yet: the start launches nothing
    yield running
    running.release_lease()
    running.close()


def admitted(factory: Factory, attempt: int = 2) -> str:
    """A job the store holds as admitted under ``attempt`` (as a pass would leave it)."""
    (job_id,) = factory.submit([{"command": ["true"]}])
    with factory.sessions() as s, s.begin():
        s.execute(update(m.Job).where(m.Job.id == job_id).values(
            state=m.JobState.ADMITTED.value, attempt=attempt, site="local"))
    return job_id


def write(
    factory: Factory,
    loop: ControlLoop,
    *,
    queues: bool = False,
    launched: dict[str, int] | None = None,
    rejected: dict[str, tuple[int, str]] | None = None,
    ended: dict[str, tuple[int, Observed]] | None = None,
) -> RunWrites:
    with factory.sessions() as s, s.begin():
        return write_runs(
            s, now=NOW, launched=launched or {}, rejected=rejected or {}, ended=ended or {},
            meter=loop.meter, queues=lambda site: queues, max_attempts=5,
        )


@pytest.mark.parametrize("queues", [False, True])
def test_a_launch_that_took_is_running_from_now_or_from_the_engines_start(
    factory: Factory, loop: ControlLoop, queues: bool
) -> None:
    job_id = admitted(factory)
    done = write(factory, loop, queues=queues, launched={job_id: 2})
    row = factory.jobs()[job_id]
    assert row.state == m.JobState.RUNNING.value
    assert row.started_at == (None if queues else NOW)
    assert done.transitions == [("admitted", "running")]
    assert (done.released, done.requeued, done.settled) == ([], [], 0)
    assert codes(factory, job_id)[-1] == "started"


def test_reports_about_an_attempt_the_row_moved_past_change_nothing(
    factory: Factory, loop: ControlLoop
) -> None:
    job_id = admitted(factory, attempt=2)
    before = codes(factory, job_id)
    done = write(
        factory, loop,
        launched={job_id: 1},
        rejected={job_id: (1, "no such command")},
        ended={job_id: (1, Observed("lost", message="gone"))},
    )
    assert done == RunWrites()
    assert factory.jobs()[job_id].state == m.JobState.ADMITTED.value
    assert codes(factory, job_id) == before


def test_a_refused_launch_fails_the_job_and_gives_its_gpus_back(
    factory: Factory, loop: ControlLoop
) -> None:
    job_id = admitted(factory)
    done = write(factory, loop, rejected={job_id: (2, "the command is empty")})
    row = factory.jobs()[job_id]
    assert (row.state, row.ended_at) == (m.JobState.FAILED.value, NOW)
    assert codes(factory, job_id)[-1] == "launch-rejected"
    assert (done.released, done.transitions) == ([job_id], [("admitted", "failed")])


def test_a_run_cancelled_before_its_launch_is_cancelled(factory: Factory, loop: ControlLoop
                                                        ) -> None:
    job_id = admitted(factory)
    done = write(factory, loop, ended={job_id: (2, Observed("absent"))})
    assert factory.jobs()[job_id].state == m.JobState.CANCELLED.value
    assert (done.released, done.settled) == ([job_id], 0)
    assert done.transitions == [("admitted", "cancelled")]


def test_a_lost_run_is_settled_and_requeued(factory: Factory, loop: ControlLoop) -> None:
    job_id = admitted(factory)
    write(factory, loop, launched={job_id: 2})
    done = write(factory, loop, ended={job_id: (2, Observed("lost", message="node died"))})
    row = factory.jobs()[job_id]
    assert row.state == m.JobState.PENDING.value
    assert (done.released, done.requeued, done.settled) == ([job_id], [job_id], 1)
    assert done.transitions == [("running", "pending")]
    assert codes(factory, job_id)[-1] == "requeued"
