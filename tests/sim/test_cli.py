"""``masnaa sim`` end to end on a slice of the bundled Philly trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.report import percent, range_cell

runner = CliRunner()


def test_sim_on_a_philly_slice_reports_sane_numbers(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    plots = tmp_path / "plots"
    res = runner.invoke(app, [
        "sim", "--policy", "masnaa,las,fifo-backfill,srtf-oracle", "--start", "45",
        "--days", "0.5", "--load", "0.9", "--json", str(out), "--plots", str(plots), "--quiet",
        "--by-tenant",
    ], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    labels = [p["label"] for p in doc["policies"]]
    assert labels == ["masnaa", "las", "fifo-backfill", "srtf-oracle (oracle)"]
    assert "srtf-oracle (oracle)" in res.output
    jobs = doc["trace"]["jobs"]
    assert jobs > 100 and doc["cluster"]["gpus"] % 8 == 0
    assert 0.8 < doc["cluster"]["load_factor"] < 1.0
    for p in doc["policies"]:
        assert p["jobs"]["finished"] == jobs - sum(p["jobs"]["rejected"].values())
        assert p["jobs"]["stranded"] == {}
        assert p["bounds"]["hold"] and p["bounds"]["jct_min_slack"] >= -1e-6
        assert p["makespan"] >= p["bounds"]["makespan_lower"]
        assert 0 < p["utilisation"] <= p["busy_utilisation"] <= 1.0
        assert p["jct"]["median"] <= p["jct"]["p99"] <= p["jct"]["max"]
        assert p["queueing_delay"]["p99"] <= p["queueing_delay"]["max"] <= p["jct"]["max"]
        assert 0 < p["fairness"]["jain"] <= 1.0
        assert p["engine"]["invariant_checks"] >= p["jobs"]["finished"]
        assert len(p["fairness"]["tenants"]) == doc["trace"]["tenants"]
        assert sum(t["jobs"] for t in p["fairness"]["tenants"]) == p["jobs"]["finished"]
    assert "per tenant: mean JCT" in res.output
    # The oracle's mean JCT is a lower reference for the non-preemptive baseline here.
    names = {p["policy"]: p for p in doc["policies"]}
    assert names["srtf-oracle"]["jct"]["mean"] <= names["fifo-backfill"]["jct"]["mean"] * 1.05
    assert {p.name for p in plots.iterdir()} >= {"jct_cdf.png", "utilisation.png",
                                                 "share_masnaa.png"}


def test_unknown_policy_lists_valid_names() -> None:
    res = runner.invoke(app, ["sim", "--policy", "masnaa,sjf", "--quiet"])
    assert res.exit_code == 2
    assert "sjf" in res.output and "fifo-backfill" in res.output


def test_unknown_trace_lists_valid_names() -> None:
    res = runner.invoke(app, ["sim", "--trace", "google", "--quiet"])
    assert res.exit_code == 2 and "synthetic" in res.output and "sacct" in res.output


def test_malformed_line_is_named_and_lenient_skips_it(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant\n0,10,1,a\n5,ten,1,b\n9,20,2,b\n")
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "8",
                              "--policy", "fifo", "--quiet"])
    assert res.exit_code == 2 and "line 3" in res.output and "--lenient" in res.output
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "8",
                              "--policy", "fifo", "--lenient", "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["trace"]["skipped_count"] == 1 and doc["trace"]["skipped_lines"][0]["line"] == 3
    assert doc["policies"][0]["jobs"]["finished"] == 2


def test_the_table_names_why_jobs_were_rejected(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant\n0,10,1,a\n5,ten,1,b\n9,20,64,b\n")
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "16",
                              "--policy", "fifo", "--lenient"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rejected = next(line for line in res.output.splitlines() if "rejected" in line)
    assert "1 (too-large)" in rejected
    # The skipped line is named once, with its reason.
    assert "first: line 3: runtime 'ten'" in res.output


def test_a_cluster_that_holds_every_job_on_arrival_is_called_so(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    # Three short jobs and one that runs for a week: sized for load 0.9 over the 200 s
    # span, the cluster is far larger than the 9 GPUs ever asked for at once.
    p.write_text("submit_time,runtime,gpus,tenant\n0,604800,8,a\n100,60,1,b\n200,60,1,b\n")
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--load", "0.9",
                              "--policy", "fifo", "--json", str(out), "--quiet"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["trace"]["peak_demand_gpus"] == 9 and doc["cluster"]["gpus"] > 9
    assert "at most 9 GPUs would be busy at once" in res.output
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "8",
                              "--policy", "fifo", "--quiet"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "would be busy at once" not in res.output


def test_same_seed_same_report(tmp_path: Path) -> None:
    docs = []
    for k in range(2):
        out = tmp_path / f"{k}.json"
        res = runner.invoke(app, ["sim", "--trace", "synthetic", "--jobs", "600", "--seed", "5",
                                  "--gpus", "128", "--policy", "masnaa,las", "--json", str(out),
                                  "--quiet"])
        assert res.exit_code == 0, res.output
        doc = json.loads(out.read_text())
        for p in doc["policies"]:
            del p["engine"]["wall_seconds"], p["engine"]["decide_seconds"]
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["policies"][0]["jobs"]["total"] == 600


def test_a_scheduler_knob_is_set_for_the_replay_and_a_bad_one_is_named(tmp_path: Path) -> None:
    base = ["sim", "--policy", "masnaa", "--start", "45", "--days", "0.5", "--quiet"]
    out = tmp_path / "r.json"
    res = runner.invoke(app, [*base, "--knob", "short_first_in_tenant=true",
                              "--knob", "victim-max-loss=600", "--json", str(out)])
    assert res.exit_code == 0, res.output
    run = json.loads(out.read_text())["policies"][0]
    assert run["jobs"]["finished"] > 100
    assert run["engine"]["knobs"] == {"short_first_in_tenant": True, "victim_max_loss": 600.0}
    res = runner.invoke(app, [*base, "--knob", "short_first=true"])
    assert res.exit_code == 2 and "bad-knob" in res.output and "victim_min_level" in res.output
    res = runner.invoke(app, [*base, "--knob", "victim_min_level=two"])
    assert res.exit_code == 2 and "takes a whole number" in res.output
    res = runner.invoke(app, [*base, "--knob", "victim_max_loss=-1"])
    assert res.exit_code == 2 and "victim_max_loss must be ≥ 0" in res.output
    twice = ["--knob", "victim_max_loss=60", "--knob", "victim-max-loss=90"]
    res = runner.invoke(app, [*base, *twice])
    assert res.exit_code == 2 and "victim_max_loss is set more than once" in res.output


def test_repeated_replays_report_how_far_a_moment_moves_each_metric(tmp_path: Path) -> None:
    # One busy day on 64 GPUs: moving submissions by under a minute moves the mean JCT
    # by days, which is what the spread is there to show.
    out = tmp_path / "r.json"
    res = runner.invoke(app, [
        "sim", "--policy", "fifo-backfill,masnaa", "--start", "45", "--days", "1",
        "--gpus", "64", "--repeat", "3", "--jitter", "30", "--json", str(out), "--quiet",
        "--by-tenant",
    ], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "over 3 replays, submit times jittered by up to 30 s" in res.output
    doc = json.loads(out.read_text())
    spread = doc["spread"]
    assert (spread["repeats"], spread["jitter_seconds"]) == (3, 30.0)
    for plain in doc["policies"]:
        metrics = spread["policies"][plain["label"]]
        jct = metrics["jct_mean"]
        assert len(jct["runs"]) == 3 and jct["runs"][0] == plain["jct"]["mean"]
        assert metrics["utilisation"]["runs"][0] == plain["utilisation"]
        for m in metrics.values():
            assert m["min"] <= m["mean"] <= m["max"]
        assert len(set(jct["runs"])) == 3  # every jittered copy replays differently
        # Per tenant: the first run is the plain replay's figure, and the tenants'
        # ranges move too.
        tenants = spread["tenants"][plain["label"]]
        assert set(tenants) == {t["tenant"] for t in plain["fairness"]["tenants"]}
        moved = 0
        for t in plain["fairness"]["tenants"]:
            mine = tenants[t["tenant"]]
            assert len(mine["jct_mean"]["runs"]) == 3
            assert mine["fair_ratio"]["runs"][0] == t["fair_ratio"]
            if t["jobs"]:
                assert mine["jct_mean"]["runs"][0] == t["jct"]["mean"]
                lo, mean, hi = (mine["jct_mean"][k] for k in ("min", "mean", "max"))
                assert lo <= mean <= hi
                moved += lo < hi
        assert moved > 0
    # The per-tenant table gives each cell's mean, range and mean fair ratio.
    per_tenant = res.output[res.output.index("per tenant over 3 replays"):]
    busiest = max(doc["policies"][0]["fairness"]["tenants"], key=lambda t: (t["jobs"], t["tenant"]))
    row = next(line for line in per_tenant.splitlines() if f"│ {busiest['tenant']} " in line)
    first = spread["tenants"][doc["policies"][0]["label"]][busiest["tenant"]]
    jct_cell = f"{range_cell(first['jct_mean'])}, {percent(first['fair_ratio']['mean'])}"
    assert jct_cell in row


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--restart-overhead", "nan"], "bad-option", "restart overhead must be ≥ 0 seconds"),
        (["--restart-overhead", "-3000"], "bad-option", "restart overhead must be ≥ 0 seconds"),
        (["--checkpoint-interval", "nan"], "bad-option", "checkpoint interval must be a positive"),
        (["--checkpoint-interval", "-1"], "bad-option", "checkpoint interval must be a positive"),
        (["--pass-interval", "-1"], "bad-option", "min pass interval must be ≥ 0 seconds"),
        (["--knob", "starvation_limit=nan"], "bad-knob", "knob starvation_limit takes a number"),
        (["--knob", "reclaim_after=-inf"], "bad-knob", "reclaim_after must be ≥ 0 seconds"),
    ],
)
def test_replay_settings_that_cannot_be_are_refused_before_the_replay(
    extra: list[str], code: str, words: str
) -> None:
    res = runner.invoke(app, ["sim", "--policy", "las", "--start", "45", "--days", "0.5", "--quiet",
                              *extra],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 2 and f"[{code}]" in res.output and words in res.output, res.output


def test_a_replay_where_no_job_finished_shows_no_figures(tmp_path: Path) -> None:
    trace = tmp_path / "big.csv"
    trace.write_text("submit_time,runtime,gpus,tenant\n0,100,64,a\n10,100,32,b\n")
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(trace), "--gpus", "8",
                              "-p", "fifo", "--quiet", "--json", str(out)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "JCT mean" in line)
    assert "—" in row and " 0 s" not in row
    doc = json.loads(out.read_text())  # strict JSON: no Infinity, no NaN
    p = doc["policies"][0]
    assert p["jobs"]["finished"] == 0 and p["jobs"]["rejected"] == {"too-large": 2}
    assert p["jct"]["mean"] is None and p["fairness"]["jain"] is None


def test_outputs_that_cannot_be_written_are_refused_before_the_replay(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("")
    base = ["sim", "--policy", "fifo", "--start", "45", "--days", "0.5", "--quiet"]
    for extra, words in [
        (["--json", str(tmp_path / "adir")], "is a directory: name a file"),
        (["--plots", str(tmp_path / "afile")], "is a file: name a directory"),
        (["--json", str(tmp_path / "afile" / "r.json")], "is a file, so nothing can be"),
    ]:
        res = runner.invoke(app, [*base, *extra], env={"COLUMNS": "300"})
        assert res.exit_code == 2 and "[bad-option]" in res.output, res.output
        assert words in res.output and "JCT mean" not in res.output  # no replay ran


def test_a_repeat_below_one_or_a_jitter_of_zero_is_refused() -> None:
    base = ["sim", "--policy", "fifo", "--start", "45", "--days", "0.5", "--quiet"]
    for extra in (["--repeat", "0"], ["--repeat", "2", "--jitter", "0"],
                  ["--repeat", "2", "--jitter", "nan"], ["--repeat", "2", "--jitter", "inf"]):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2 and "[bad-option]" in res.output and "--repeat" in res.output


def test_a_policy_named_twice_is_refused() -> None:
    res = runner.invoke(app, ["sim", "--policy", "fifo,fifo", "--days", "0.5", "--quiet"])
    assert res.exit_code == 2
    assert "[duplicate-policy]" in res.output and "--repeat" in res.output
    # `plan` has no --repeat to suggest.
    res = runner.invoke(app, ["plan", "--policy", "fifo,fifo", "--days", "0.5",
                              "-t", "queueing-p99<=1h"], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "[duplicate-policy]" in res.output and "--repeat" not in res.output


def test_workers_below_one_are_refused() -> None:
    res = runner.invoke(app, ["sim", "--policy", "fifo", "--days", "0.5", "--workers", "0",
                              "--quiet"])
    assert res.exit_code == 2 and "[bad-option]" in res.output and "--workers" in res.output


def test_a_history_with_recorded_starts_is_reported_beside_the_replays(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("submit_time,runtime,gpus,tenant,start_time\n"
                 "0,600,8,a,0\n10,600,8,b,600\n20,60,4,a,1200\n30,60,4,b,1200\n")
    out, plots = tmp_path / "r.json", tmp_path / "plots"
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "8",
                              "--policy", "fifo-backfill,masnaa", "--json", str(out),
                              "--plots", str(plots), "--quiet", "--by-tenant"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "as recorded" in res.output
    history = json.loads(out.read_text())["recorded"]
    # As recorded: the two 8-GPU jobs ran one after the other, then both 4-GPU jobs.
    assert history["makespan"] == 1260.0
    assert history["queueing_delay"]["max"] == 1180.0
    assert history["utilisation"] == (2 * 600 * 8 + 2 * 60 * 4) / (8 * 1260.0)
    assert (plots / "jct_cdf.png").stat().st_size > 0
    # Per tenant, as recorded: a's jobs took 600 s and 1,240 s; b's 1,190 s and 1,230 s.
    by = {t["tenant"]: t for t in history["tenants"]}
    assert by["a"]["jct"]["mean"] == 920.0 and by["b"]["jct"]["mean"] == 1210.0
    assert by["b"]["queueing_delay"]["mean"] == (590.0 + 1170.0) / 2
    per_tenant = res.output[res.output.index("per tenant"):]
    row_b = next(line for line in per_tenant.splitlines() if line.startswith("│ b "))
    assert row_b.rstrip(" │").endswith("20.2 min")  # the last column: as recorded


def test_what_a_history_leaves_out_is_said(tmp_path: Path) -> None:
    # A job with its step, a running job, a CPU-only job and two GPU jobs: the note
    # counts what the loader left out by rule, with the reason in words.
    p = tmp_path / "h.txt"
    p.write_text(
        "JobID|Submit|Start|End|Elapsed|AllocTRES|Account|Timelimit|State\n"
        "1|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T01:00:00|01:00:00|"
        "gres/gpu=8,node=1|a|02:00:00|COMPLETED\n"
        "1.batch|2026-01-01T00:00:00|2026-01-01T00:00:00|2026-01-01T01:00:00|01:00:00|"
        "gres/gpu=8,node=1|a||COMPLETED\n"
        "2|2026-01-01T00:10:00|2026-01-01T00:10:00|Unknown|00:30:00|gres/gpu=1,node=1|b|"
        "01:00:00|RUNNING\n"
        "3|2026-01-01T00:20:00|2026-01-01T00:20:00|2026-01-01T00:30:00|00:10:00|cpu=4,node=1|b|"
        "01:00:00|COMPLETED\n"
        "4|2026-01-01T00:30:00|2026-01-01T00:30:00|2026-01-01T00:40:00|00:10:00|"
        "gres/gpu=2,node=1|b|01:00:00|COMPLETED\n"
    )
    res = runner.invoke(app, ["sim", "--trace", "sacct", "--file", str(p), "--gpus", "8",
                              "--policy", "fifo", "--quiet"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    note = next(line for line in res.output.splitlines() if "not replayed" in line)
    assert note.endswith(
        "not replayed: 1 job steps (parts of a job), 1 unfinished when the history was "
        "taken, 1 without GPUs"
    )
    assert "2 / 2" in next(line for line in res.output.splitlines() if "finished / jobs" in line)


def test_a_synthetic_trace_is_made_for_the_load_it_is_replayed_at(tmp_path: Path) -> None:
    # The generator aimed at 0.8 while the cluster was sized for 0.9: 920 GPUs for a
    # trace made for 1,024, whose gangs of 1,024 GPUs were then rejected (15 of them).
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["sim", "--trace", "synthetic", "--jobs", "20000",
                              "--policy", "fifo", "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    drawn = load_trace("synthetic", TraceSource(jobs=20_000, target_load=0.9))
    assert int(drawn.gpus.max()) == 1024
    assert doc["policies"][0]["jobs"]["rejected"] == {}
    assert doc["policies"][0]["jobs"]["finished"] == 20_000
    assert doc["cluster"]["load_factor"] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--gpus", "0"], "--gpus must be a positive number of GPUs of at most 100,000 (the "
                          "largest cluster the twin builds), got 0"),
        (["--load", "0"], "--load must be a finite number > 0, got 0.0"),  # not the default
        (["--load", "0.5", "--gpus", "64"], "give either --load or --gpus"),
    ],
)
def test_a_cluster_size_that_cannot_be_is_refused(extra: list[str], words: str) -> None:
    res = runner.invoke(app, ["sim", "--policy", "fifo", "--days", "0.5", "--quiet", *extra],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "[bad-option]" in res.output and words in res.output


def test_the_table_counts_jobs_killed_at_their_limit(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("submit_time,runtime,gpus,tenant,time_limit\n"
                 "0,3600,8,a,1800\n10,600,1,b,\n20,100,1,a,7200\n")
    res = runner.invoke(app, ["sim", "--trace", "csv", "--file", str(p), "--gpus", "16",
                              "--policy", "fifo"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    killed = next(line for line in res.output.splitlines() if "killed at time limit" in line)
    assert killed.split("│")[2].strip() == "1"
