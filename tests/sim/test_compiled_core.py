"""The mypyc-compiled core (``MASNAA_USE_MYPYC=1``) decides exactly as the interpreted one.

These run in the compiled-core step of ``scripts/test.sh``: ``PYTHONPATH`` points
at the wheel ``scripts/build-compiled.sh`` unpacked, and ``MASNAA_EXPECT_COMPILED=1``
says so. Elsewhere they are skipped with that reason. The step also runs the
scheduler, twin and service suites on the compiled core.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any

import pytest

import masnaa.domain
import masnaa.scheduler

pytestmark = pytest.mark.skipif(
    os.environ.get("MASNAA_EXPECT_COMPILED") != "1",
    reason="runs in scripts/test.sh's compiled-core step (MASNAA_EXPECT_COMPILED=1)",
)

SRC = Path(__file__).resolve().parents[2] / "src"
POLICIES = "masnaa,las,fifo-backfill,fifo,srtf-oracle"
# The only part of a report the two cores may disagree on: wall-clock times.
TIMINGS = ("decide_seconds", "wall_seconds")


def _compiled(module: str) -> bool:
    file = importlib.import_module(module).__file__ or ""
    return any(file.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


def test_every_module_of_the_pure_core_and_the_twins_loop_is_compiled_and_nothing_else() -> None:
    core = [
        m.name
        for pkg in (masnaa.domain, masnaa.scheduler)
        for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")
    ]
    assert len(core) > 10
    assert [m for m in ["masnaa.domain", "masnaa.scheduler", *core] if not _compiled(m)] == []
    # The twin's event loop and its bookkeeping are compiled too (setup.py); the rest of
    # the twin, and the service, stay Python.
    twin = ["masnaa.sim.engine", "masnaa.sim.fit", "masnaa.sim.holdings", "masnaa.sim.limits"]
    assert [m for m in twin if not _compiled(m)] == []
    others = ["masnaa.sim.records", "masnaa.sim.timeline", "masnaa.sim.metrics", "masnaa.service"]
    assert [m for m in others if _compiled(m)] == []


def _replay(tmp: Path, name: str, pythonpath: str, core: str) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    cmd = [
        str(Path(sys.executable).with_name("masnaa")), "sim", "--policy", POLICIES,
        "--start", "28", "--days", "2", "--gpus", "416", "--quiet", "--json", str(out),
    ]
    env = {**os.environ, "PYTHONPATH": pythonpath}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    for policy in report["policies"]:
        assert policy["engine"].pop("core") == core
        for key in TIMINGS:
            del policy["engine"][key]
    return report


def test_a_philly_replay_is_the_same_on_both_cores(tmp_path: Path) -> None:
    compiled = _replay(tmp_path, "compiled", os.environ["PYTHONPATH"], "mypyc")
    interpreted = _replay(tmp_path, "interpreted", str(SRC), "python")
    by_policy = {p["policy"]: p for p in compiled["policies"]}
    assert sorted(by_policy) == sorted(POLICIES.split(","))
    # Whole Philly's cluster at load 0.9 in its busiest weeks: preemptions, not only starts.
    assert by_policy["masnaa"]["preemptions"] > 0 and by_policy["las"]["preemptions"] > 0
    assert compiled == interpreted
