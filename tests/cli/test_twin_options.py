"""``masnaa sim`` and ``masnaa plan`` on input the audit of the twin found mishandled:
each is a clear error (exit 2, a code in brackets, no traceback) or a plain note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
SACCT = ("JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State\n"
         "1|2025-01-01T00:00:00|2025-01-01T00:00:00|2025-01-01T01:00:00|01:00:00|"
         "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n"
         "2|2025-01-01T00:10:00|2025-01-01T00:10:00|2025-01-01T01:00:00|{elapsed}|"
         "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n")


def sim(*args: str) -> object:
    return runner.invoke(app, ["sim", "--quiet", "--policy", "fifo", *args], env=WIDE)


def test_a_nan_elapsed_is_a_malformed_line_not_a_replay_that_never_ends(tmp_path: Path) -> None:
    p = tmp_path / "h.txt"
    p.write_text(SACCT.format(elapsed="nan:00:00"))
    res = sim("--trace", "sacct", "--file", str(p), "--gpus", "16")
    assert res.exit_code == 2 and "[malformed-line] line 3: Elapsed 'nan:00:00'" in res.output
    res = sim("--trace", "sacct", "--file", str(p), "--gpus", "16", "--lenient")
    assert res.exit_code == 0 and "skipped 1 malformed line" in res.output


@pytest.mark.parametrize("args,words", [
    (["--trace", "synthetic", "--seed", "-1", "--jobs", "100"], "--seed must be ≥ 0, got -1"),
    (["--load", "inf"], "--load must be a finite number > 0, got inf"),
    (["--load", "nan"], "--load must be a finite number > 0"),
    (["--gpus", "99999999999"], "--gpus must be a positive number of GPUs of at most 100,000"),
    (["--trace", "synthetic", "--jobs", "10", "--timezone", "Europe/Berlin"],
     "--timezone is for csv, sacct"),
])
def test_sim_refuses_options_that_cannot_be(args: list[str], words: str) -> None:
    res = sim("--days", "0.5", *args) if "synthetic" not in args else sim(*args)
    assert res.exit_code == 2, res.output
    assert "[bad-option]" in res.output and words in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("args,words", [
    (["--trace", "synthetic", "--seed", "-1", "--jobs", "100", "-t", "jct-mean<=1h"],
     "[bad-option] --seed must be ≥ 0"),
    (["-t", "jct-mean<=1m", "--days", "0.5"], "[bad-target] unknown unit 'm'"),
    (["-t", "jct-mean<=1h", "--days", "0.5", "--max-gpus", "200000"],
     "[bad-option] --max-gpus must be a positive number of GPUs of at most 100,000"),
])
def test_plan_refuses_options_that_cannot_be(args: list[str], words: str) -> None:
    res = runner.invoke(app, ["plan", "--quiet", *args], env=WIDE)
    assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output


def test_plan_help_says_what_its_json_holds() -> None:
    res = runner.invoke(app, ["plan", "--help"], env=WIDE)
    text = " ".join(res.output.replace("│", " ").split())
    assert "every metric of every replay" not in text
    assert "Not every metric" in text and "each size replayed" in text


def test_a_timezone_names_the_zone_sacct_printed_in(tmp_path: Path) -> None:
    # Europe/Berlin, 2025-03-30 at 02:00 clocks go to 03:00: job 2 waited 2 minutes.
    p = tmp_path / "dst.txt"
    p.write_text("JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State\n"
                 "1|2025-03-30T01:50:00|2025-03-30T01:50:00|2025-03-30T03:10:00|00:20:00|"
                 "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n"
                 "2|2025-03-30T01:59:00|2025-03-30T03:01:00|2025-03-30T03:11:00|00:10:00|"
                 "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n")
    out = tmp_path / "r.json"
    res = sim("--trace", "sacct", "--file", str(p), "--gpus", "16", "--timezone",
              "Europe/Berlin", "--json", str(out))
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["recorded"]["queueing_delay"]["max"] == 120.0
    res = sim("--trace", "sacct", "--file", str(p), "--gpus", "16", "--timezone", "Mars/Base")
    assert res.exit_code == 2 and "[bad-option] unknown time zone 'Mars/Base'" in res.output


def test_a_trace_submitted_at_one_instant_and_a_size_rounded_up_read_plainly(
    tmp_path: Path,
) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant\n0,60,1,a\n0,60,1,b\n")
    res = sim("--trace", "csv", "--file", str(p), "--gpus", "4")
    assert res.exit_code == 0, res.output
    assert "load factor —" in res.output and "load factor inf" not in res.output
    assert "(1 node)" in res.output
    assert "4 GPUs asked, 8 replayed: the cluster is whole nodes of 8" in res.output


def test_plan_names_one_node_in_the_singular(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant\n0,60,1,a\n100,60,1,b\n")
    res = runner.invoke(app, ["plan", "--quiet", "--trace", "csv", "--file", str(p), "-t",
                              "jct-mean<=1h", "--min-gpus", "8", "--max-gpus", "8"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "(1 node of 8," in res.output and "1 nodes" not in res.output


def test_csv_nodes_that_do_not_divide_the_gpus_are_a_malformed_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant,nodes\n0,60,16,a,3\n")
    res = sim("--trace", "csv", "--file", str(p), "--gpus", "16")
    assert res.exit_code == 2 and "16 GPUs do not divide over 3 nodes" in res.output
