"""``PassMemo``: a reservation walk, or a failed preemption search, handed to the next
pass only while it still holds."""

from __future__ import annotations

from masnaa.scheduler import PassMemo, SchedulerConfig, decide
from masnaa.scheduler.decision import Preemption, Start, Wait

from .builders import Scene, job, on


def _scene() -> Scene:
    # n0000 busy until 1000; n0001 half busy until 500 (overdue from t=500 on).
    s = Scene(nodes=2)
    s.running(job("r0").gpus(8).tenant("x"), "n0000", end=1000)
    s.running(job("r1").gpus(4).tenant("x"), on("n0001", 0, 1, 2, 3), end=500)
    s.pending(job("head").gang(2, 8).tenant("a").submitted(1))
    return s


def _reserve(s: Scene, now: float, memo: PassMemo | None) -> tuple[float, tuple[str, ...]]:
    d = decide(s.snapshot(), s.queue, now, SchedulerConfig(policy="fifo-backfill"), memo)
    (res,) = d.reservations
    return res.start_time, res.nodes


def test_a_kept_walk_answers_like_a_fresh_one_while_the_state_is_unchanged() -> None:
    s = _scene()
    memo = PassMemo()
    assert _reserve(s, 10, memo) == _reserve(s, 10, None) == (1000, ("n0000", "n0001"))
    assert (memo.hits, memo.misses) == (0, 1)
    assert _reserve(s, 20, memo) == _reserve(s, 20, None)
    assert memo.hits == 1
    # Past every expected end, both running jobs count as ending now: the kept answer
    # moves to now, as a fresh walk does.
    assert _reserve(s, 1500, memo) == _reserve(s, 1500, None) == (1500, ("n0000", "n0001"))
    assert memo.hits == 2


def test_any_write_to_the_state_drops_the_kept_walk() -> None:
    s = _scene()
    memo = PassMemo()
    _reserve(s, 10, memo)
    s.state.update_expected_end("r0", 700)
    assert _reserve(s, 10, memo) == _reserve(s, 10, None) == (700, ("n0000", "n0001"))
    s.state.release("r1")
    assert _reserve(s, 10, memo) == _reserve(s, 10, None)
    assert memo.hits == 0 and memo.misses == 3


def test_a_pass_that_started_something_walks_afresh() -> None:
    s = _scene()
    s.pending(job("small").gpus(2).tenant("b").limit(100).submitted(0))  # starts first
    memo = PassMemo()
    d = decide(s.snapshot(), s.queue, 10, SchedulerConfig(policy="fifo-backfill"), memo)
    assert [st.job_id for st in d.starts] == ["small"]
    assert (memo.hits, memo.misses) == (0, 0)


def _futile_reclaim() -> Scene:
    # b may reclaim c's two borrowed GPUs, but x (within its nominal) keeps seven GPUs
    # of each node: giving c's back frees no whole node for b's 8-GPU job.
    s = Scene(nodes=2).quota("b", 8).quota("c", 0).quota("x", 14)
    s.tenant("b").tenant("c").tenant("x")
    for n in (0, 1):
        node = f"n000{n}"
        s.running(job(f"x{n}").gpus(7).tenant("x"), on(node, *range(1, 8)), start=0)
        s.running(job(f"c{n}").gpus(1).tenant("c"), on(node, 0), start=5)
    s.pending(job("b1").gpus(8).tenant("b").submitted(1))
    return s


Outcome = tuple[tuple[Preemption, ...], tuple[Start, ...], tuple[tuple[str, Wait], ...]]


def _masnaa(s: Scene, now: float, memo: PassMemo | None) -> Outcome:
    d = decide(s.snapshot(), s.queue, now, SchedulerConfig(reclaim_after=0.0), memo)
    return tuple(d.preemptions), tuple(d.starts), tuple(sorted(d.waiting.items()))


def test_a_failed_preemption_search_is_not_redone_while_the_state_is_unchanged() -> None:
    s = _futile_reclaim()
    memo = PassMemo()
    first = _masnaa(s, 100, memo)
    assert first == _masnaa(s, 100, None)
    assert first[0] == () and memo.searches_skipped == 0
    assert _masnaa(s, 200, memo) == _masnaa(s, 200, None)
    assert memo.searches_skipped == 1
    # One of x's jobs ends: stopping c0 now frees n0000, and the search is redone.
    s.state.release("x0")
    again = _masnaa(s, 300, memo)
    assert again == _masnaa(s, 300, None)
    assert memo.searches_skipped == 1
    assert [p.job_id for p in again[0]] == ["c0"]
