"""Trace loaders: the bundled Philly copy, the generic CSV, sacct output, the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import LOADERS, TraceSource, load_trace
from masnaa.sim.loaders.sacct import parse_tres
from masnaa.sim.trace import job_shape


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_bundled_philly_is_the_whole_trace_sorted() -> None:
    t = load_trace("philly", TraceSource())
    assert len(t) == 82_247
    assert len(t.tenants) == 15
    assert t.submit[0] == 0.0
    assert bool(np.all(np.diff(t.submit) >= 0))
    assert 108.8 < t.span / 86400 < 109.0
    # README of the shipped copy: 978,078 GPU-hours offered.
    assert round(t.offered_gpu_seconds() / 3600) == 978_078
    assert np.isnan(t.time_limit).all()
    assert int(t.gpus.max()) == 128


def test_philly_file_malformed_line_named_and_lenient(tmp_path: Path) -> None:
    p = write(tmp_path, "p.csv",
              "timestamp,duration,num_gpus,gpu_time,cluster\n"
              "2017-10-09 07:01:55,66.0,1,66.0,a\n"
              "2017-10-09 07:02:55,abc,1,66.0,a\n"
              "2017-10-09 07:00:00,10,2,20,b\n")
    with pytest.raises(TraceError) as e:
        load_trace("philly", TraceSource(path=p))
    assert e.value.line == 3 and "duration" in e.value.message
    t = load_trace("philly", TraceSource(path=p, lenient=True))
    assert len(t) == 2 and [s.line for s in t.skipped] == [3]
    # Sorted: b's job came first.
    assert t.tenants[int(t.tenant[0])] == "b" and t.submit.tolist() == [0.0, 115.0]


CSV = """submit_time,runtime,gpus,tenant,time_limit,gpu_type,nodes,job_id
100,3600,8,lab-a,7200,h100,,j1
0,60,1,lab-b,,,,j2
2024-01-01T00:00:00,10,0,lab-b,,,,cpu
50,30,16,lab-a,20,h100,4,j3
"""


def test_csv_columns_limits_types_and_cpu_jobs(tmp_path: Path) -> None:
    t = load_trace("csv", TraceSource(path=write(tmp_path, "t.csv", CSV)))
    assert len(t) == 3 and t.ignored == {"cpu-only": 1}
    assert t.ids == ["j2", "j3", "j1"]
    assert np.isnan(t.time_limit[0]) and t.time_limit[2] == 7200
    assert t.gpu_types == ("h100",) and t.gpu_type.tolist() == [-1, 0, 0]
    assert t.tasks.tolist() == [0, 4, 0]
    # j3 asked for 20 s and needed 30: it is cut at its limit.
    assert t.work().tolist() == [60.0, 20.0, 3600.0]


@pytest.mark.parametrize(
    ("row", "line", "fragment"),
    [
        ("5,60,1\n", 3, "expected 8 fields"),
        ("x,60,1,a,,,,\n", 3, "submit_time"),
        ("5,-1,1,a,,,,\n", 3, "runtime must be > 0"),
        ("5,60,1.5,a,,,,\n", 3, "gpus"),
        ("5,60,1,,,,,\n", 3, "tenant is empty"),
        ("nan,60,1,a,,,,\n", 3, "submit_time 'nan' must be a finite time"),
        ("inf,60,1,a,,,,\n", 3, "submit_time 'inf' must be a finite time"),
        ("5,60,inf,a,,,,\n", 3, "gpus 'inf' is not a whole number"),
        ("5,60,nan,a,,,,\n", 3, "gpus 'nan' is not a whole number"),
        ("5,60,1,a,,,inf,\n", 3, "nodes 'inf' is not a whole number"),
        ("5,60,1,a,nan,,,\n", 3, "time_limit 'nan' must be finite"),
    ],
)
def test_csv_malformed_lines(tmp_path: Path, row: str, line: int, fragment: str) -> None:
    head = "submit_time,runtime,gpus,tenant,time_limit,gpu_type,nodes,job_id\n0,1,1,a,,,,\n"
    p = write(tmp_path, "bad.csv", head + row)
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=p))
    assert e.value.code == "malformed-line" and e.value.line == line
    assert fragment in e.value.message
    lenient = load_trace("csv", TraceSource(path=p, lenient=True))
    assert len(lenient) == 1 and lenient.skipped[0].line == line
    # The reason is the sentence alone: the line number sits beside it, not in it twice.
    assert fragment in lenient.skipped[0].reason
    assert not lenient.skipped[0].reason.startswith("line ")


def test_csv_as_spreadsheets_and_archives_write_it(tmp_path: Path) -> None:
    import gzip

    text = "submit_time,runtime,gpus,tenant\r\n0,100,8,a\r\n10,200,4,b\r\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for p in (bom, packed):
        t = load_trace("csv", TraceSource(path=p))
        assert t.gpus.tolist() == [8, 4] and t.runtime.tolist() == [100.0, 200.0]


def test_csv_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"submit_time,runtime,gpus,tenant\n0,100,8,a\n5,100,8,caf\xe9\n")
    for lenient in (False, True):
        with pytest.raises(TraceError) as e:
            load_trace("csv", TraceSource(path=p, lenient=lenient))
        assert e.value.code == "bad-encoding" and e.value.line == 3
        assert "UTF-8" in e.value.message


def test_csv_lines_are_counted_across_a_quoted_line_break(tmp_path: Path) -> None:
    text = ('submit_time,runtime,gpus,tenant,job_id\n0,100,8,a,"multi\nline\nid"\n'
            "10,abc,4,b,j2\n")
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=write(tmp_path, "m.csv", text)))
    assert e.value.line == 5 and "runtime" in e.value.message
    t = load_trace("csv", TraceSource(path=write(tmp_path, "m.csv", text), lenient=True))
    assert t.ids == ["multi\nline\nid"] and t.skipped[0].line == 5


def test_a_trace_left_empty_says_what_was_skipped(tmp_path: Path) -> None:
    text = "submit_time,runtime,gpus,tenant\n0,abc,8,a\n10,xyz,4,b\n5,10,0,c\n"
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=write(tmp_path, "bad.csv", text), lenient=True))
    assert e.value.code == "empty-trace"
    assert "2 malformed lines were skipped, the first: line 2: runtime 'abc'" in e.value.message
    assert "ignored: 1 cpu-only" in e.value.message


def test_csv_start_time_is_the_recorded_start(tmp_path: Path) -> None:
    head = "submit_time,runtime,gpus,tenant,start_time\n"
    p = write(tmp_path, "s.csv", head + "100,60,1,a,160\n0,30,2,b,\n")
    t = load_trace("csv", TraceSource(path=p))
    # Sorted by submit: b (start unknown), then a, which waited a minute.
    assert t.started is not None
    assert np.isnan(t.started).tolist() == [True, False]
    assert t.started[1] == 160.0
    assert load_trace("csv", TraceSource(path=write(
        tmp_path, "n.csv", "submit_time,runtime,gpus,tenant\n0,30,2,b\n"))).started is None
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=write(tmp_path, "b.csv", head + "100,60,1,a,99\n")))
    assert e.value.line == 2 and "before submit_time" in e.value.message


def test_csv_bad_header(tmp_path: Path) -> None:
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource(path=write(tmp_path, "h.csv", "submit,runtime\n1,2\n")))
    assert e.value.code == "bad-header" and "submit_time" in e.value.message


SACCT = """JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State
101|2025-03-01T10:00:00|2025-03-01T10:05:00|2025-03-01T12:05:00|02:00:00|billing=64,cpu=64,gres/gpu:h100=8,gres/gpu=8,mem=512G,node=1|lab-a|1-00:00:00|COMPLETED
101.batch|2025-03-01T10:05:00|2025-03-01T10:05:00|2025-03-01T12:05:00|02:00:00|cpu=64,gres/gpu=8,mem=512G,node=1|lab-a||COMPLETED
102|2025-03-01T09:00:00|2025-03-01T09:00:00|2025-03-01T13:00:00|04:00:00|cpu=128,gres/gpu=16,node=2|lab-b|04:00:00|TIMEOUT
103|2025-03-01T11:00:00|Unknown|Unknown|00:00:00|cpu=8,gres/gpu=1,node=1|lab-a|01:00:00|CANCELLED
104|2025-03-01T11:30:00|2025-03-01T11:30:00|2025-03-01T11:40:00|00:10:00|cpu=8,mem=1G,node=1|lab-c|UNLIMITED|COMPLETED
105_7|2025-03-01T11:45:00|2025-03-01T11:45:00|2025-03-02T11:45:00|1-00:00:00|cpu=8,gres/gpu:a100=2,node=1|lab-c|UNLIMITED|FAILED
106|2025-03-01T12:00:00|2025-03-01T12:00:00|Unknown|00:30:00|cpu=8,gres/gpu=1,node=1|lab-a|02:00:00|RUNNING
108|2025-03-01T12:15:00|Unknown|Unknown|00:00:00|cpu=8,gres/gpu=1,node=1|lab-a|01:00:00|PENDING
""" + (
    # Slurm writes who cancelled a job into its state.
    "107|2025-03-01T12:10:00|2025-03-01T12:10:00|2025-03-01T12:20:00|00:10:00|"
    "cpu=8,gres/gpu=4,node=1|lab-b|01:00:00|CANCELLED by 1000\n"
)


def test_sacct_sample(tmp_path: Path) -> None:
    t = load_trace("sacct", TraceSource(path=write(tmp_path, "h.txt", SACCT)))
    # 106 still runs and 108 waits: their Elapsed is no runtime. 107 was cancelled
    # while it ran: it ended, and its ten minutes are replayed.
    assert t.ids == ["102", "101", "105_7", "107"]
    assert t.ignored == {"job-step": 1, "never-started": 1, "cpu-only": 1, "unfinished": 2}
    assert t.gpus.tolist() == [16, 8, 2, 4]
    assert t.tasks.tolist() == [2, 1, 1, 1]
    assert t.runtime.tolist() == [4 * 3600.0, 2 * 3600.0, 86400.0, 600.0]
    assert t.time_limit[0] == 4 * 3600.0 and t.time_limit[1] == 86400.0
    assert np.isnan(t.time_limit[2])
    assert t.submit.tolist() == [0.0, 3600.0, 2.75 * 3600, 3 * 3600 + 600]
    assert [t.gpu_types[g] if g >= 0 else None for g in t.gpu_type.tolist()] == [
        None, "h100", "a100", None]
    # Recorded starts, in the same seconds as submit: 101 waited five minutes.
    assert t.started is not None
    assert (t.started - t.submit).tolist() == [0.0, 300.0, 0.0, 0.0]
    assert t.origin is None


def test_sacct_start_before_submit_is_replayed_with_an_unknown_start(tmp_path: Path) -> None:
    text = (SACCT.splitlines()[0] + "\n"
            "201|2025-03-01T10:00:00|2025-03-01T09:00:00|2025-03-01T11:00:00|02:00:00|"
            "gres/gpu=1,node=1|lab-a|UNLIMITED|COMPLETED\n"
            "202|2025-03-01T10:00:00|2025-03-01T10:30:00|2025-03-01T11:00:00|00:30:00|"
            "gres/gpu=1,node=1|lab-a|UNLIMITED|COMPLETED\n")
    t = load_trace("sacct", TraceSource(path=write(tmp_path, "h.txt", text)))
    assert t.ids == ["201", "202"] and t.runtime.tolist() == [7200.0, 1800.0]
    assert t.started is not None
    assert np.isnan(t.started[0]) and t.started[1] == 1800.0


@pytest.mark.parametrize("first", ["Account", "User", "JobIDRaw"])
def test_sacct_header_in_any_order(tmp_path: Path, first: str) -> None:
    rows = [line.split("|") for line in SACCT.splitlines()]
    header = rows[0]
    if first == "JobIDRaw":  # sacct's numeric id, named so in the header
        header = ["JobIDRaw" if c == "JobID" else c for c in header]
    k = header.index(first) if first in header else None
    moved = []
    for row in [header, *rows[1:]]:
        row = list(row)
        cell = row.pop(k) if k is not None else ("User" if row is header else "alice")
        moved.append("|".join([cell, *row]))
    t = load_trace("sacct", TraceSource(path=write(tmp_path, "h.txt", "\n".join(moved) + "\n")))
    assert t.ids == ["102", "101", "105_7", "107"] and t.gpus.tolist() == [16, 8, 2, 4]


def test_sacct_malformed_and_lenient(tmp_path: Path) -> None:
    text = SACCT.replace("|02:00:00|billing", "|2h|billing", 1)
    p = write(tmp_path, "h.txt", text)
    with pytest.raises(TraceError) as e:
        load_trace("sacct", TraceSource(path=p))
    assert e.value.line == 2 and "Elapsed" in e.value.message
    assert len(load_trace("sacct", TraceSource(path=p, lenient=True))) == 3


def test_parse_tres() -> None:
    assert parse_tres("billing=8,cpu=64,gres/gpu:h100=8,gres/gpu=8,mem=512G,node=1", 1) == (
        8, "h100", 1)
    assert parse_tres("cpu=4,gres/gpu:l40s=2,node=1", 1) == (2, "l40s", 1)
    assert parse_tres("cpu=4,mem=1G", 1) == (0, None, 0)


def test_unknown_trace_lists_valid_names() -> None:
    with pytest.raises(TraceError) as e:
        load_trace("alibaba", TraceSource())
    assert e.value.code == "unknown-trace"
    for name in ("philly", "csv", "sacct", "synthetic"):
        assert name in e.value.message and name in LOADERS


def test_a_generator_takes_no_file_and_at_least_one_tenant(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "submit_time,runtime,gpus,tenant\n0,1,1,a\n")
    with pytest.raises(TraceError) as e:
        load_trace("synthetic", TraceSource(path=p, jobs=10))
    assert e.value.code == "bad-option" and "reads no file" in e.value.message
    with pytest.raises(TraceError) as e:
        load_trace("synthetic", TraceSource(jobs=10, tenants=0))
    assert e.value.code == "bad-option" and "--tenants must be positive" in e.value.message


def test_file_loader_needs_a_file() -> None:
    with pytest.raises(TraceError) as e:
        load_trace("csv", TraceSource())
    assert e.value.code == "trace-file-required"


def test_synthetic_is_seeded_and_shaped() -> None:
    a = load_trace("synthetic", TraceSource(jobs=20_000, seed=7, capacity_gpus=2048))
    b = load_trace("synthetic", TraceSource(jobs=20_000, seed=7, capacity_gpus=2048))
    c = load_trace("synthetic", TraceSource(jobs=20_000, seed=8, capacity_gpus=2048))
    assert np.array_equal(a.submit, b.submit) and np.array_equal(a.runtime, b.runtime)
    assert not np.array_equal(a.runtime, c.runtime)
    assert int(a.gpus.max()) == 1024 and (a.gpus == 1).mean() > 0.5
    assert float(np.mean(a.runtime)) > 3 * float(np.median(a.runtime))  # heavy tail
    load = a.offered_gpu_seconds() / (2048 * a.span)
    assert 0.7 < load < 0.95  # aimed at 0.8
    small = load_trace("synthetic", TraceSource(jobs=2000, capacity_gpus=64))
    assert int(small.gpus.max()) <= 64


@pytest.mark.parametrize(
    ("gpus", "tasks", "shape"),
    [(1, 0, (1, 1)), (8, 0, (1, 8)), (16, 0, (2, 8)), (12, 0, (2, 6)), (24, 0, (3, 8)),
     (128, 0, (16, 8)), (16, 4, (4, 4)), (16, 3, (2, 8))],
)
def test_job_shape(gpus: int, tasks: int, shape: tuple[int, int]) -> None:
    assert job_shape(gpus, tasks, 8) == shape


def test_slice_by_days_and_limit() -> None:
    t = load_trace("philly", TraceSource())
    s = t.slice(start_days=40, days=2, limit=500)
    assert len(s) == 500 and s.submit[0] == 0.0 and s.span < 2 * 86400
    with pytest.raises(TraceError):
        t.slice(start_days=500)


def test_a_jittered_trace_holds_the_same_jobs_moved_by_less_than_the_jitter() -> None:
    plain = load_trace("philly", TraceSource()).slice(start_days=45, days=1)
    moved = plain.jittered(1, 60.0)
    assert sorted(moved.ids) == sorted(plain.ids)
    assert np.all(np.diff(moved.submit) >= 0) and moved.submit[0] == 0.0
    before = dict(zip(plain.ids, plain.submit, strict=True))
    shift = np.array([s - before[i] for i, s in zip(moved.ids, moved.submit, strict=True)])
    assert np.all(np.abs(shift) < 60.0) and np.any(shift != 0.0)
    assert moved.offered_gpu_seconds() == pytest.approx(plain.offered_gpu_seconds())
    again = plain.jittered(1, 60.0)
    assert list(again.submit) == list(moved.submit)
    assert list(plain.jittered(2, 60.0).submit) != list(moved.submit)
