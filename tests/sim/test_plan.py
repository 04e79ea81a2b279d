"""Capacity planning (``sim.plan``, ``masnaa plan``): the search, the targets, the verb."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.cli.main import app
from masnaa.sim.errors import SimError
from masnaa.sim.plan import parse_target, smallest

runner = CliRunner()


class Threshold:
    """A monotone ``meets``: sizes from ``at`` up meet; it counts the rounds asked."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.rounds: list[list[int]] = []

    def __call__(self, sizes: Sequence[int]) -> list[bool]:
        self.rounds.append(list(sizes))
        return [n >= self.at for n in sizes]


@pytest.mark.parametrize("width", [1, 2, 3, 5])
@pytest.mark.parametrize("at", [3, 4, 5, 17, 40, 99, 100])
def test_the_search_finds_the_threshold_and_proves_it_with_the_size_below(
    width: int, at: int
) -> None:
    meets = Threshold(at)
    found = smallest(3, 100, meets, width=width)
    assert found.nodes == at
    assert found.tried[at] is True
    assert found.at_lower_bound == (at == 3)
    if at > 3:
        assert found.tried[at - 1] is False  # the answer's neighbour was replayed
    assert all(len(r) <= width for r in meets.rounds)
    assert sum(len(r) for r in meets.rounds) == len(found.tried)  # no size replayed twice
    # Bisection (width 1) takes about log2(98) + 1 rounds; wider rounds take fewer.
    assert len(meets.rounds) <= {1: 9, 2: 7, 3: 6, 5: 5}[width]


def test_when_the_largest_size_misses_nothing_smaller_is_replayed() -> None:
    meets = Threshold(101)
    found = smallest(3, 100, meets, width=3)
    assert found.nodes is None and found.tried[100] is False
    assert len(meets.rounds) == 1


def test_a_size_that_misses_above_one_that_meets_does_not_hide_the_smaller() -> None:
    # Not monotone: 10 meets, 11 to 14 miss, 15 and up meet. The answer is a size that
    # met, with its next smaller size replayed and missing.
    good = {10} | set(range(15, 101))

    def meets(sizes: Sequence[int]) -> list[bool]:
        return [n in good for n in sizes]

    for width in (1, 2, 4):
        found = smallest(1, 100, meets, width=width)
        assert found.nodes in good
        assert found.nodes is not None and found.tried[found.nodes - 1] is False


def test_bounds_in_the_wrong_order_are_refused() -> None:
    with pytest.raises(SimError) as e:
        smallest(10, 9, Threshold(5))
    assert e.value.code == "bad-option"


@pytest.mark.parametrize(("text", "metric", "seconds"), [
    ("queueing-p99<=24h", "queueing-p99", 86_400.0),
    (" jct-mean <= 90min ", "jct-mean", 5_400.0),
    ("queueing-max<=3600", "queueing-max", 3_600.0),
    ("JCT-P99<=1.5d", "jct-p99", 129_600.0),
    ("queueing-mean<=45s", "queueing-mean", 45.0),
])
def test_targets_are_read_with_their_units(text: str, metric: str, seconds: float) -> None:
    t = parse_target(text)
    assert (t.metric, t.seconds) == (metric, seconds)


@pytest.mark.parametrize(("text", "says"), [
    ("utilisation>=0.8", "METRIC<=DURATION"),
    ("queueing-p99<=2 weeks", "unknown unit 'weeks'"),
    ("queueing-p99<=h", "METRIC<=DURATION"),
    ("queueing-p99<=2w", "unknown unit 'w'"),
    ("wait-p99<=2h", "valid metrics: jct-mean"),
    ("queueing-p99<=0h", "positive"),
])
def test_a_bad_target_is_refused_with_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(SimError) as e:
        parse_target(text)
    assert e.value.code == "bad-target" and says in e.value.message


SLICE = ["--trace", "philly", "--start", "28", "--days", "0.5", "--quiet"]


def test_plan_finds_the_smallest_cluster_and_sim_agrees_on_it(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    res = runner.invoke(app, [
        "plan", *SLICE, "--target", "queueing-p99<=30min", "--min-gpus", "64",
        "--max-gpus", "512", "--workers", "1", "--json", str(out),
    ], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (doc,) = json.loads(out.read_text())["policies"]
    answer = doc["answer"]
    assert doc["policy"] == "masnaa" and answer is not None and not answer["at_lower_bound"]
    n = answer["nodes"]
    probes = {p["nodes"]: p for p in doc["probes"]}
    assert probes[n]["meets"] and probes[n]["targets"]["queueing-p99<=30min"] <= 1800
    assert not probes[n - 1]["meets"]
    assert probes[n - 1]["targets"]["queueing-p99<=30min"] > 1800
    assert probes[64]["meets"] and probes[64]["gpus"] == 512  # the top is replayed first
    assert f"{answer['gpus']} GPUs" in res.output and "smallest cluster" in res.output
    # Each size is the very replay ``masnaa sim`` makes of that cluster.
    for size in (n - 1, n):
        sim_out = tmp_path / f"sim-{size}.json"
        r = runner.invoke(app, ["sim", *SLICE, "-p", "masnaa", "--gpus", str(size * 8),
                                "--workers", "1", "--json", str(sim_out)])
        assert r.exit_code == 0, r.output
        summary = json.loads(sim_out.read_text())["policies"][0]
        assert summary["queueing_delay"]["p99"] == probes[size]["queueing_p99"]
        assert summary["jct"]["mean"] == probes[size]["jct_mean"]


def test_plan_replays_sizes_side_by_side_with_the_same_figures(tmp_path: Path) -> None:
    docs = []
    for workers in ("1", "2"):
        out = tmp_path / f"plan-{workers}.json"
        res = runner.invoke(app, [
            "plan", *SLICE, "-t", "queueing-p99<=30min", "--min-gpus", "160",
            "--max-gpus", "256", "--workers", workers, "--json", str(out),
        ])
        assert res.exit_code == 0, res.output
        docs.append(json.loads(out.read_text())["policies"][0])
    one, two = ({p["nodes"]: p for p in d["probes"]} for d in docs)
    common = set(one) & set(two)
    assert len(common) >= 2
    for n in common:
        for key in ("meets", "targets", "utilisation", "jct_mean", "preemptions"):
            assert one[n][key] == two[n][key]
    assert docs[0]["answer"] == docs[1]["answer"]


def test_two_policies_are_planned_side_by_side_each_as_if_alone(tmp_path: Path) -> None:
    both, alone = tmp_path / "both.json", tmp_path / "alone.json"
    common = [*SLICE, "-t", "queueing-p99<=30min", "--min-gpus", "160", "--max-gpus", "256"]
    res = runner.invoke(app, ["plan", *common, "-p", "masnaa,fifo-backfill", "--workers", "2",
                              "--json", str(both)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "on which masnaa meets" in res.output and "on which fifo-backfill meets" in res.output
    docs = {d["policy"]: d for d in json.loads(both.read_text())["policies"]}
    assert list(docs) == ["masnaa", "fifo-backfill"]
    res = runner.invoke(app, ["plan", *common, "-p", "fifo-backfill", "--workers", "1",
                              "--json", str(alone)])
    assert res.exit_code == 0, res.output
    (single,) = json.loads(alone.read_text())["policies"]
    # One worker each when two share two: the same bisection as fifo-backfill alone.
    for d in (docs["fifo-backfill"], single):
        for p in d["probes"]:
            del p["wall_seconds"]
    assert docs["fifo-backfill"] == single
    for d in docs.values():
        n = d["answer"]["nodes"]
        assert {p["nodes"]: p["meets"] for p in d["probes"]}[n - 1] is False


def test_a_target_missed_even_on_the_largest_size_exits_4(tmp_path: Path) -> None:
    res = runner.invoke(app, [
        "plan", *SLICE, "-t", "jct-mean<=1min", "--min-gpus", "64", "--max-gpus", "128",
        "--workers", "1",
    ])
    assert res.exit_code == 4, res.output
    assert "not met" in res.output and "--max-gpus" in res.output


def test_a_cluster_too_small_for_a_job_never_meets_a_target(tmp_path: Path) -> None:
    # The slice's largest job needs more than 8 GPUs: one node rejects it.
    out = tmp_path / "plan.json"
    res = runner.invoke(app, [
        "plan", *SLICE, "-t", "queueing-max<=100d", "--min-gpus", "8", "--max-gpus", "8",
        "--workers", "1", "--json", str(out),
    ])
    assert res.exit_code == 4, res.output
    probe = json.loads(out.read_text())["policies"][0]["probes"][0]
    assert probe["rejected"] > 0 and not probe["meets"]


def test_bad_plan_input_is_refused_before_any_replay() -> None:
    res = runner.invoke(app, ["plan", *SLICE, "-t", "wait<=1h"])
    assert res.exit_code == 2 and "bad-target" in res.output and "queueing-p99" in res.output
    res = runner.invoke(app, ["plan", *SLICE, "-t", "jct-mean<=1h", "--min-gpus", "512",
                              "--max-gpus", "64"])
    assert res.exit_code == 2 and "--min-gpus below --max-gpus" in res.output
    res = runner.invoke(app, ["plan", *SLICE, "-t", "jct-mean<=1h", "-p", "sjf"])
    assert res.exit_code == 2 and "fifo-backfill" in res.output
    res = runner.invoke(app, ["plan", *SLICE])
    assert res.exit_code == 2 and "--target" in res.output


def test_the_plan_table_fits_80_columns_with_two_targets(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    res = runner.invoke(app, [
        "plan", *SLICE, "-t", "queueing-p99<=30min", "-t", "jct-mean<=1d", "--min-gpus", "64",
        "--max-gpus", "512", "--workers", "1", "--json", str(out),
    ], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    table = res.output[: res.output.index("load: the load factor")]
    assert "…" not in table  # no header or figure cut short
    assert max(len(line) for line in table.splitlines()) <= 80
    (doc,) = json.loads(out.read_text())["policies"]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert len(rows) == len(doc["probes"])  # one line per size: no figure wrapped
    for p, row in zip(doc["probes"], rows, strict=True):
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[0] == f"{p['gpus']:,}" and cells[1] == f"{p['load_factor']:.2f}"
