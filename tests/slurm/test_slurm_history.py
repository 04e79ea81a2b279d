"""An operator's own Slurm history, from the real ``sacct``, replayed in the twin.

The local Slurm of ``scripts/slurm-up.sh`` keeps its accounting in slurmdbd (on
MariaDB), so ``sacct`` answers here as on a site. Jobs of every kind the loader
must tell apart run through it: typed and untyped GPU requests under two
accounts, a job that fails, a CPU-only job, one cancelled before it started and
one still running. Their history is then loaded and replayed under two
policies, through the same command an operator would use, and the report sets
what this Slurm did with them beside the replays.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.loaders.sacct import DEFAULT_ORDER

pytestmark = pytest.mark.slurm
ACCOUNTS = ("research", "startup")


def _run(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"{' '.join(argv)}: {out.stderr.strip()}"
    return out.stdout


@pytest.fixture(scope="module")
def accounting(own_slurm: str) -> str:
    """The node, when slurmdbd answers and root may charge both test accounts."""
    try:
        out = subprocess.run(
            ["sacctmgr", "-n", "-P", "show", "assoc", "user=root", "format=account"],
            capture_output=True, text=True, timeout=15,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("sacctmgr did not answer in 15 s")
    if out.returncode != 0:
        pytest.skip(f"no slurmdbd answers ({out.stderr.strip()}); run scripts/slurm-up.sh "
                    "with MASNAA_SLURM_ACCOUNTING=1")
    missing = set(ACCOUNTS) - set(out.stdout.split())
    if missing:
        pytest.skip(f"root has no association with {sorted(missing)}; run scripts/slurm-up.sh")
    return own_slurm


@pytest.fixture
def submitted(accounting: str) -> Iterator[dict[str, str]]:
    tag = f"hist-{uuid.uuid4().hex[:8]}"
    ids: dict[str, str] = {}

    def sbatch(name: str, *args: str) -> None:
        out = _run("sbatch", "--parsable", "-o", "/dev/null", "-J", tag, *args)
        ids[name] = out.strip().split(";")[0]

    try:
        # 2 + 1 + 4 + 1 GPUs: all fit on the 8-GPU node at once.
        sbatch("typed", "-A", "startup", "--gres=gpu:h100:2", "-t", "5", "--wrap", "sleep 2")
        sbatch("failed", "-A", "research", "--gres=gpu:1", "-t", "1-02:00:00",
               "--wrap", "sleep 3; exit 3")
        sbatch("half", "-A", "research", "--gres=gpu:4", "-t", "10", "--wrap", "sleep 2")
        sbatch("cpu", "-A", "research", "-t", "5", "--wrap", "sleep 1")
        sbatch("held", "-A", "startup", "--gres=gpu:1", "-t", "5", "--hold", "--wrap", "true")
        sbatch("running", "-A", "startup", "--gres=gpu:1", "-t", "30", "--wrap", "sleep 300")
        _run("scancel", ids["held"])
        yield ids
    finally:
        if ids:
            subprocess.run(["scancel", *ids.values()], capture_output=True, timeout=15)


def _states(ids: dict[str, str]) -> dict[str, str]:
    out = _run("sacct", "-n", "-P", "-X", "-j", ",".join(ids.values()),
               "--format", "JobID,State")
    by_id = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    return {name: by_id.get(job, "").split(" ")[0] for name, job in ids.items()}


def test_real_sacct_history_loads_and_replays(
    submitted: dict[str, str], tmp_path: Path
) -> None:
    ended = {"typed": "COMPLETED", "failed": "FAILED", "half": "COMPLETED",
             "cpu": "COMPLETED", "held": "CANCELLED", "running": "RUNNING"}
    deadline = time.monotonic() + 60
    while (states := _states(submitted)) != ended:
        assert time.monotonic() < deadline, f"sacct still says {states}, waiting for {ended}"
        time.sleep(0.5)

    history = tmp_path / "history.txt"
    history.write_text(_run(
        "sacct", "--allusers", "--parsable2", "-j", ",".join(submitted.values()),
        "--format", ",".join(DEFAULT_ORDER),
    ))
    t = load_trace("sacct", TraceSource(path=history))

    by_id = {job: i for i, job in enumerate(t.ids)}
    assert set(by_id) == {submitted[n] for n in ("typed", "failed", "half")}
    # Each started job has a batch step; the held job never started, and the running
    # one's Elapsed is only the time so far.
    assert t.ignored == {"job-step": 5, "cpu-only": 1, "never-started": 1, "unfinished": 1}

    def job(name: str) -> int:
        return by_id[submitted[name]]

    assert [int(t.gpus[job(n)]) for n in ("typed", "failed", "half")] == [2, 1, 4]
    assert [t.tenants[int(t.tenant[job(n)])] for n in ("typed", "failed", "half")] == [
        "startup", "research", "research"]
    assert t.gpu_types[int(t.gpu_type[job("typed")])] == "h100"
    assert [float(t.time_limit[job(n)]) for n in ("typed", "failed", "half")] == [
        300.0, 26 * 3600.0, 600.0]
    for name, slept in (("typed", 2), ("failed", 3), ("half", 2)):
        # Slurm counts whole seconds from start to end; the batch shell adds a little.
        assert 1.0 <= float(t.runtime[job(name)]) <= slept + 10, name
    assert float(t.submit.min()) == 0.0 and float(t.submit.max()) < 30.0
    assert bool(np.all(t.tasks == 1))

    out = tmp_path / "report.json"
    res = CliRunner().invoke(app, [
        "sim", "--trace", "sacct", "--file", str(history), "--gpus", "8",
        "--policy", "masnaa,fifo-backfill", "--json", str(out), "--quiet",
    ], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["trace"]["jobs"] == 3 and doc["trace"]["ignored"] == t.ignored
    # Beside the replays, what this Slurm did with the same jobs: each started
    # within the minute waited above, and ran for its recorded Elapsed.
    history = doc["recorded"]
    assert history["jobs"] == {"total": 3, "finished": 3}
    assert 0.0 <= history["queueing_delay"]["max"] < 90.0
    assert history["jct"]["max"] >= float(t.runtime.max())
    assert t.started is not None
    assert history["makespan"] == pytest.approx(float(np.max(t.started + t.runtime)))
    assert "as recorded" in res.output
    for p in doc["policies"]:
        assert p["jobs"]["finished"] == 3, p["policy"]
        assert p["bounds"]["hold"]
        # Three jobs of 7 GPUs in all, submitted within seconds on 8 GPUs: the
        # makespan is at least the longest runtime.
        assert p["makespan"] >= float(t.runtime.max())
