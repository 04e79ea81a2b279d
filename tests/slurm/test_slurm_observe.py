"""What the executor reports for each thing Slurm and the records can say (no Slurm needed).

Slurm is replaced at its IO seam only: ``SlurmCommands.run`` answers from a
script of ``squeue``/``sinfo`` output and records every call, so these tests
cover the rows of the observation table that are hard to provoke on a real
Slurm (a node failure, a job Slurm forgot, a claim whose launcher died).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from masnaa.domain.reasons import Phrase
from masnaa.executors.base import LaunchSpec, NodeGpus
from masnaa.executors.slurm import SiteUnreachable, SlurmCommands, SlurmExecutor, SlurmSiteConfig
from masnaa.executors.slurm.commands import Completed
from masnaa.executors.slurm.parse import SQUEUE_SEP, job_comment
from masnaa.service.reconcile import settle
from masnaa.store.models import JobState


class ScriptedSlurm(SlurmCommands):
    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[str] = []
        self.nodes: list[dict[str, object]] = [node("gpu01")]
        self.calls: list[tuple[str, ...]] = []
        self.next_id = 100
        self.down = False
        self.scontrol_answer = ""
        self.scancel_timeouts = 0

    def run(self, tool: str, args: Sequence[str], *, stdin: str | None = None) -> Completed:
        self.calls.append((tool, *args))
        if self.down:
            raise SiteUnreachable(f"{tool}: Unable to contact slurm controller (connect failure)")
        if tool == "scancel" and self.scancel_timeouts > 0:
            self.scancel_timeouts -= 1
            raise SiteUnreachable("scancel did not answer within 3s")
        if tool == "squeue":
            return Completed("\n".join(self.jobs) + "\n", "")
        if tool == "sinfo":
            return Completed(json.dumps({"errors": [], "nodes": self.nodes}), "")
        if tool == "sbatch":
            self.next_id += 1
            return Completed(f"{self.next_id}\n", "")
        if tool == "scontrol":
            return Completed(self.scontrol_answer, "")
        return Completed("", "")

    def add(self, job_id: str, attempt: int, slurm_id: int, state: str, **kw: str) -> None:
        self.jobs.append(
            SQUEUE_SEP.join(
                [str(slurm_id), state, kw.get("reason", "None"), kw.get("nodes", "gpu01"),
                 "gpu01", kw.get("start", "2026-11-25T10:00:00"), kw.get("end", "N/A"),
                 job_comment(job_id, attempt)]
            )
        )  # fmt: skip

    def called(self, tool: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == tool]


def node(name: str, state: str = "mixed", flags: tuple[str, ...] = (), reason: str = "") -> dict:
    return {"name": name, "state": state, "state_flags": list(flags), "reason": reason,
            "gres": "gpu:h100:8", "active_features": "", "partitions": ["p"]}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slurm() -> ScriptedSlurm:
    return ScriptedSlurm()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ex(tmp_path: Path, slurm: ScriptedSlurm, clock: Clock) -> SlurmExecutor:
    config = SlurmSiteConfig(site="s", state_dir=tmp_path, claim_timeout=60, stop_margin=5)
    return SlurmExecutor(config, slurm, clock=clock)


def spec(job_id: str = "j1", attempt: int = 1) -> LaunchSpec:
    return LaunchSpec(
        job_id=job_id, attempt=attempt, argv=("true",),
        placement=(NodeGpus("gpu01", (0, 1)),), time_limit=60,
    )  # fmt: skip


def test_start_submits_once_with_the_pinned_placement(
    ex: SlurmExecutor, slurm: ScriptedSlurm
) -> None:
    ex.start(spec())
    ex.start(spec())
    (sbatch,) = slurm.called("sbatch")
    assert "--nodelist=gpu01" in sbatch and "--gres=gpu:h100:2" in sbatch
    assert ex.records("j1", 1).slurm_job_id() == 101


def test_a_fresh_submission_is_not_judged_on_an_older_view(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    ex.poll_many([("other", 1)])  # a view taken before the submission
    clock.now += 0.1
    ex.start(spec())
    slurm.add("j1", 1, 101, "PENDING", reason="Priority")
    seen = ex.poll("j1", 1)  # within view_ttl, yet the view is older than the job
    assert seen.state == "running" and seen.message == "held pending by Slurm: Priority"
    assert seen.why == Phrase("slurm-pending", {"detail": "Priority"})  # for the portal
    slurm.jobs.clear()
    slurm.add("j1", 1, 101, "PENDING", reason="None")
    clock.now += 10
    assert ex.poll("j1", 1).why == Phrase("slurm-not-scheduled")


@pytest.mark.parametrize(
    ("state", "nodes", "expected"),
    [
        ("RUNNING", [node("gpu01", "down", (), "dead")], "node gpu01 is down: dead"),
        ("RUNNING", [node("gpu01", "fail", (), "ecc")], "node gpu01 is fail: ecc"),
        ("NODE_FAIL", [node("gpu01")], "Slurm ended it: NODE_FAIL (None)"),
    ],
)
def test_site_faults_lose_the_run_with_the_reason_and_cancel_it(
    ex: SlurmExecutor, slurm: ScriptedSlurm, state: str, nodes: list[dict], expected: str
) -> None:
    ex.start(spec())
    slurm.add("j1", 1, 101, state)
    slurm.nodes = nodes
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert (seen.state, seen.message) == ("lost", expected)
    if state == "RUNNING":
        assert ("scancel", "101") in slurm.calls
    # final, and durable: a new executor reads the same verdict
    slurm.jobs.clear()
    again = SlurmExecutor(ex.config, slurm).poll_many([("j1", 1)])[("j1", 1)]
    assert (again.state, again.message) == ("lost", expected)


@pytest.mark.parametrize(
    "flags",
    [("DRAIN",), ("MAINT",), ("NOT_RESPONDING",), ("DRAIN", "NOT_RESPONDING")],
)
def test_a_drained_or_unresponsive_node_leaves_its_running_job_alone(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock, flags: tuple[str, ...]
) -> None:
    # Slurm's DRAIN means "start nothing new, let what runs finish"; a missed ping
    # (NOT_RESPONDING, a slurmd restart) is not a dead node until Slurm says DOWN.
    ex.start(spec())
    ex.records("j1", 1).put("started_at", f"{clock.now:.3f}")
    slurm.add("j1", 1, 101, "RUNNING")
    slurm.nodes = [node("gpu01", "mixed", flags, "fan")]
    for _ in range(3):
        clock.now += 10
        assert ex.poll_many([("j1", 1)])[("j1", 1)].state == "running"
    assert slurm.called("scancel") == []
    assert "gpu01" in ex.unavailable_nodes()  # but it takes no new work
    # Slurm's own verdict, after SlurmdTimeout: the node is DOWN and the job NODE_FAIL.
    slurm.nodes = [node("gpu01", "down", ("NOT_RESPONDING",), "Not responding")]
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert seen.state == "lost"
    assert seen.message == "node gpu01 is down+not_responding: Not responding"


def test_a_job_slurm_forgot_without_an_exit_record_is_lost(
    ex: SlurmExecutor, slurm: ScriptedSlurm
) -> None:
    ex.start(spec())
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert seen.state == "lost" and "no longer knows job 101" in seen.message


def test_a_claim_whose_launcher_died_is_running_then_lost_after_the_timeout(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    assert ex.records("j1", 1).claim(clock.now)  # claimed, then the process died
    assert ex.poll_many([("j1", 1)])[("j1", 1)].state == "running"
    clock.now += 61
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert seen.state == "lost" and "never became a Slurm job" in seen.message
    ex.start(spec())  # lost is final: never submitted afterwards
    assert slurm.called("sbatch") == []


def test_a_restart_finishes_a_submission_whose_answer_was_lost(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    assert ex.records("j1", 1).claim(clock.now)
    slurm.add("j1", 1, 77, "RUNNING")  # sbatch had reached Slurm
    ex.start(spec())
    assert slurm.called("sbatch") == [] and ex.records("j1", 1).slurm_job_id() == 77
    assert ex.records("j2", 1).claim(clock.now)  # this one had not
    ex.start(spec("j2"))
    assert len(slurm.called("sbatch")) == 1


@pytest.mark.parametrize(
    ("state", "scontrol", "expected"),
    [
        ("FAILED", "JobId=101 JobState=FAILED ExitCode=3:0", ("exited", 3, None)),
        (
            "TIMEOUT",
            "ExitCode=0:15",
            ("time-limit", None, None),
        ),  # not asked: Slurm's word is enough
        # scancel'd in Slurm, not by Masnaa: ends cancelled by scancel's signal, not rerun
        ("CANCELLED", "", ("cancelled-outside", None, 15)),
    ],
)
def test_ended_in_slurm_without_a_record_uses_slurms_word(
    ex: SlurmExecutor, slurm: ScriptedSlurm, state: str, scontrol: str, expected: tuple
) -> None:
    ex.start(spec())
    slurm.add("j1", 1, 101, state, end="2026-11-25T10:05:00")
    slurm.scontrol_answer = scontrol
    if state == "TIMEOUT":
        slurm.scontrol_answer = "ExitCode=0:15"
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert seen.state == "exited"
    assert (seen.reason, seen.exit_code, seen.signal) == expected
    assert seen.started_at is None  # the batch script never said it started: nothing to charge
    assert len(slurm.called("scontrol")) == (1 if state == "FAILED" else 0)


class AccountedSlurm(ScriptedSlurm):
    def run(self, tool: str, args: Sequence[str], *, stdin: str | None = None) -> Completed:
        if tool == "sacct":
            self.calls.append((tool, *args))
            return Completed("CANCELLED by 0\n", "")
        return super().run(tool, args, stdin=stdin)


@pytest.mark.parametrize("still_in_squeue", [True, False])
def test_a_job_scancelled_outside_masnaa_ends_and_is_not_run_again(
    tmp_path: Path, clock: Clock, still_in_squeue: bool
) -> None:
    slurm = AccountedSlurm()
    ex = SlurmExecutor(SlurmSiteConfig(site="s", state_dir=tmp_path), slurm, clock=clock)
    ex.start(spec())
    rec = ex.records("j1", 1)
    rec.put("started_at", f"{clock.now:.3f}")
    rec.put("exit", f"7 stopped {clock.now + 1:.3f}")  # its TERM trap ran, exit 7
    slurm.add("j1", 1, 101, "COMPLETING")  # Slurm's KillWait is not over yet
    clock.now += 2
    assert ex.poll_many([("j1", 1)])[("j1", 1)].state == "running"  # wait for Slurm's word
    slurm.jobs.clear()
    if still_in_squeue:
        slurm.add("j1", 1, 101, "CANCELLED")
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    # Not "stopped" (the loop would run it again): it ends by scancel's TERM, and says who.
    assert (seen.state, seen.reason, seen.exit_code, seen.signal) == (
        "exited", "cancelled-outside", None, 15)
    assert seen.stop_reason == "cancelled in Slurm by uid 0 (root)"
    assert "not by Masnaa" in seen.message
    assert ("sacct", "-n", "-X", "-P", "-j", "101", "-o", "State") in slurm.calls
    # What the control loop makes of it: the job ends, it is not run again.
    after = settle(seen, attempt=1, cancel_requested=False, preempting=False, max_attempts=5)
    assert (after.state, after.code) == (JobState.CANCELLED, "cancelled")
    assert str(after.reason[0]).startswith("cancelled in Slurm by uid 0 (root), not by Masnaa")


def test_a_stop_signals_term_then_cancels_after_grace_and_margin(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    ex.start(spec())
    ex.records("j1", 1).put("started_at", f"{clock.now:.3f}")
    slurm.add("j1", 1, 101, "RUNNING")
    ex.stop("j1", 1, 30, "preempted")
    ex.stop("j1", 1, 30, "preempted")  # idempotent
    assert slurm.called("scancel") == [("scancel", "--signal=TERM", "--batch", "101")]
    clock.now += 30 + 4
    ex.poll_many([("j1", 1)])
    assert len(slurm.called("scancel")) == 1
    clock.now += 2  # past grace + margin: the backstop
    ex.poll_many([("j1", 1)])
    assert slurm.called("scancel")[-1] == ("scancel", "101")
    ex.poll_many([("j1", 1)])
    assert len(slurm.called("scancel")) == 2  # once


def test_a_stop_whose_signal_did_not_get_through_is_sent_again_with_the_grace_left(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    ex.start(spec())
    ex.records("j1", 1).put("started_at", f"{clock.now:.3f}")
    slurm.add("j1", 1, 101, "RUNNING")
    slurm.scancel_timeouts = 1
    with pytest.raises(SiteUnreachable):
        ex.stop("j1", 1, 30, "cancelled")
    deadline = clock.now + 30
    term = ("scancel", "--signal=TERM", "--batch", "101")
    clock.now += 4
    ex.stop("j1", 1, 30, "cancelled")  # asked again: the signal is sent, not skipped
    assert slurm.called("scancel") == [term, term]
    stop = ex.records("j1", 1).stop()
    assert stop is not None and stop.deadline == pytest.approx(deadline)
    assert stop.grace == pytest.approx(26)  # what remains, for the batch script's KILL timer
    clock.now += 1
    ex.poll_many([("j1", 1)])
    ex.stop("j1", 1, 30, "cancelled")
    assert len(slurm.called("scancel")) == 2  # delivered: never again


def test_a_stop_not_delivered_is_sent_by_the_next_pass_even_after_a_restart(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    ex.start(spec())
    ex.records("j1", 1).put("started_at", f"{clock.now:.3f}")
    slurm.add("j1", 1, 101, "RUNNING")
    ex.records("j1", 1).write_stop(30, clock.now, "preempted")  # then Masnaa died
    again = SlurmExecutor(ex.config, slurm, clock=clock)
    slurm.scancel_timeouts = 1
    clock.now += 2
    assert again.poll_many([("j1", 1)])[("j1", 1)].state == "running"  # not sent; no raise
    clock.now += 2
    again.poll_many([("j1", 1)])
    term = ("scancel", "--signal=TERM", "--batch", "101")
    assert slurm.called("scancel") == [term, term]
    assert ex.records("j1", 1).has("signalled")
    clock.now += 1
    again.poll_many([("j1", 1)])
    assert len(slurm.called("scancel")) == 2
    clock.now += 30  # past the deadline and the margin: the backstop, once
    again.poll_many([("j1", 1)])
    assert slurm.called("scancel")[-1] == ("scancel", "101")


def test_an_unreachable_controller_changes_nothing(ex: SlurmExecutor, slurm: ScriptedSlurm) -> None:
    slurm.down = True
    with pytest.raises(SiteUnreachable):
        ex.start(spec())
    with pytest.raises(SiteUnreachable):
        ex.poll_many([("j1", 1)])
    slurm.down = False
    slurm.add("j1", 1, 55, "RUNNING")  # the lost sbatch had reached Slurm after all
    ex.start(spec())
    # one sbatch: the failed one; the retry found job 55 and adopted it
    assert len(slurm.called("sbatch")) == 1
    assert ex.records("j1", 1).slurm_job_id() == 55


@pytest.mark.parametrize(
    ("record", "stopped", "expected"),
    [
        ("137 exited", True, ("stopped", None, 9)),  # Slurm's kill beat the script's trap
        ("143 stopped", True, ("stopped", None, 15)),
        ("137 exited", False, ("exited", None, 9)),  # killed, but nobody asked it to stop
        ("0 exited", True, ("exited", 0, None)),  # it finished before the stop landed
    ],
)
def test_a_run_killed_after_a_stop_request_was_stopped(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock, record: str, stopped: bool,
    expected: tuple[str, int | None, int | None],
) -> None:
    ex.start(spec())
    rec = ex.records("j1", 1)
    rec.put("started_at", f"{clock.now:.3f}")
    if stopped:
        slurm.add("j1", 1, 101, "RUNNING")
        ex.stop("j1", 1, 0, "cancelled")
        slurm.jobs.clear()
    rec.put("exit", f"{record} {clock.now + 1:.3f}")
    seen = ex.poll_many([("j1", 1)])[("j1", 1)]
    assert seen.state == "exited"
    assert (seen.reason, seen.exit_code, seen.signal) == expected
    assert seen.stop_reason == ("cancelled" if stopped else None)


def test_a_run_killed_by_a_node_that_came_straight_back_is_lost_not_exited(
    ex: SlurmExecutor, slurm: ScriptedSlurm, clock: Clock
) -> None:
    # Seen running (the batch script has not recorded its start yet), then the node
    # goes down and at once returns to service (ReturnToService=2): the command is
    # killed and its exit record written after the cached view was taken.
    ex.start(spec())
    slurm.add("j1", 1, 101, "RUNNING")
    assert ex.poll("j1", 1).state == "running"
    ex.records("j1", 1).put("exit", f"143 exited {clock.now:.3f}")
    slurm.jobs.clear()
    slurm.add("j1", 1, 101, "NODE_FAIL")
    seen = ex.poll("j1", 1)  # within view_ttl: the cached view still says RUNNING, node up
    assert (seen.state, seen.message) == ("lost", "Slurm ended it: NODE_FAIL (None)")
