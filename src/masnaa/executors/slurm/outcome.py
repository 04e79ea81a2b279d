"""How a Slurm attempt ended, read from its records and from Slurm's picture.

Pure readings, no Slurm call and no state of the executor's: the executor
(``executor.SlurmExecutor``) asks Slurm, then asks these functions what the
answers mean.

- ``site_fault`` / ``node_fault`` / ``node_closed``: whether the site, not the
  job, ended or blocks an attempt: Slurm ended it in a lost state, a node it
  runs on failed (DOWN, FAIL), or a node it is pinned to and waits for takes no
  new work (also drained, in maintenance, not responding). A drain never ends
  a run that has started: Slurm lets it finish, and so does Masnaa;
- ``exited``: the batch script's ``exit`` record as an ``Observed``;
- ``cancelled_in_slurm``: a job cancelled in Slurm (``scancel``) that Masnaa
  never asked to stop: it ends, and is not run again;
- ``ended_without_record``: a job Slurm says ended but whose batch script was
  killed before it could write that record.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Mapping

from masnaa.executors.base import Observed
from masnaa.executors.slurm.parse import (
    LOST_STATES,
    SlurmJob,
    SlurmNode,
    decode_wait_status,
    expand_hostlist,
)
from masnaa.executors.slurm.records import RunRecords

REASONS = ("exited", "stopped", "time-limit", "launch-failed")
"""The reasons an ``Observed`` of an exited run may give."""


def site_fault(job: SlurmJob, nodes: Mapping[str, SlurmNode]) -> str | None:
    """Why the site, not the job, ended or blocks this attempt; None when it did not."""
    if job.state in LOST_STATES:
        return f"Slurm ended it: {job.state} ({job.reason})"
    if job.pending:  # waits for the nodes Masnaa pinned: any that takes no new work blocks it
        fault = node_closed(job.required, nodes)
        return f"cannot start: {fault}" if fault is not None else None
    return node_fault(job.nodes, nodes)  # runs: only a failed node ends it


def node_fault(nodelist: str | None, nodes: Mapping[str, SlurmNode]) -> str | None:
    """Why the runs on these nodes are lost (one is DOWN or FAIL); None when none is
    (or unknown). Drained and not-responding nodes are no fault of a running job."""
    return _first(nodelist, nodes, lambda n: n.failed)


def node_closed(nodelist: str | None, nodes: Mapping[str, SlurmNode]) -> str | None:
    """Why one of these nodes can take no new work now; None when all can (or unknown)."""
    return _first(nodelist, nodes, lambda n: not n.available)


def _first(
    nodelist: str | None, nodes: Mapping[str, SlurmNode], bad: Callable[[SlurmNode], bool]
) -> str | None:
    for name in expand_hostlist((nodelist or "").strip()):
        node = nodes.get(name)
        if node is not None and bad(node):
            why = f": {node.reason}" if node.reason else ""
            return f"node {node.name} is {node.display_state}{why}"
    return None


def exited(rec: RunRecords, status: int, reason: str, ended_at: float | None) -> Observed:
    """The attempt's own exit record (``status`` as the shell gives it) as an observation."""
    stop = rec.stop()
    code: int | None = status
    sig: int | None = None
    if 128 < status <= 128 + 64:  # the shell's way of saying "killed by signal n"
        code, sig = None, status - 128
    if reason == "exited" and sig is not None and stop is not None:
        # Asked to stop and killed by a signal: Slurm's own signal reached the
        # command before the batch script's trap could record the stop.
        reason = "stopped"
    return Observed(
        "exited",
        exit_code=code,
        signal=sig,
        reason=reason if reason in REASONS else "exited",  # type: ignore[arg-type]
        stop_reason=stop.reason if stop else None,
        started_at=rec.started_at(),
        ended_at=ended_at,
        message=rec.get("message") or "",
    )


def cancelled_in_slurm(
    rec: RunRecords, signal: int | None, ended_at: float | None, by_uid: int | None
) -> Observed:
    """Slurm cancelled it and Masnaa never asked (no ``stop`` record): an administrator's
    ``scancel``. Reported as ``cancelled-outside`` (the job ends ``cancelled``), never as
    ``stopped``, which the control loop would read as "stopped from outside, run it
    again": an administrator's cancel must stick."""
    who = f" by uid {by_uid}{_user_name(by_uid)}" if by_uid is not None else ""
    return Observed(
        "exited",
        exit_code=None,
        signal=signal or 15,  # scancel's SIGTERM, unless the record saw a harder one
        reason="cancelled-outside",
        stop_reason=f"cancelled in Slurm{who}",
        started_at=rec.started_at(),
        ended_at=ended_at,
        message=f"cancelled in Slurm{who}, not by Masnaa: not run again",
    )


def _user_name(uid: int) -> str:
    try:
        return f" ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return ""


def ended_without_record(rec: RunRecords, job: SlurmJob, raw_exit: int | None) -> Observed:
    """Slurm says ``job`` ended (not in a lost state) and the batch script left no record.

    ``raw_exit``: Slurm's raw wait status for it, when known.
    """
    code, sig = decode_wait_status(raw_exit)
    stop = rec.stop()
    if stop is not None or job.state == "CANCELLED":
        reason, sig, code = "stopped", sig or 9, None
    elif job.state == "TIMEOUT":
        reason = "time-limit"
    else:
        reason = "exited"
    words = f"Slurm job {job.slurm_id} ended {job.state} without an exit record"
    if job.state == "CANCELLED" and stop is None:
        words += " (cancelled in Slurm, not by Masnaa)"
    return Observed(
        "exited",
        exit_code=code,
        signal=sig,
        reason=reason,  # type: ignore[arg-type]
        stop_reason=stop.reason if stop else None,
        # Slurm stamps a start time even on a job cancelled while pending: only the
        # batch script's own record says the job ever held its GPUs.
        started_at=rec.started_at(),
        ended_at=job.end_time,
        message=words,
    )
