"""What an attempt's records and Slurm's picture mean (``executors.slurm.outcome``).

Pure readings: no Slurm needed. The executor's tests (``test_slurm_observe``)
cover the same paths through ``poll``; these pin each reading down on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from masnaa.executors.slurm import outcome
from masnaa.executors.slurm.parse import SlurmJob, SlurmNode
from masnaa.executors.slurm.records import RunRecords


def node(name: str, state: str = "idle", *, flags: tuple[str, ...] = (), reason: str = ""
         ) -> SlurmNode:
    return SlurmNode(name=name, state=state, flags=frozenset(flags), reason=reason,
                     gres=(("h100", 8),), features=frozenset(), partitions=("masnaa",))


def job(state: str = "RUNNING", *, nodes: str = "gpu[1-2]", required: str = "gpu[1-2]",
        reason: str = "None", exit_raw: int | None = None) -> SlurmJob:
    return SlurmJob(slurm_id=42, job_id="j-1", attempt=1, state=state, reason=reason,
                    nodes="" if state == "PENDING" else nodes, required=required,
                    start_time=100.0, end_time=200.0, exit_raw=exit_raw)


def records(tmp_path: Path, *, stop: bool = False, started: float | None = 150.0) -> RunRecords:
    rec = RunRecords(tmp_path, "j-1", 1)
    rec.claim(now=90.0)
    if started is not None:
        rec.put("started_at", f"{started:.3f}")
    if stop:
        rec.write_stop(30.0, 160.0, "preempted")
    return RunRecords(tmp_path, "j-1", 1)


NODES = {"gpu1": node("gpu1"), "gpu2": node("gpu2", "idle", flags=("DRAIN",), reason="fan"),
         "gpu3": node("gpu3", "down", reason="no answer"),
         "gpu4": node("gpu4", "mixed", flags=("NOT_RESPONDING",)),
         "gpu5": node("gpu5", "mixed", flags=("MAINT",)),
         "gpu6": node("gpu6", "allocated", flags=("FAIL",), reason="ecc")}


@pytest.mark.parametrize(
    ("slurm_job", "expected"),
    [
        (job("RUNNING", nodes="gpu1"), None),
        # Drained, in maintenance, not responding: takes no new work, but what runs
        # there runs on (Slurm lets it finish; a missed ping is not a dead node).
        (job("RUNNING", nodes="gpu[1-2]"), None),
        (job("RUNNING", nodes="gpu[1,4-5]"), None),
        (job("RUNNING", nodes="gpu[1-3]"), "node gpu3 is down: no answer"),
        (job("RUNNING", nodes="gpu[4,6]"), "node gpu6 is allocated+fail: ecc"),
        (job("PENDING", required="gpu[2-3]"), "cannot start: node gpu2 is"),
        (job("PENDING", required="gpu[1,4]"), "cannot start: node gpu4 is"),
        (job("PENDING", required="gpu1"), None),
        (job("NODE_FAIL", nodes="gpu1", reason="gpu1"), "Slurm ended it: NODE_FAIL (gpu1)"),
        (job("RUNNING", nodes="gpu9"), None),  # a node Slurm did not list: not a fault
    ],
)
def test_site_fault_names_the_node_or_slurms_word(slurm_job: SlurmJob, expected: str | None
                                                  ) -> None:
    found = outcome.site_fault(slurm_job, NODES)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.startswith(expected), found
        if "gpu2" in expected:
            assert found.endswith(": fan")


def test_node_fault_reads_the_recorded_nodelist_once_the_job_left_squeue() -> None:
    assert outcome.node_fault("gpu[1,3]", NODES) == "node gpu3 is down: no answer"
    assert outcome.node_fault(None, NODES) is None
    assert outcome.node_fault("gpu1", NODES) is None
    assert outcome.node_fault("gpu[2,4-5]", NODES) is None  # no new work, but not failed
    assert outcome.node_closed("gpu[1,2]", NODES) == "node gpu2 is idle+drain: fan"


@pytest.mark.parametrize(
    ("status", "reason", "stop", "want"),
    [
        (0, "exited", False, ("exited", 0, None)),
        (3, "exited", False, ("exited", 3, None)),
        (137, "exited", False, ("exited", None, 9)),  # killed from outside Masnaa
        (143, "exited", True, ("stopped", None, 15)),  # Slurm's signal beat the trap
        (143, "stopped", True, ("stopped", None, 15)),
        (0, "time-limit", False, ("time-limit", 0, None)),
        (1, "no-such-reason", False, ("exited", 1, None)),
    ],
)
def test_exited_reads_the_shells_status(
    tmp_path: Path, status: int, reason: str, stop: bool, want: tuple[str, int | None, int | None]
) -> None:
    seen = outcome.exited(records(tmp_path, stop=stop), status, reason, 210.0)
    assert (seen.reason, seen.exit_code, seen.signal) == want
    assert seen.state == "exited" and seen.ended_at == 210.0
    assert seen.started_at == 150.0
    assert seen.stop_reason == ("preempted" if stop else None)


@pytest.mark.parametrize(
    ("state", "raw", "stop", "want", "words"),
    [
        ("COMPLETED", 0, False, ("exited", 0, None), "ended COMPLETED without an exit record"),
        ("FAILED", 2 << 8, False, ("exited", 2, None), "ended FAILED"),
        ("FAILED", 9, False, ("exited", None, 9), "ended FAILED"),
        ("CANCELLED", None, False, ("stopped", None, 9), "(cancelled in Slurm, not by Masnaa)"),
        ("CANCELLED", 15, True, ("stopped", None, 15), "ended CANCELLED without an exit record"),
        ("TIMEOUT", None, False, ("time-limit", None, None), "ended TIMEOUT"),
    ],
)
def test_ended_without_record_uses_slurms_word(
    tmp_path: Path,
    state: str,
    raw: int | None,
    stop: bool,
    want: tuple[str, int | None, int | None],
    words: str,
) -> None:
    seen = outcome.ended_without_record(records(tmp_path, stop=stop, started=None),
                                        job(state, exit_raw=raw), raw)
    assert (seen.reason, seen.exit_code, seen.signal) == want
    assert words in seen.message
    assert (stop or state != "CANCELLED") == ("not by Masnaa" not in seen.message)
    # Slurm's start time is not proof that the job ever held its GPUs: only the record is.
    assert seen.started_at is None
    assert seen.ended_at == 200.0
