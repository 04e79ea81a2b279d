"""A job back in the queue after a run waits from its requeue, as in the twin."""

from __future__ import annotations

from masnaa.scheduler import PendingQueue
from masnaa.service.snapshot import LiveState
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
                   reason="preempted; back in the queue")
    with factory.sessions() as s:
        loaded = LiveState.load_pending(s, None)
    since = {job.id: at for job, _, at in loaded}
    assert since == {ran: requeued_at, fresh: None}
    # In the queue, the requeued job now comes after the one submitted while it ran.
    queue = PendingQueue()
    for job, attained, at in loaded:
        queue.add(job, attained, since=at)
    assert [job.id for job in queue] == [fresh, ran]
