"""The ``masnaa`` command driven as a user would, against the real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner

from masnaa.cli.jobs import parse_duration
from masnaa.cli.main import app
from masnaa.client import MasnaaClient, MasnaaError, write_credentials

if TYPE_CHECKING:
    from tests.api.conftest import World

JOB_ID = re.compile(r"^j-[0-9a-z]{10}$")


def run(world: World, who: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"MASNAA_URL": world.server.url, "MASNAA_TOKEN": world[who].token,
           "COLUMNS": "200", "NO_COLOR": "1"}
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_submit_queue_show_explain_cancel(world: World, tmp_path: Path) -> None:
    code, out, err = run(world, "um6p-alice", "submit", "--gpus", "2", "--project", "llm",
                         "--time", "2h", "--env", "SEED=7", "--", "python", "train.py", "--lr",
                         "3e-4")
    assert code == 0, err
    job_id = out.strip()
    assert JOB_ID.match(job_id), out

    job = world["um6p-alice"].client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["command"] == ["python", "train.py", "--lr", "3e-4"]
    assert job["time_limit"] == 7200 and job["gpus_per_task"] == 2 and job["env"] == {"SEED": "7"}
    assert job["workdir"] == os.getcwd() and job["name"] == "python"

    code, out, _ = run(world, "um6p-alice", "queue")
    assert code == 0 and job_id in out and "pending" in out and "um6p/llm" in out
    assert "um6p: 0 GPUs in use of 8 quota" in out

    world.set_job(job_id, wait_code="no-capacity", wait_message="all 16 h100 GPUs are busy",
                  estimated_start=time.time() + 3600)
    code, out, _ = run(world, "um6p-alice", "explain", job_id)
    assert code == 0 and "all 16 h100 GPUs are busy" in out and "no-capacity" in out
    assert "estimated start" in out

    code, out, _ = run(world, "um6p-alice", "show", job_id)
    assert code == 0 and "submitted" in out and "python train.py --lr 3e-4" in out

    code, out, _ = run(world, "um6p-alice", "cancel", job_id)
    assert code == 0 and f"{job_id}: cancelled" in out
    code, out, _ = run(world, "um6p-alice", "queue")
    assert job_id not in out
    code, out, _ = run(world, "um6p-alice", "queue", "--all")
    assert job_id in out and "cancelled" in out


def test_api_errors_print_the_sentence_and_exit_1(world: World) -> None:
    code, _, err = run(world, "um6p-alice", "submit", "--gpu-type", "tpu-v5", "--project", "llm",
                       "--", "true")
    assert code == 1
    assert "GPU type 'tpu-v5' is not declared" in err and "unknown-gpu-type" in err
    code, _, err = run(world, "um6p-alice", "cancel", "j-0000000000")
    assert code == 1 and "job-not-found" in err


@pytest.mark.parametrize("option", ["--gpus", "--tasks"])
def test_a_gang_of_zero_is_refused_by_its_option_name(option: str) -> None:
    # Refused before the server is asked: the sentence names the option the user typed,
    # not the API's field.
    result = CliRunner().invoke(app, ["submit", option, "0", "--", "true"],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    assert "greater than or equal to 1" in result.output


def test_script_and_batch_submission(world: World, tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho training\n")
    code, out, err = run(world, "um6p-alice", "submit", "--script", str(script), "-p", "llm")
    assert code == 0, err
    job = world["um6p-alice"].client.get(f"/api/v1/jobs/{out.strip()}").json()
    assert job["script"] == "#!/bin/sh\necho training\n" and job["name"] == "train.sh"

    batch = tmp_path / "batch.json"
    batch.write_text(
        '[{"command": ["a"], "project": "llm"}, {"command": ["b"], "project": "vision"}]'
    )
    code, out, err = run(world, "um6p-alice", "submit-batch", str(batch))
    assert code == 0, err
    assert len([line for line in out.splitlines() if JOB_ID.match(line)]) == 2


def test_logs_print_the_output(world: World, tmp_path: Path) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    log = tmp_path / "stdout"
    log.write_text("epoch 1 loss 2.3\nepoch 2 loss 1.9\n")
    world.set_job(job_id, state="succeeded", attempt=1, stdout_path=str(log), exit_code=0,
                  ended_at=time.time())
    code, out, _ = run(world, "um6p-alice", "logs", job_id, "-f")
    assert code == 0 and out == "epoch 1 loss 2.3\nepoch 2 loss 1.9\n"


def test_logs_of_a_job_whose_files_were_deleted_fail_with_the_reason(
    world: World, tmp_path: Path
) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    log = tmp_path / job_id / "1" / "stdout.log"
    log.parent.mkdir(parents=True)
    log.write_text("gone soon\n")
    world.set_job(job_id, state="succeeded", attempt=1, stdout_path=str(log), exit_code=0,
                  started_at=time.time() - 5, ended_at=time.time())
    log.unlink()
    # Plain, following, and following the run by number (there is no run after it to
    # go on to: the reason is said, not a complaint about a run 2).
    for args in ([], ["-f"], ["-f", "--run", "1"]):
        code, out, err = run(world, "um6p-alice", "logs", job_id, *args)
        assert code == 1 and out == "", (args, out, err)
        assert "log-not-found" in err and "run 1's stdout is gone" in err, (args, err)
        assert "invalid-run" not in err and "run 2" not in err, (args, err)


def test_explain_of_a_failed_job_says_where_its_error_is(world: World, tmp_path: Path) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    err_log = tmp_path / "stderr"
    err_log.write_text("train.py: No such file or directory\n")
    world.set_job(job_id, state="failed", attempt=1, stderr_path=str(err_log), exit_code=2,
                  ended_at=time.time())
    code, out, _ = run(world, "um6p-alice", "explain", job_id)
    assert code == 0 and f"masnaa logs {job_id} --stderr" in out
    code, out, _ = run(world, "um6p-alice", "logs", job_id, "--stderr")
    assert code == 0 and out == "train.py: No such file or directory\n"


def test_queue_says_what_the_asterisk_of_a_stopping_job_means(world: World) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    code, out, _ = run(world, "um6p-alice", "queue")
    assert code == 0 and "cancel requested" not in out
    world.set_job(job_id, state="running", started_at=time.time(), cancel_requested=True)
    code, out, _ = run(world, "um6p-alice", "queue")
    assert code == 0 and "running*" in out and "* cancel requested" in out


def test_queue_says_where_a_job_runs_and_why_one_waits(world: World) -> None:
    gang, single, waiting = (world.submit("um6p-alice", project="llm")["id"] for _ in range(3))
    now = time.time()
    world.set_job(gang, state="running", started_at=now, site="ma-1",
                  placement=[{"node": "ma-n0", "gpus": [0, 1]}, {"node": "ma-n1", "gpus": [0, 1]}])
    world.set_job(single, state="running", started_at=now, site="ma-1",
                  placement=[{"node": "ma-n1", "gpus": [2]}])
    world.set_job(waiting, wait_code="no-capacity", wait_message="busy")
    code, out, _ = run(world, "um6p-alice", "queue")
    assert code == 0 and "NODES/REASON" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("j-")}
    assert "ma-n0+1" in rows[gang] and "ma-n1" in rows[single] and "no-capacity" in rows[waiting]
    first_in_line = re.compile(r"\s1\s+no-capacity\b")  # POS, then NODES/REASON
    assert first_in_line.search(" ".join(rows[waiting]))
    # A plain listing knows no places in line, and has no column for them.
    code, out, _ = run(world, "um6p-alice", "queue", "--all")
    header = next(line for line in out.splitlines() if line.lstrip().startswith("JOB"))
    assert code == 0 and "POS" not in header.split() and "NODES/REASON" in header
    row = next(line for line in out.splitlines() if line.startswith(waiting))
    assert "no-capacity" in row and not first_in_line.search(row)


def test_queue_keeps_one_line_per_job_in_a_narrow_terminal(world: World) -> None:
    ids = [world.submit("um6p-alice", project="llm", name=f"a-rather-long-run-name-{k}")["id"]
           for k in range(3)]
    world.set_job(ids[0], wait_code="no-capacity", wait_message="busy")
    # A process of its own: the console takes its width from COLUMNS when it is made.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env.update(MASNAA_URL=world.server.url, MASNAA_TOKEN=world["um6p-alice"].token,
               COLUMNS="80", NO_COLOR="1")
    done = subprocess.run([str(Path(sys.executable).parent / "masnaa"), "queue"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), "\n".join(lines)
    rows = [line for line in lines if line.startswith("j-")]
    # Ids, states and wait codes stay whole; the names are cut short, not folded.
    assert [row.split()[0] for row in rows] == ids
    assert "no-capacity" in rows[0] and all("pending" in row for row in rows)
    assert any("…" in row for row in rows)


def test_a_listing_with_long_reasons_keeps_every_column_in_80(world: World) -> None:
    ids = [world.submit("um6p-alice", project="llm", name=f"run-{k}")["id"] for k in range(3)]
    now = time.time()
    world.set_job(ids[0], state="failed", ended_at=now, exit_code=143, state_reason=(
        "time-limit: stopped at its time limit, exit code 143 (signal 15)"))
    world.set_job(ids[1], state="cancelled", ended_at=now, cancel_requested=True,
                  state_reason="cancelled: stopped, exit code 143 (signal 15)")
    world.set_job(ids[2], wait_code="waiting-for-preemption", wait_message="soon")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env.update(MASNAA_URL=world.server.url, MASNAA_TOKEN=world["um6p-alice"].token,
               COLUMNS="80", NO_COLOR="1")
    done = subprocess.run([str(Path(sys.executable).parent / "masnaa"), "queue", "--all"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), "\n".join(lines)
    # The long reasons are cut, not the other columns dropped; a wait code stays whole.
    assert lines[0].split() == ["JOB", "NAME", "PROJECT", "USER", "STATE", "GPUS",
                                "NODES/REASON", "START"]
    rows = {line.split()[0]: line for line in lines if line.startswith("j-")}
    assert "time-limit: " in rows[ids[0]] and "…" in rows[ids[0]]
    assert "waiting-for-preemption" in rows[ids[2]] and "run-2" in rows[ids[2]]
    # An ended job is not "stopping", however it was asked to stop.
    assert "cancelled*" not in rows[ids[1]] and "cancel requested" not in done.stdout


def test_usage_table(world: World) -> None:
    job_id = world.submit("um6p-alice", project="llm", gpus_per_task=4)["id"]
    now = time.time()
    world.set_job(job_id, state="succeeded", started_at=now - 3600, ended_at=now)
    code, out, _ = run(world, "um6p-alice", "usage")
    assert code == 0 and "llm" in out and "4.00" in out


def test_admin_verbs(world: World) -> None:
    code, out, err = run(world, "ops", "admin", "tenants", "create", "uct", "--country", "za",
                         "--kind", "university")
    assert code == 0, err
    code, out, err = run(world, "ops", "admin", "projects", "create", "genomics",
                         "--tenant", "uct")
    assert code == 0, err
    code, out, err = run(world, "ops", "admin", "users", "create", "thandi", "--tenant", "uct",
                         "--role", "tenant-admin", "--token")
    assert code == 0, err
    token = out.strip().splitlines()[-1].split()[-1]
    assert token.startswith("msn_")
    thandi = MasnaaClient(world.server.url, token)
    assert thandi.whoami() == {"user": "thandi", "role": "tenant-admin", "tenant": "uct"}
    thandi.close()

    code, out, _ = run(world, "ops", "admin", "nodes", "drain", "ma-n1", "--reason", "bad fan")
    assert code == 0 and "drained" in out
    code, out, _ = run(world, "um6p-alice", "admin", "nodes", "list")
    assert code == 0 and "bad fan" in out
    code, _, err = run(world, "um6p-alice", "admin", "nodes", "undrain", "ma-n1")
    assert code == 1 and "forbidden" in err
    code, out, _ = run(world, "ops", "admin", "nodes", "undrain", "ma-n1")
    assert code == 0 and "up" in out

    code, out, _ = run(world, "ops", "admin", "quotas", "set", "uct", "ma-1", "h100-sxm-80gb", "4")
    assert code == 0
    code, out, _ = run(world, "um6p-admin", "admin", "tokens", "list")
    assert code == 0 and "um6p-bob" in out and "thandi" not in out


def test_without_credentials_it_says_how_to_get_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["queue"], env={"MASNAA_HOME": str(tmp_path),
                                                     "MASNAA_URL": "", "MASNAA_TOKEN": ""})
    assert result.exit_code == 1
    assert "masnaa up" in result.stderr and "no-credentials" in result.stderr


def test_an_unreachable_server_is_a_clear_error() -> None:
    client = MasnaaClient("http://127.0.0.1:9", "msn_x", timeout=2)
    with pytest.raises(MasnaaError) as info:
        client.queue()
    assert info.value.code == "unreachable" and info.value.status == 0


def test_masnaa_submit_as_a_process_reads_the_credentials_file(
    world: World, tmp_path: Path
) -> None:
    write_credentials(world.server.url, world["um6p-bob"].token, home=tmp_path)
    assert (tmp_path / "credentials.toml").stat().st_mode & 0o777 == 0o600
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env["MASNAA_HOME"] = str(tmp_path)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "masnaa"), "submit", "--gpus", "2", "-p", "vision",
         "--", "python", "train.py"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert JOB_ID.match(job_id)
    job = world["um6p-bob"].client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["user"] == "um6p-bob" and job["total_gpus"] == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 5400), ("30s", 30), ("45m", 2700), ("2h", 7200), ("1d", 86400),
     ("1:30:00", 5400), ("2-00:00:00", 172800), ("10:00", 600)],
)
def test_durations_read_like_slurm(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@contextmanager
def following(
    world: World, job_id: str, *args: str
) -> Iterator[dict[str, tuple[int, str, str]]]:
    """``masnaa logs -f [args]`` in a thread while the body writes and requeues; then the
    job ends, and the follower must stop by itself. Its exit code, stdout and stderr are
    ``result["run"]``. (A test that requeues names ``--run 1``: a follower thread that
    starts late would otherwise begin at the run the body has already started.)"""
    result: dict[str, tuple[int, str, str]] = {}
    follower = threading.Thread(
        target=lambda: result.setdefault(
            "run", run(world, "um6p-alice", "logs", job_id, "-f", "--interval", "0.05", *args)
        )
    )
    follower.start()
    time.sleep(0.3)
    yield result
    time.sleep(0.3)
    world.set_job(job_id, state="succeeded", ended_at=time.time(), exit_code=0)
    follower.join(timeout=20)
    assert not follower.is_alive()


def test_logs_follow_prints_new_output_until_the_job_ends(world: World, tmp_path: Path) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    log = tmp_path / "stdout"
    log.write_text("step 1\n")
    world.set_job(job_id, state="running", attempt=1, stdout_path=str(log), started_at=time.time())
    with following(world, job_id) as result, log.open("a") as f:
        f.write("step 2\n")
    code, out, _ = result["run"]
    assert code == 0 and out == "step 1\nstep 2\n"


def test_logs_follow_goes_on_to_the_next_run(world: World, tmp_path: Path) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    runs = tmp_path / job_id
    first = runs / "1" / "stdout"
    first.parent.mkdir(parents=True)
    first.write_text("a long first run\n" * 5)
    world.set_job(job_id, state="running", attempt=1, stdout_path=str(first),
                  started_at=time.time())
    with following(world, job_id, "--run", "1") as result:
        with first.open("a") as f:
            f.write("checkpoint saved\n")
        time.sleep(0.3)
        # Preempted and started again: the second run writes a shorter file of its own.
        second = runs / "2" / "stdout"
        second.parent.mkdir()
        second.write_text("resumed\n")
        world.set_job(job_id, attempt=2, stdout_path=str(second))
    code, out, err = result["run"]
    assert code == 0 and out == "a long first run\n" * 5 + "checkpoint saved\nresumed\n"
    assert f"--- {job_id}: run 2 ---" in err
    # Without -f: the latest run, and a word that there were others.
    code, out, err = run(world, "um6p-alice", "logs", job_id)
    assert code == 0 and out == "resumed\n" and "run 2 of 2" in err
    code, out, _ = run(world, "um6p-alice", "logs", job_id, "--run", "1")
    assert code == 0 and out.endswith("checkpoint saved\n")


def test_logs_follow_goes_on_where_a_site_keeps_only_the_latest_run(
    world: World, tmp_path: Path
) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    first, second = tmp_path / "slurm-1.out", tmp_path / "slurm-2.out"
    first.write_text("one\n")
    world.set_job(job_id, state="running", attempt=1, stdout_path=str(first),
                  started_at=time.time())
    with following(world, job_id, "--run", "1") as result:
        second.write_text("two\n")
        world.set_job(job_id, attempt=2, stdout_path=str(second))
    code, out, err = result["run"]
    # A follower that started after the requeue never saw run 1's file: it says so
    # and goes on all the same.
    assert code == 0 and out in ("one\ntwo\n", "two\n")
    assert "run 1 cannot be read further" in err


def test_a_job_its_site_holds_says_why_everywhere(world: World) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    held = "held pending by Slurm: Resources"
    world.set_job(job_id, state="running", attempt=1, site="ma-1", gpu_type="h100-sxm-80gb",
                  wait_message=held)
    for args in (["queue"], ["show", job_id], ["explain", job_id]):
        code, out, err = run(world, "um6p-alice", *args)
        assert code == 0 and held in out, (args, out, err)
    code, out, _ = run(world, "um6p-alice", "explain", job_id)
    assert "not started yet" in out
    # Once it starts, the reason is gone: it runs.
    world.set_job(job_id, started_at=time.time(), wait_message=None)
    code, out, _ = run(world, "um6p-alice", "explain", job_id)
    assert code == 0 and held not in out and "running on ma-1" in out


def test_every_command_and_option_says_what_it_does() -> None:
    import typer.main

    def walk(cmd: Any, path: str) -> list[str]:
        missing = [] if (cmd.help or cmd.short_help) else [path]
        missing += [f"{path} --{p.name}" for p in cmd.params
                    if p.param_type_name == "option" and not p.help]
        for name, sub in getattr(cmd, "commands", {}).items():
            missing += walk(sub, f"{path} {name}")
        return missing

    assert walk(typer.main.get_command(app), "masnaa") == []
