"""The sacct loader on what real histories hold: heterogeneous jobs, pending array
ranges, jobs that ran for no time, and local times in a named zone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.trace import Trace

HEAD = "JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State\n"


def job(job_id: str, submit: str, start: str, elapsed: str, tres: str, state: str = "COMPLETED",
        account: str = "lab-a") -> str:
    """A line; its End is the start (the loader reads Elapsed), or Unknown with none."""
    end = "Unknown" if start in ("Unknown", "None") else start
    return f"{job_id}|{submit}|{start}|{end}|{elapsed}|{tres}|{account}|02:00:00|{state}\n"


def load(tmp_path: Path, *lines: str, timezone: str = "UTC") -> Trace:
    p = tmp_path / "h.txt"
    p.write_text(HEAD + "".join(lines), encoding="utf-8")
    return load_trace("sacct", TraceSource(path=p, timezone=timezone))


T0, T1 = "2025-01-01T01:00:00", "2025-01-01T01:00:10"


def test_a_het_job_of_like_components_is_one_gang_started_together(tmp_path: Path) -> None:
    t = load(tmp_path,
             job("108+0", T0, T1, "01:00:00", "gres/gpu=8,node=1"),
             job("108+1", T0, T1, "00:59:00", "gres/gpu=16,node=2"),
             job("108+2", T0, T1, "01:00:00", "cpu=4,node=1"),
             job("108+0.batch", T0, T1, "01:00:00", "gres/gpu=8,node=1"))
    assert t.ids == ["108"] and t.gpus.tolist() == [24] and t.tasks.tolist() == [3]
    assert t.runtime.tolist() == [3600.0] and t.ignored == {"job-step": 1}


def test_a_het_job_no_gang_can_express_is_counted_not_split(tmp_path: Path) -> None:
    # The audit's h1.txt: 8 GPUs on one node beside 4 on another. Replayed as two jobs,
    # a policy could start them hours apart; Slurm starts them together.
    t = load(tmp_path,
             job("100", T0, T1, "01:00:00", "gres/gpu=8,node=1"),
             job("108+0", T0, T1, "01:00:00", "gres/gpu=8,node=1"),
             job("108+1", T0, T1, "01:00:00", "gres/gpu=4,node=1"))
    assert t.ids == ["100"] and t.ignored == {"het-job-mixed": 1}


def test_a_pending_array_range_counts_each_of_its_jobs(tmp_path: Path) -> None:
    t = load(tmp_path,
             job("105_1", T0, T1, "00:10:00", "gres/gpu=1,node=1"),
             job("105_[3-5]", T0, "Unknown", "00:00:00", "gres/gpu=1", "PENDING"),
             job("106_[1,4-6%2]", T0, "Unknown", "00:00:00", "gres/gpu=1", "PENDING"),
             job("107_[2]", T0, "None", "00:00:00", "gres/gpu=1", "CANCELLED"))
    assert t.ids == ["105_1"]
    assert t.ignored == {"unfinished": 3 + 4, "never-started": 1}


def test_a_job_that_started_and_ran_for_no_time_is_not_called_never_started(
    tmp_path: Path,
) -> None:
    t = load(tmp_path,
             job("100", T0, T1, "01:00:00", "gres/gpu=8,node=1"),
             job("116", T0, T1, "00:00:00", "gres/gpu=8", "FAILED"),
             job("110", T0, "None", "00:00:00", "gres/gpu=8", "CANCELLED"))
    assert t.ignored == {"no-runtime": 1, "never-started": 1}


DST = (
    # Europe/Berlin, 2025-03-30: clocks go from 02:00 to 03:00. Job 2 waited 2 minutes.
    job("1", "2025-03-30T01:50:00", "2025-03-30T01:50:00", "00:20:00", "gres/gpu=8,node=1"),
    job("2", "2025-03-30T01:59:00", "2025-03-30T03:01:00", "00:10:00", "gres/gpu=8,node=1"),
)


def test_times_are_read_in_the_zone_the_history_was_printed_in(tmp_path: Path) -> None:
    utc = load(tmp_path, *DST)
    berlin = load(tmp_path, *DST, timezone="Europe/Berlin")
    for t, waited in ((utc, 3720.0), (berlin, 120.0)):
        assert t.started is not None
        assert (t.started - t.submit).tolist() == [0.0, waited]


def test_a_start_before_its_submit_is_replayed_and_counted(tmp_path: Path) -> None:
    # Europe/Berlin printed, read as UTC: the autumn hour shows a start before the submit.
    t = load(tmp_path, job("1", "2025-10-26T02:50:00", "2025-10-26T02:10:00", "00:20:00",
                           "gres/gpu=8,node=1"),
             job("2", "2025-10-26T02:55:00", "2025-10-26T02:56:00", "00:20:00",
                 "gres/gpu=8,node=1"))
    assert t.ids == ["1", "2"] and t.notes == {"start-before-submit": 1}
    assert np.isnan(t.started[0])


def test_an_unknown_zone_or_a_zone_for_a_trace_without_local_times_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(TraceError) as e:
        load(tmp_path, *DST, timezone="Mars/Olympus")
    assert e.value.code == "bad-option" and "IANA" in e.value.message
    with pytest.raises(TraceError) as e:
        load_trace("synthetic", TraceSource(jobs=10, timezone="Europe/Berlin"))
    assert e.value.code == "bad-option"


def test_a_job_cancelled_while_pending_never_started(tmp_path: Path) -> None:
    # Slurm gives such a job its cancel time as Start, Elapsed 0 and no allocation; a
    # job that ran for under a second has an allocation.
    t = load(tmp_path,
             job("7", T0, T1, "00:00:00", "", state="CANCELLED"),
             job("8", T0, T1, "00:00:00", "cpu=1,gres/gpu=1,node=1"),
             job("9", T0, T1, "00:10:00", "cpu=1,gres/gpu=1,node=1"))
    assert t.ids == ["9"]
    assert t.ignored == {"never-started": 1, "no-runtime": 1}
