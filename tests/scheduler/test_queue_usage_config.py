"""PendingQueue ordering, UsageLedger arithmetic, SchedulerConfig validation."""

from __future__ import annotations

import math

import pytest

from masnaa.scheduler import POLICIES, PendingQueue, SchedulerConfig, UsageLedger

from .builders import job


def test_queue_iterates_in_submit_order_across_sub_queues() -> None:
    q = PendingQueue()
    q.add(job("c").tenant("t2").submitted(3).build())
    q.add(job("a").tenant("t1").submitted(1).build())
    q.add(job("b").tenant("t1").priority("high").submitted(2).build(), attained_service=5e4)
    assert [j.id for j in q] == ["a", "b", "c"]
    assert len(q) == 3 and "b" in q and "zz" not in q
    assert q.attained("b") == 5e4
    assert q.get("c").tenant == "t2"
    assert q.remove("a").id == "a"
    assert [j.id for j in q] == ["b", "c"]


def test_requeued_job_goes_behind_by_its_since_time() -> None:
    q = PendingQueue()
    q.add(job("old").submitted(0).build(), 100.0, since=50.0)
    q.add(job("new").submitted(10).build())
    assert [j.id for j in q] == ["new", "old"]
    assert q.since("old") == 50.0


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda q: q.add(job("a").build()), ValueError),
        (lambda q: q.add(job("b").build(), -1.0), ValueError),
        (lambda q: q.remove("nope"), KeyError),
        (lambda q: q.get("nope"), KeyError),
        (lambda q: q.attained("nope"), KeyError),
    ],
)
def test_queue_rejects_bad_calls(call, error) -> None:  # type: ignore[no-untyped-def]
    q = PendingQueue()
    q.add(job("a").build())
    with pytest.raises(error):
        call(q)


def test_queue_thresholds_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        PendingQueue(level_thresholds=(10.0, 5.0))


def test_usage_decays_by_half_each_half_life() -> None:
    u = UsageLedger(half_life=100.0)
    u.charge("t", 1000.0, now=0.0)
    assert u.usage("t", 0.0) == pytest.approx(1000.0)
    assert u.usage("t", 100.0) == pytest.approx(500.0)
    assert u.usage("t", 300.0) == pytest.approx(125.0)
    assert u.usage("other", 300.0) == 0.0
    assert u.tenants() == ("t",)


def test_running_jobs_accrue_the_decayed_integral() -> None:
    h = 1000.0
    u = UsageLedger(half_life=h)
    u.start("j", "t", 4, now=0.0)
    rate = math.log(2) / h
    expect = 4 * (1 - math.exp(-rate * 500)) / rate
    assert u.usage("t", 500.0) == pytest.approx(expect)
    u.stop("j", now=500.0)
    assert u.usage("t", 1500.0) == pytest.approx(expect / 2)
    assert u.running_gpus("t") == 0


def test_no_decay_counts_plain_gpu_seconds() -> None:
    u = UsageLedger(half_life=math.inf)
    u.start("j", "t", 2, now=10.0)
    assert u.usage("t", 20.0) == pytest.approx(20.0)
    u.stop("j", 30.0)
    u.charge("t", 5.0, 40.0)
    assert u.usage("t", 1e6) == pytest.approx(45.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda u: u.start("a", "t", 1, 0.0),  # twice
        lambda u: u.start("z", "t", 0, 0.0),
        lambda u: u.charge("t", -1.0, 0.0),
    ],
)
def test_usage_rejects_bad_calls(call) -> None:  # type: ignore[no-untyped-def]
    u = UsageLedger(half_life=10.0)
    u.start("a", "t", 1, 0.0)
    with pytest.raises(ValueError):
        call(u)
    with pytest.raises(KeyError):
        u.stop("never", 1.0)
    with pytest.raises(ValueError):
        UsageLedger(half_life=0)


def test_unknown_policy_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        SchedulerConfig(policy="round-robin")
    for name in POLICIES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "knobs",
    [
        {"backfill_depth": -1},
        {"starvation_limit": -5.0},
        {"tenant_starvation_limit": -1.0},
        {"las_thresholds": (5.0, 1.0)},
        {"fair_share_horizon": -1.0},
    ],
)
def test_bad_knobs_are_value_errors(knobs: dict) -> None:
    with pytest.raises(ValueError):
        SchedulerConfig(**knobs)


def test_every_policy_is_described_and_oracles_say_so() -> None:
    assert set(POLICIES) == {"fifo", "fifo-backfill", "las", "srtf-oracle", "masnaa"}
    for name, p in POLICIES.items():
        assert p.name == name and p.description
        if p.oracle:
            assert "oracle" in name and "ORACLE" in p.description
