"""Trace fields that must be finite and bounded (durations, limits, instants), in every
file loader, and the engine's own guard against a time that is not a number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from twin_builders import deadline, run, trace

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.loaders.fields import MAX_DURATION, slurm_duration

HEAD = "JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State\n"
GOOD = ("1|2025-01-01T00:00:00|2025-01-01T00:00:00|2025-01-01T01:00:00|01:00:00|"
        "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n")


def sacct_line(elapsed: str = "01:00:00", limit: str = "02:00:00") -> str:
    return (f"2|2025-01-01T00:10:00|2025-01-01T00:10:00|2025-01-01T01:00:00|{elapsed}|"
            f"gres/gpu=8,node=1|a|{limit}|COMPLETED\n")


@pytest.mark.parametrize("value,seconds", [
    ("1-02:03:04", 93784.0), ("02:03:04", 7384.0), ("10", 600.0), ("10:30", 630.0),
    ("1-02", 93600.0), ("1-02:03", 93780.0), ("00:10.5", 10.5), ("UNLIMITED", None),
    ("Partition_Limit", None),
])
def test_slurm_durations_in_every_form_slurm_prints(value: str, seconds: float | None) -> None:
    assert slurm_duration("Elapsed", value, 1) == seconds


@pytest.mark.parametrize("value", [
    "nan", "nan:00:00", "inf", "1e30", "-5", "1.5", "1-02.5", "1:2:3:4", "3651-00:00:00",
])
def test_slurm_durations_that_are_no_duration_are_malformed(value: str) -> None:
    with pytest.raises(TraceError) as e:
        slurm_duration("Elapsed", value, 7)
    assert e.value.code == "malformed-line" and e.value.line == 7


@pytest.mark.parametrize("elapsed,limit", [
    ("nan:00:00", "02:00:00"), ("nan", "02:00:00"), ("inf", "UNLIMITED"),
    ("01:00:00", "inf"), ("1e30", "02:00:00"),
])
def test_sacct_nan_inf_and_huge_are_malformed_lines(
    tmp_path: Path, elapsed: str, limit: str,
) -> None:
    p = tmp_path / "h.txt"
    p.write_text(HEAD + GOOD + sacct_line(elapsed, limit), encoding="utf-8")
    with pytest.raises(TraceError) as e:
        load_trace("sacct", TraceSource(path=p))
    assert e.value.code == "malformed-line" and e.value.line == 3
    t = load_trace("sacct", TraceSource(path=p, lenient=True))
    assert t.ids == ["1"] and [s.line for s in t.skipped] == [3]


def test_sacct_end_minus_start_beyond_ten_years_is_malformed(tmp_path: Path) -> None:
    p = tmp_path / "h.txt"
    p.write_text("JobID|Submit|Start|End|AllocTRES|Account\n"
                 "1|2025-01-01T00:00:00|2025-01-01T00:00:00|2040-01-01T00:00:00|gres/gpu=1|a\n",
                 encoding="utf-8")
    with pytest.raises(TraceError) as e:
        load_trace("sacct", TraceSource(path=p))
    assert e.value.line == 2 and "10 years" in e.value.message


@pytest.mark.parametrize("row", ["0,1e300,8,a,", "0,3600,8,a,1e300", "1e300,3600,8,a,"])
def test_csv_durations_and_times_beyond_the_bounds_are_malformed(
    tmp_path: Path, row: str,
) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant,time_limit\n0,60,1,a,\n" + row + "\n",
                 encoding="utf-8")
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=p))
    assert e.value.code == "malformed-line" and e.value.line == 3
    assert len(load_trace("csv", TraceSource(path=p, lenient=True))) == 1


def test_a_runtime_of_exactly_ten_years_is_still_a_duration(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text(f"submit_time,runtime,gpus,tenant\n0,{MAX_DURATION:.0f},1,a\n", encoding="utf-8")
    assert load_trace("csv", TraceSource(path=p)).runtime.tolist() == [MAX_DURATION]


def test_philly_duration_beyond_the_bound_is_malformed(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n"
                 "2017-10-09 07:01:55,1e12,1,66.0,a\n", encoding="utf-8")
    with pytest.raises(TraceError) as e:
        load_trace("philly", TraceSource(path=p))
    assert e.value.line == 2 and "10 years" in e.value.message


@pytest.mark.parametrize("column,value", [("runtime", np.nan), ("runtime", np.inf),
                                          ("submit", np.nan), ("time_limit", np.inf)])
def test_the_engine_refuses_a_trace_made_in_code_with_a_time_that_is_no_number(
    column: str, value: float,
) -> None:
    t = trace((0, 3600, 8, "a", 7200), (600, 60, 8, "a", 7200))
    getattr(t, column)[1] = value
    with deadline(20), pytest.raises(TraceError) as e:
        run(t, policy="fifo")
    assert e.value.code == "bad-trace"
