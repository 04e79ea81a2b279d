"""Replays in worker processes give the report that one process gives."""

from __future__ import annotations

from typing import Any

import pytest

from masnaa.sim.compare import compare
from masnaa.sim.errors import SimError
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.parallel import Run, Setup, run_parallel
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import size_for
from masnaa.sim.trace import Trace

TIMINGS = ("wall_seconds", "decide_seconds")


@pytest.fixture(scope="module")
def day() -> Trace:
    return load_trace("philly", TraceSource()).slice(start_days=45, days=0.5)


def _without_timings(doc: dict[str, Any]) -> dict[str, Any]:
    for summary in doc["policies"]:
        for key in TIMINGS:
            del summary["engine"][key]
    return doc


def test_workers_give_the_same_document_as_one_process(day: Trace) -> None:
    sizing = size_for(day, load=None, gpus=64)
    seen: dict[str, list[tuple[int, int]]] = {}

    def progress(label: str) -> Any:
        return lambda done, total: seen.setdefault(label, []).append((done, total))

    one = compare(day, ["masnaa", "fifo-backfill"], sizing, EngineConfig(), repeats=2, jitter=30)
    two = compare(day, ["masnaa", "fifo-backfill"], sizing, EngineConfig(), repeats=2, jitter=30,
                  workers=2, progress=progress)
    assert one["policies"][0]["preemptions"] > 0  # a replay with something to lose
    assert _without_timings(two) == _without_timings(one)
    assert set(seen) == {"masnaa", "fifo-backfill", "masnaa #2", "fifo-backfill #2"}
    for reports in seen.values():  # each bar starts at 0 and ends with every job done
        assert reports[0] == (0, len(day)) and reports[-1] == (len(day), len(day))


def test_a_run_that_fails_in_a_worker_fails_the_comparison_with_its_own_error(
    day: Trace,
) -> None:
    setup = Setup(day, size_for(day, load=None, gpus=64).nodes, EngineConfig(), 60.0)
    with pytest.raises(SimError) as caught:
        run_parallel(setup, [Run("masnaa", "masnaa"), Run("sjf", "sjf")], workers=2)
    assert caught.value.code == "unknown-policy"
    assert "sjf" in caught.value.message and "fifo-backfill" in caught.value.message


def test_fewer_than_one_worker_is_refused(day: Trace) -> None:
    with pytest.raises(SimError) as caught:
        compare(day, ["fifo"], size_for(day, load=None, gpus=64), EngineConfig(), workers=0)
    assert caught.value.code == "bad-option"
