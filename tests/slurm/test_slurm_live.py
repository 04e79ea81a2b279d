"""The slurm executor against the real local Slurm (``scripts/slurm-up.sh``).

Each test is a story told through the executor's contract: start, poll, stop,
and what a restarted Masnaa (a new executor object) finds.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_builders import MakeSpec, resume, slurm_jobs_named, wait_until

from masnaa.executors.base import LaunchSpec, NodeGpus
from masnaa.executors.slurm import SiteUnreachable, SlurmExecutor, SlurmSiteConfig

pytestmark = pytest.mark.slurm
SLURM_UP = Path(__file__).resolve().parents[2] / "scripts" / "slurm-up.sh"


def test_a_job_runs_on_the_gpus_slurm_granted_and_its_output_is_kept(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec("cvd", 'echo "gpus=$CUDA_VISIBLE_DEVICES"; echo oops >&2', gpus=3)
    executor.start(spec)
    executor.start(spec)  # idempotent: still one Slurm job
    seen = wait_until(executor, spec, lambda o: o.done)
    assert (seen.state, seen.exit_code, seen.reason) == ("exited", 0, "exited")
    assert seen.started_at is not None and seen.ended_at is not None
    assert seen.started_at <= seen.ended_at
    rec = executor.records(spec.job_id, 1)
    gpus = (rec.dir / "stdout").read_text().strip().removeprefix("gpus=").split(",")
    assert len(gpus) == 3 and len(set(gpus)) == 3, gpus
    assert (rec.dir / "stderr").read_text().strip() == "oops"
    assert len(slurm_jobs_named(f"masnaa-{spec.job_id}-1")) == 1


def test_exit_code_3_is_recorded_as_3(executor: SlurmExecutor, make_spec: MakeSpec) -> None:
    spec = make_spec("fail", "exit 3")
    executor.start(spec)
    seen = wait_until(executor, spec, lambda o: o.done)
    assert (seen.state, seen.exit_code, seen.signal, seen.reason) == ("exited", 3, None, "exited")


def test_beyond_capacity_slurm_pending_is_visible_with_its_reason(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    total = executor.nodes()[0].gpu_count
    first = make_spec("big1", "sleep 60", gpus=total)
    second = make_spec("big2", "sleep 60", gpus=total)
    executor.start(first)
    wait_until(executor, first, lambda o: o.started_at is not None)
    executor.start(second)
    seen = wait_until(executor, second, lambda o: "not scheduled yet" not in o.message)
    assert seen.state == "running" and seen.started_at is None
    assert seen.message.startswith("held pending by Slurm: ")
    assert "Resources" in seen.message or "Priority" in seen.message, seen.message
    executor.stop(second.job_id, 1, 30, "cancelled")  # pending: cancelled at once
    gone = wait_until(executor, second, lambda o: o.done)
    assert gone.reason == "stopped" and gone.stop_reason == "cancelled"
    assert gone.started_at is None  # it never held a GPU: nothing to charge


def test_cancel_without_grace_ends_the_job_now(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec("cancel", "sleep 120")
    executor.start(spec)
    wait_until(executor, spec, lambda o: o.started_at is not None)
    t0 = time.monotonic()
    executor.stop(spec.job_id, 1, 0, "cancelled")
    executor.stop(spec.job_id, 1, 0, "cancelled")  # idempotent
    seen = wait_until(executor, spec, lambda o: o.done)
    assert time.monotonic() - t0 < 15
    assert (seen.state, seen.reason, seen.stop_reason) == ("exited", "stopped", "cancelled")


def test_preemption_gives_the_job_its_grace_to_checkpoint(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec(
        "ckpt",
        "trap 'sleep 1; echo saved > checkpoint; exit 0' TERM; touch ready; "
        "while :; do sleep 0.1; done",
    )
    executor.start(spec)
    rec = executor.records(spec.job_id, 1)
    wait_until(executor, spec, lambda o: (rec.dir / "ready").exists())
    executor.stop(spec.job_id, 1, 20, "preempted")
    seen = wait_until(executor, spec, lambda o: o.done)
    assert (seen.state, seen.exit_code, seen.reason) == ("exited", 0, "stopped")
    assert seen.stop_reason == "preempted"
    assert (rec.dir / "checkpoint").read_text() == "saved\n"


def test_a_job_deaf_to_term_is_killed_when_its_grace_ends(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec("deaf", "trap '' TERM; touch ready; while :; do sleep 0.1; done")
    executor.start(spec)
    rec = executor.records(spec.job_id, 1)
    wait_until(executor, spec, lambda o: (rec.dir / "ready").exists())
    t0 = time.time()
    executor.stop(spec.job_id, 1, 2, "preempted")
    seen = wait_until(executor, spec, lambda o: o.done)
    assert (seen.reason, seen.signal, seen.stop_reason) == ("stopped", 9, "preempted")
    assert seen.ended_at is not None and 1.5 <= seen.ended_at - t0 < 10


def test_the_time_limit_ends_a_job_to_the_second(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec("limit", "sleep 120", time_limit=2, kill_grace=1)
    executor.start(spec)
    seen = wait_until(executor, spec, lambda o: o.done)
    assert seen.reason == "time-limit"
    assert seen.started_at is not None and seen.ended_at is not None
    assert seen.ended_at - seen.started_at < 6


def test_a_node_drained_in_slurm_lets_its_running_job_finish(
    executor: SlurmExecutor, make_spec: MakeSpec, own_slurm: str
) -> None:
    spec = make_spec("drain-finish", "sleep 4; exit 3")
    executor.start(spec)
    wait_until(executor, spec, lambda o: o.started_at is not None)
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={own_slurm}", "state=drain",
             "reason=masnaa test drain"],
            check=True, capture_output=True, timeout=15,
        )  # fmt: skip
        assert own_slurm in executor.unavailable_nodes()  # no new work there...
        seen = wait_until(executor, spec, lambda o: o.done)
        # ...but the run that was there finished as Slurm meant it to, with its own code.
        assert (seen.state, seen.exit_code) == ("exited", 3), seen
    finally:
        resume(own_slurm)


def test_a_job_scancelled_in_slurm_ends_and_names_who(
    executor: SlurmExecutor, make_spec: MakeSpec
) -> None:
    spec = make_spec("outside", "trap 'sleep 1; exit 7' TERM; sleep 120 & wait")
    executor.start(spec)
    wait_until(executor, spec, lambda o: o.started_at is not None)
    subprocess.run(["scancel", *slurm_jobs_named(f"masnaa-{spec.job_id}-1")], check=True,
                   capture_output=True, timeout=15)  # fmt: skip
    seen = wait_until(executor, spec, lambda o: o.done)
    # Not "stopped" (which the loop runs again): cancelled outside, with who did it.
    assert (seen.state, seen.reason) == ("exited", "cancelled-outside"), seen
    assert seen.signal == 15 and seen.exit_code is None
    assert seen.stop_reason is not None and seen.stop_reason.startswith("cancelled in Slurm")


@pytest.mark.parametrize("state", ["down"])
def test_a_node_that_goes_down_loses_its_jobs_with_the_reason(
    executor: SlurmExecutor, make_spec: MakeSpec, own_slurm: str, state: str
) -> None:
    slurm_node = own_slurm
    spec = make_spec(f"node-{state}", "sleep 120")
    executor.start(spec)
    wait_until(executor, spec, lambda o: o.started_at is not None)
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={slurm_node}", f"state={state}",
             f"reason=masnaa test {state}"],
            check=True, capture_output=True, timeout=15,
        )  # fmt: skip
        seen = wait_until(executor, spec, lambda o: o.done)
        assert seen.state == "lost"
        assert slurm_node in seen.message or "NODE_FAIL" in seen.message, seen.message
        assert state in seen.message.lower() or "NodeDown" in seen.message, seen.message
        # Lost is final, and Slurm no longer runs it (a requeued attempt never runs beside it).
        assert executor.poll(spec.job_id, 1).state == "lost"
        out = subprocess.run(
            ["squeue", "-h", "-n", f"masnaa-{spec.job_id}-1", "-t", "R,PD"],
            capture_output=True, text=True, timeout=15,
        )  # fmt: skip
        assert out.stdout.strip() == ""
    finally:
        resume(slurm_node)
    # A new executor (Masnaa restarted) reads the same verdict from the records.
    again = SlurmExecutor(executor.config).poll(spec.job_id, 1)
    assert again.state == "lost" and again.message == seen.message


def test_a_restarted_masnaa_adopts_jobs_and_never_submits_twice(
    executor: SlurmExecutor, make_spec: MakeSpec, site_config: SlurmSiteConfig
) -> None:
    running = make_spec("adopt", "sleep 5; exit 4")
    executor.start(running)
    wait_until(executor, running, lambda o: o.started_at is not None)

    # The answer of an sbatch was lost (crash right after it): the records say
    # "submitting" with no Slurm id, yet Slurm has the job.
    lost_answer = make_spec("lost-answer", "exit 0")
    executor.start(lost_answer)
    rec = executor.records(lost_answer.job_id, 1)
    rec.remove("slurm_job_id")
    rec.put("submitting", "0")

    restarted = SlurmExecutor(site_config)
    for spec in (running, lost_answer):
        restarted.start(spec)
    found = restarted.reconcile()
    assert (running.job_id, 1) in found and found[(running.job_id, 1)].state == "running"
    for spec in (running, lost_answer):
        assert len(slurm_jobs_named(f"masnaa-{spec.job_id}-1")) == 1
    done = wait_until(restarted, running, lambda o: o.done)
    assert (done.exit_code, done.reason) == (4, "exited")

    # Records wiped entirely: Slurm's comment still ties the job to its attempt.
    blank = SlurmExecutor(
        site_config.model_copy(update={"state_dir": site_config.state_dir / "new"})
    )
    late = make_spec("adopt-late", "sleep 30")
    executor.start(late)
    adopted = blank.reconcile()
    assert adopted[(late.job_id, 1)].state == "running"
    blank.start(late)
    assert len(slurm_jobs_named(f"masnaa-{late.job_id}-1")) == 1


def test_masnaa_killed_during_dispatch_runs_nothing_twice(
    executor: SlurmExecutor, make_spec: MakeSpec, site_config: SlurmSiteConfig, tmp_path: Path
) -> None:
    specs = [make_spec(f"k{i}", "sleep 2", attempt=1) for i in range(12)]
    lines = [
        "from masnaa.executors.base import LaunchSpec, NodeGpus",
        "from masnaa.executors.slurm import SlurmExecutor, SlurmSiteConfig",
        f"cfg = SlurmSiteConfig.model_validate_json({site_config.model_dump_json()!r})",
        "ex = SlurmExecutor(cfg)",
        f"ids = {[s.job_id for s in specs]!r}",
        f"node = {specs[0].placement[0].node!r}",
        "specs = [LaunchSpec(job_id=i, attempt=1, argv=('bash', '-c', 'sleep 2'),",
        "          placement=(NodeGpus(node, (0,)),), time_limit=60) for i in ids]",
        "print('ready', flush=True)",
        "ex.start_many(specs)",
        "print('done', flush=True)",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "\n".join(lines)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.05)
    proc.kill()  # SIGKILL, mid-dispatch
    proc.wait()

    restarted = SlurmExecutor(site_config)
    for spec in specs:
        restarted.start(spec)
    for spec in specs:
        assert len(slurm_jobs_named(f"masnaa-{spec.job_id}-1")) == 1, spec.job_id
    for spec in specs:
        seen = wait_until(restarted, spec, lambda o: o.done, timeout=60)
        assert (seen.state, seen.exit_code) == ("exited", 0), (spec.job_id, seen)


def test_controller_down_is_unreachable_then_everything_resumes(
    executor: SlurmExecutor, make_spec: MakeSpec, site_config: SlurmSiteConfig, own_slurm: str
) -> None:
    fast = SlurmExecutor(site_config.model_copy(update={"command_timeout": 2.0}))
    running = make_spec("ctld-run", "sleep 8; exit 5")
    fast.start(running)
    wait_until(fast, running, lambda o: o.started_at is not None)
    queued = make_spec("ctld-new", "exit 0")
    pid = int(Path("/run/slurmctld.pid").read_text())
    subprocess.run(["kill", str(pid)], check=True)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(SiteUnreachable):
            fast.poll(running.job_id, 1)
        with pytest.raises(SiteUnreachable):
            fast.start(queued)  # stays queued in Masnaa; retried later
    finally:
        subprocess.run(
            ["bash", "scripts/slurm-up.sh"], check=True, capture_output=True, timeout=120
        )
    fast.start(queued)  # the retry: looks Slurm up by name first, then submits once
    assert len(slurm_jobs_named(f"masnaa-{queued.job_id}-1")) == 1
    assert wait_until(fast, queued, lambda o: o.done).exit_code == 0
    seen = wait_until(fast, running, lambda o: o.done)
    assert (seen.state, seen.exit_code) == ("exited", 5)


def test_a_script_body_runs_like_a_command_and_its_logs_are_found(
    executor: SlurmExecutor, slurm_node: str, prefix: str
) -> None:
    spec = LaunchSpec(
        job_id=f"{prefix}-script",
        attempt=1,
        argv=(),
        script='set -e\nfor i in 1 2 3; do echo "line $i"; done\nexit 0\n',
        placement=(NodeGpus(slurm_node, (0,)),),
        time_limit=60,
    )
    # Asked at admission, before the launch claims the run, the paths are already known.
    before = executor.log_paths(spec.job_id, 1)
    executor.start(spec)
    seen = wait_until(executor, spec, lambda o: o.done)
    assert (seen.state, seen.exit_code) == ("exited", 0)
    paths = executor.log_paths(spec.job_id, 1)
    assert paths is not None and paths == before
    assert Path(paths[0]).read_text().splitlines() == ["line 1", "line 2", "line 3"]


def test_a_job_pinned_to_a_drained_node_is_lost_not_left_waiting(
    executor: SlurmExecutor, make_spec: MakeSpec, own_slurm: str
) -> None:
    slurm_node = own_slurm
    spec = make_spec("pinned-drained", "exit 0")
    subprocess.run(
        ["scontrol", "update", f"nodename={slurm_node}", "state=drain", "reason=masnaa fans"],
        check=True, capture_output=True, timeout=15,
    )  # fmt: skip
    try:
        executor.start(spec)
        seen = wait_until(executor, spec, lambda o: o.done)
    finally:
        resume(slurm_node)
    assert seen.state == "lost" and seen.started_at is None
    # The node's state flags are Slurm's at that moment ("idle+completing+drain" while an
    # earlier test's job still completes there): the drain and its reason are what count.
    assert re.fullmatch(
        rf"cannot start: node {re.escape(slurm_node)} is [a-z+]*\bdrain\b[a-z+]*: masnaa fans",
        seen.message or "",
    ), seen.message
