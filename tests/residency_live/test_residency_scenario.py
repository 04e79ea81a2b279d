"""The multi-site twin scenario: same workload with and without residency."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app as cli
from masnaa.policy.loader import load_rules
from masnaa.sim.residency_scenario import (
    SITES,
    ScenarioConfig,
    build_cluster,
    build_trace,
    run_scenario,
)


def test_bound_jobs_carry_their_lawful_sites_and_the_free_twin_carries_none() -> None:
    rules = load_rules()
    cluster = build_cluster()
    assert [(s.name, s.country) for s in cluster.sites] == [(n, c) for n, c, _ in SITES]
    law, free, lawful, bound = build_trace(ScenarioConfig(jobs=300, seed=3), rules, cluster)
    assert free.sites is None and law.sites is not None
    restricted = [s for s in law.sites if s is not None]
    assert 0 < len(restricted) <= bound < 300
    # Same jobs, same times: only the constraint differs.
    assert (law.submit == free.submit).all() and (law.runtime == free.runtime).all()
    # A strict-local class never leaves home: some jobs may run at one site only.
    assert any(len(s) == 1 for s in restricted)
    assert all(set(s) <= {n for n, _, _ in SITES} for s in restricted)
    assert sum(lawful.values()) >= len(restricted)


def test_the_report_is_deterministic_and_without_bound_data_both_runs_agree() -> None:
    a = run_scenario(ScenarioConfig(jobs=150, seed=5, policy="fifo-backfill"))
    b = run_scenario(ScenarioConfig(jobs=150, seed=5, policy="fifo-backfill"))
    assert a.as_dict() == b.as_dict()
    with_law, without = a.runs
    assert with_law.finished == without.finished == 150  # the engine checked every site
    none = run_scenario(ScenarioConfig(jobs=150, seed=5, bound_share=0.0,
                                       policy="fifo-backfill"))
    assert none.bound_jobs == 0
    assert none.runs[0].wait_mean == none.runs[1].wait_mean
    assert none.runs[0].site_load == none.runs[1].site_load


def test_the_cli_prints_both_runs_side_by_side() -> None:
    done = CliRunner().invoke(cli, ["sim-residency", "--jobs", "80", "--json",
                                    "--policy", "fifo-backfill"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert [r["label"] for r in body["runs"]] == ["with residency", "without residency"]
    assert set(body["runs"][0]["site_load"]) == {n for n, _, _ in SITES}
    bad = CliRunner().invoke(cli, ["sim-residency", "--policy", "nope"])
    assert bad.exit_code == 1 and "unknown policy" in bad.output
    # For a terminal: the runs side by side, a row per figure, in 80 columns and with
    # no figure cut short.
    text = CliRunner().invoke(cli, ["sim-residency", "--jobs", "80", "--policy", "fifo-backfill"],
                              env={"COLUMNS": "80"})
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text.output
    header = next(line for line in lines if "with residency" in line)
    assert "without residency" in header
    cost = next(line for line in lines if line.startswith("│ cost USD"))
    cells = [c.strip() for c in cost.strip("│").split("│")][1:]
    assert cells == [f"{r['cost']:,.0f}" for r in body["runs"]]


@pytest.mark.parametrize(("option", "value"), [
    ("--load", "nan"), ("--load", "inf"), ("--load", "-inf"), ("--load", "0"),
    ("--load", "1e-320"),  # positive, yet the arrival span overflows
    ("--share", "nan"), ("--share", "inf"), ("--share", "-0.5"),
    ("--seed", "-1"),
    ("--jobs", "0"), ("--jobs", "-3"), ("--jobs", "100000000000000000000"),
])
def test_numbers_that_cannot_be_are_refused_before_the_run(option: str, value: str) -> None:
    done = CliRunner().invoke(cli, ["sim-residency", "--jobs", "20", option, value])
    assert done.exit_code == 1, done.output
    assert isinstance(done.exception, SystemExit), done.exception  # not a traceback
    assert "invalid-option" in done.output and option in done.output, done.output
    assert "load inf" not in done.output  # no report was printed
