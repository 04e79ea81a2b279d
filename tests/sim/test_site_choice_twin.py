"""Site choice in the twin: the five-site scenario replayed with the sites' prices."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from masnaa.cli.main import app as cli
from masnaa.sim.residency_scenario import SITE_PRICES, ScenarioConfig, run_scenario


def test_with_prices_the_same_work_costs_less_and_goes_to_the_cheapest_site() -> None:
    # Low load, no bound data: every site could start almost every job, so price decides.
    r = run_scenario(ScenarioConfig(jobs=150, load=0.05, bound_share=0.0, seed=5,
                                    policy="fifo-backfill", price_aware=True))
    fit_only, _, by_price = r.runs
    assert by_price.label == "residency, by price"
    assert fit_only.finished == by_price.finished == 150
    assert by_price.cost < fit_only.cost
    cheapest = min(SITE_PRICES, key=lambda s: SITE_PRICES[s])
    assert max(by_price.site_load, key=lambda s: by_price.site_load[s]) == cheapest


def test_without_the_option_the_report_keeps_its_two_runs() -> None:
    r = run_scenario(ScenarioConfig(jobs=60, seed=3, policy="fifo-backfill"))
    assert [x.label for x in r.runs] == ["with residency", "without residency"]
    assert all(x.cost > 0 for x in r.runs)


def test_the_cli_adds_the_price_aware_run() -> None:
    done = CliRunner().invoke(cli, ["sim-residency", "--jobs", "80", "--json", "--prices",
                                    "--policy", "fifo-backfill"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.output)
    assert [x["label"] for x in body["runs"]] == [
        "with residency", "without residency", "residency, by price"]
    assert body["config"]["price_aware"] is True
