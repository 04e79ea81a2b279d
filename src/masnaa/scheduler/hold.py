"""The ``hold_reservation`` rule: the job that held the EASY reservation keeps its place.

With ``SchedulerConfig.hold_reservation``, the job named by ``Snapshot.reserved_for``
(the holder in the last decision a driver applied, ``Decision.reserved_for``) is
looked at before every job of its priority class and the lower ones, until it
starts, so a drain once begun is not handed to whichever blocked job fair share
puts first next. Jobs of a higher class still go ahead of it.
"""

from __future__ import annotations

from collections.abc import Iterator

from masnaa.scheduler.context import Pass
from masnaa.scheduler.queue import Entry


def held_first(p: Pass, queue: Iterator[Entry], held: str) -> Iterator[Entry]:
    """``queue`` (``core.order``) with the holder moved ahead of the first job of its class
    or a lower one: before ``order`` looks at anything when no higher class waits."""
    if held not in p.pending or held in p.decision.rejected:
        yield from queue
        return
    entry = p.pending.entry(held)
    rank = p.priority(entry.job)
    waiting = any(p.class_of(key[1])[0] > rank for key in p.pending.sub_queues())
    if not waiting:
        yield entry
    for other in queue:
        if waiting and (other is entry or p.priority(other.job) <= rank):
            waiting = False
            yield entry
        if other is not entry:
            yield other
    if waiting:  # ``order`` passed its sub-queue over, or only higher classes were left
        yield entry
