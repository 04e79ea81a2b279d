"""Kill -9 the control loop at random moments during hundreds of short jobs, restart it,
and check what the store promises: every job reaches exactly one terminal state with its
real exit code, no GPU is ever held by two jobs at once, and no job runs twice.

The loop runs as its own process (``python -m masnaa.service.daemon``), as in production.
Each job writes a marker file named after its job id and attempt, with the GPUs it saw
and its start and end times; the markers, not the store, are the witness of what ran.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from masnaa.store import models as m

from .conftest import Factory

JOBS = 200
KILLS = 6
TERMINAL = {"succeeded", "failed", "cancelled"}


def start_loop(factory: Factory, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MASNAA_HOME=str(factory.home))
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "masnaa.service.daemon",
                "--db",
                factory.url,
                "--home",
                str(factory.home),
                "--tick",
                "0.1",
                "--no-migrate",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_started(log: Path, starts: int, timeout: float) -> None:
    """Until the loop's log shows ``starts`` completed starts."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("control loop started") < starts:
        assert time.monotonic() < deadline, "the control loop did not start"
        time.sleep(0.02)


def job_script(markers: Path, sleep: float, code: int) -> str:
    m_file = f"{markers}/$MASNAA_JOB_ID.$MASNAA_ATTEMPT"
    return (
        f'echo "start $(date +%s.%N) $CUDA_VISIBLE_DEVICES" >> {m_file}; '
        f"sleep {sleep}; "
        f'echo "end $(date +%s.%N)" >> {m_file}; '
        f"exit {code}"
    )


@pytest.mark.slow
def test_kill_nine_at_random_moments_loses_nothing_and_runs_nothing_twice(
    factory: Factory, tmp_path: Path
) -> None:
    rng = random.Random(20261125)
    markers = tmp_path / "markers"
    markers.mkdir()
    wanted: dict[str, tuple[int, int]] = {}
    specs = []
    for i in range(JOBS):
        code = (0, 0, 1, 3, 42)[i % 5]
        gpus = (1, 1, 2, 3)[i % 4]
        specs.append(
            {
                "command": ["sh", "-c", job_script(markers, rng.choice((0.01, 0.03, 0.06)), code)],
                "gpus_per_task": gpus,
                "time_limit": 120,
            }
        )
    ids = factory.submit(specs)
    for job_id, spec in zip(ids, specs, strict=True):
        wanted[job_id] = (int(spec["command"][2].rsplit("exit ", 1)[1]), spec["gpus_per_task"])

    log = tmp_path / "loop.log"
    loop = start_loop(factory, log)
    kills = 0
    try:
        for k in range(KILLS):
            if k % 3 == 2:
                # Now and then while it is still starting (reconciling)...
                time.sleep(rng.uniform(0.1, 1.0))
            else:
                # ...mostly while it schedules, launches and settles runs.
                wait_started(log, k + 1 - k // 3, timeout=20)
                time.sleep(rng.uniform(0.05, 0.8))
            os.kill(loop.pid, signal.SIGKILL)
            loop.wait()
            kills += 1
            loop = start_loop(factory, log)
        rows = factory.wait_until(ids, TERMINAL, timeout=45)
    finally:
        loop.terminate()
        loop.wait(timeout=10)
    assert kills == KILLS
    # The kills landed while work was in flight: some restart found runs to adopt or settle.
    # (Some kills land before a loop finished starting, so not every start gets logged.)
    restarts = re.findall(r"started: (\d+) running, (\d+) pending, (\d+) settled", log.read_text())
    assert len(restarts) >= 2, restarts
    assert any(int(running) + int(settled) > 0 for running, _, settled in restarts[1:]), restarts

    # 1. Exactly one terminal state each, with the job's real exit code.
    terminal_events = defaultdict(list)
    for e in factory.events():
        if e.to_state in TERMINAL:
            terminal_events[e.job_id].append(e.to_state)
    for job_id in ids:
        code, _ = wanted[job_id]
        row = rows[job_id]
        assert terminal_events[job_id] == [row.state], (job_id, terminal_events[job_id])
        assert row.exit_code == code, (job_id, row.exit_code, code, row.state_reason)
        assert row.state == (m.JobState.SUCCEEDED if code == 0 else m.JobState.FAILED)

    # 2. Nothing ran twice: one marker per job, from the attempt the store recorded.
    runs: dict[str, list[Path]] = defaultdict(list)
    for f in markers.iterdir():
        job_id, _attempt = f.name.rsplit(".", 1)
        runs[job_id].append(f)
    intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for job_id in ids:
        assert len(runs[job_id]) == 1, (job_id, runs[job_id])
        marker = runs[job_id][0]
        assert marker.name == f"{job_id}.{rows[job_id].attempt}"
        lines = marker.read_text().split("\n")
        start_line, end_line = lines[0].split(), lines[1].split()
        assert start_line[0] == "start" and end_line[0] == "end", lines
        gpus = start_line[2].split(",")
        placed = [str(g) for s in rows[job_id].placement or [] for g in s["gpus"]]
        assert gpus == placed and len(gpus) == wanted[job_id][1], (job_id, gpus, placed)
        for g in gpus:
            intervals[g].append((float(start_line[1]), float(end_line[1]), job_id))

    # 3. No GPU was ever held by two jobs at once.
    for gpu, spans in intervals.items():
        spans.sort()
        for (_s1, e1, j1), (s2, _e2, j2) in itertools.pairwise(spans):
            assert s2 >= e1, f"GPU {gpu}: {j2} started at {s2} before {j1} ended at {e1}"
