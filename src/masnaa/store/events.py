"""The one way to change a job's state: ``transition`` writes the new state and
its event row together, so a state never changes without a reason.

Call it inside the caller's transaction; it does not commit. Pass ``to_state``
equal to the current state to record a transition that keeps the state (for
example ``cancel-requested`` on a running job, or ``preempted`` followed by
``requeued`` back to pending).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from masnaa.domain import reasons
from masnaa.store.models import Job, JobEvent, JobState


def transition(
    session: Session,
    job: Job,
    to_state: JobState | str,
    *,
    at: float,
    code: str,
    reason: reasons.Reason,
) -> JobEvent:
    """``reason``: why, as phrases; the rows keep them and their English text."""
    to = JobState(to_state)
    said, phrases = reasons.english(reason), reasons.to_json(reason)
    event = JobEvent(
        job_id=job.id,
        at=at,
        from_state=job.state,
        to_state=to.value,
        code=code,
        reason=said,
        phrases=phrases,
        attempt=job.attempt,
    )
    job.state = to.value
    job.state_reason = said
    job.state_phrases = phrases
    session.add(event)
    return event
