"""A job back in the queue after a run waits from its requeue, as in the twin."""

from __future__ import annotations

from masnaa.domain import Job, Placement
from masnaa.domain.reasons import Phrase
from masnaa.scheduler import PendingQueue
from masnaa.service.snapshot import LiveState, running_job
from masnaa.store import models as m
from masnaa.store.events import transition

from .conftest import Factory


def test_a_requeued_job_waits_from_its_requeue_not_its_submission(factory: Factory) -> None:
    ran, fresh = factory.submit([{"command": ["true"]}, {"command": ["true"]}])
    with factory.sessions() as s, s.begin():
        row = s.get(m.Job, ran)
        assert row is not None
        row.attempt = 1  # it ran once, and was preempted
        requeued_at = row.submitted_at + 500.0
        transition(s, row, m.JobState.PENDING, at=requeued_at, code="requeued",
                   reason=(Phrase("preempted"), Phrase("back-in-queue")))
    with factory.sessions() as s:
        loaded = LiveState.load_pending(s, None)
    since = {item.job.id: item.since for item in loaded}
    assert since == {ran: requeued_at, fresh: None}
    assert {item.job.id: item.requeues for item in loaded} == {ran: 1, fresh: 0}
    # In the queue, the requeued job now comes after the one submitted while it ran.
    queue = PendingQueue()
    for item in loaded:
        queue.add(item.job, item.attained, since=item.since)
    assert [job.id for job in queue] == [fresh, ran]


def test_a_restarted_run_carries_its_earlier_service_and_requeues(factory: Factory) -> None:
    (ran,) = factory.submit([{"command": ["true"]}])
    with factory.sessions() as s, s.begin():
        row = s.get(m.Job, ran)
        assert row is not None
        row.attempt, row.attained_service = 2, 7_200.0  # two runs, both preempted
        transition(s, row, m.JobState.PENDING, at=row.submitted_at + 900.0, code="requeued",
                   reason=(Phrase("preempted"), Phrase("back-in-queue")))
    with factory.sessions() as s:
        live = LiveState.load(s, now=10_000.0, half_life=86_400.0)
    run = live.starting(ran, Placement(()), "h100", 10_000.0)
    # The scheduler spares jobs stopped often and ranks victims by service attained.
    assert (run.requeues, run.attained_service) == (2, 7_200.0)
    live.dequeue(ran)
    assert ran not in live.requeues


def test_a_running_row_tells_the_core_how_often_it_was_requeued() -> None:
    job = Job(id="j", tenant="t", project="t/p", tasks=1, gpus_per_task=1,
              gpu_types=("h100",), time_limit=3_600.0)
    row = m.Job(id="j", attempt=3, started_at=100.0, submitted_at=0.0, placement=[],
                gpu_type="h100", attained_service=50.0, preempt_deadline=None)
    run = running_job(row, job)  # attempt 3 is the third run: two requeues before it
    assert (run.requeues, run.attained_service, run.start_time) == (2, 50.0, 100.0)


def test_the_jobs_of_one_batch_queue_in_the_order_they_were_submitted(factory: Factory) -> None:
    # One batch stamps one submission time on all its jobs; their ids are random.
    ids = factory.submit([{"command": ["true"], "name": f"b{i}"} for i in range(12)])
    assert sorted(ids) != ids  # else this test would prove nothing
    with factory.sessions() as s:
        loaded = LiveState.load_pending(s, None)
        some = LiveState.load_pending(s, reversed(ids[3:9]))
    assert [item.job.id for item in loaded] == ids
    assert [item.job.id for item in some] == ids[3:9]


def test_queue_positions_of_a_batch_follow_its_order(factory: Factory) -> None:
    from masnaa.service.job_views import pending_positions

    ids = factory.submit([{"command": ["true"]} for _ in range(12)])
    assert sorted(ids) != ids
    with factory.sessions() as s:
        positions = pending_positions(s, factory.caller)
    assert sorted(ids, key=positions.__getitem__) == ids
