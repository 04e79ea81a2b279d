"""What draining costs: the evacuating transaction, and the drain-aware wait reasons.

A SQLite factory of two sites (ma-1, ke-1) with ``--nodes`` 8-GPU nodes each:

- ``drain site``: ``service.evacuation.set_site_state(..., "drained")`` over a
  site whose every GPU is held by ``--running`` one-GPU runs (rows written as
  the control loop writes them; no processes): one transaction that locks the
  site and the runs and writes a preemption request and event per run;
- ``explain, first``: ``DrainWaits.explain`` over ``--waiting`` pending jobs
  reading Moroccan health data while ma-1 is drained (every job a candidate,
  the worst case: in a pass only the jobs the scheduler reaches wait on
  nodes); the rule part is computed once per data set;
- ``explain, cached``: the same call again (what each later pass costs);
- ``pass``: a control-loop pass over that queue, with and without the
  drain-aware reasons, side by side.

Run: ``.venv/bin/python benchmarks/bench_drain.py [--append]`` (``--append``
adds the numbers to docs/performance.md with machine and date).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

from masnaa.domain.reasons import Phrase
from masnaa.scheduler.decision import Wait, WaitCode
from masnaa.service import evacuation, jobs, residency
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.tenancy import Caller, bootstrap, set_quota
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory, upgrade

PERF = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def build(home: Path, nodes: int) -> tuple[str, Caller]:
    url = f"sqlite:///{home / 'bench.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as s, s.begin():
        bootstrap(s)
        op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
        caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        gpu = m.GpuType(name="h100")
        sites = [m.Site(name="ma-1", country="MA"), m.Site(name="ke-1", country="KE")]
        s.add_all([gpu, *sites])
        s.flush()
        for site in sites:
            s.add_all(m.Node(site_id=site.id, name=f"{site.name}-n{i}", gpu_type_id=gpu.id,
                             gpu_count=8, domains=[f"{site.name}-n{i}", site.name], virtual=True)
                      for i in range(nodes))
            set_quota(s, caller, tenant="local", site=site.name, gpu_type="h100",
                      nominal=10**6, borrowing_limit=None, lending_limit=None)
    engine.dispose()
    return url, caller


def submit(url: str, caller: Caller, n: int, **spec: object) -> list[str]:
    engine = make_engine(url)
    ids: list[str] = []
    for start in range(0, n, 1000):
        with session_factory(engine)() as s, s.begin():
            done = jobs.submit_batch(s, caller, [
                jobs.JobSpec(project="local/default", command=["true"], **spec)  # type: ignore[arg-type]
                for _ in range(min(1000, n - start))], now=time.time())
            ids += [r.id for r in done.jobs]
    engine.dispose()
    return ids


def drain_site(url: str, caller: Caller, running: int, nodes: int) -> tuple[float, int]:
    ids = submit(url, caller, running)
    engine = make_engine(url)
    now = time.time()
    with session_factory(engine)() as s, s.begin():
        for i, job_id in enumerate(ids):  # as the control loop writes a run
            s.execute(update(m.Job).where(m.Job.id == job_id).values(
                state="running", attempt=1, site="ma-1", gpu_type="h100", started_at=now,
                placement=[{"node": f"ma-1-n{(i // 8) % nodes}", "gpus": [i % 8]}]))
    with session_factory(engine)() as s, s.begin():
        t = time.perf_counter()
        _, change = evacuation.set_site_state(s, caller, "ma-1", "drained", "bench",
                                              evacuate_runs=True, now=time.time())
    seconds = time.perf_counter() - t
    with session_factory(engine)() as s, s.begin():  # leave an empty factory for the rest
        s.execute(update(m.Job).values(state="cancelled", preempt_deadline=None))
    engine.dispose()
    return seconds, len(change.evacuated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=64, help="8-GPU nodes per site")
    parser.add_argument("--running", type=int, default=512, help="one-GPU runs at ma-1")
    parser.add_argument("--waiting", type=int, default=2000, help="pending data jobs")
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="masnaa-bench-drain-"))
    url, caller = build(home, args.nodes)
    drain_s, moved = drain_site(url, caller, min(args.running, 8 * args.nodes), args.nodes)

    engine = make_engine(url)
    with session_factory(engine)() as s, s.begin():
        data = residency.register_dataset(s, caller, residency.DatasetIn(
            name="scans", home_site="ma-1", data_class="health", tenant="local"),
            now=time.time()).row.id
    engine.dispose()
    submit(url, caller, args.waiting, gpus_per_task=8, datasets=[data])
    loop = ControlLoop(LoopConfig(db_url=url, home=home, tick=0.05))
    loop.start()
    try:
        assert loop.live is not None
        live = loop.live
        nodes = Phrase("wait-nodes-unavailable", {"gpus": 8, "usable": 0})
        waits = {j: Wait(WaitCode.NODES_UNAVAILABLE, nodes) for j in live.pending}

        def sites_of(job_id: str) -> tuple[str, ...] | None:
            return live.queue.get(job_id).sites

        t = time.perf_counter()
        loop.drains.explain(loop.read, waits, sites_of, time.time())
        first = time.perf_counter() - t
        cached = []
        for _ in range(10):
            t = time.perf_counter()
            loop.drains.explain(loop.read, waits, sites_of, time.time())
            cached.append(time.perf_counter() - t)

        def passes(n: int = 15) -> float:
            xs = []
            for _ in range(n):
                t = time.perf_counter()
                loop.run_pass()
                xs.append(time.perf_counter() - t)
            return statistics.median(xs)

        loop.run_pass()
        with_reasons = passes()
        explain = loop.drains.explain
        loop.drains.explain = lambda *a, **k: {}  # type: ignore[method-assign]
        without = passes()
        loop.drains.explain = explain  # type: ignore[method-assign]
        with_again = passes()
    finally:
        loop.release_lease()
        loop.close()
    lines = [
        f"- drain site (evacuate {moved} runs, one transaction): {drain_s * 1000:.1f} ms",
        f"- explain, first ({len(waits)} waiting data jobs, one data set): {first * 1000:.1f} ms",
        f"- explain, cached: {statistics.median(cached) * 1000:.1f} ms",
        f"- pass, median of 15 ({len(waits)} pending): with drain-aware reasons "
        f"{with_reasons * 1000:.1f} / {with_again * 1000:.1f} ms, without {without * 1000:.1f} ms",
    ]
    print("\n".join(lines))
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with PERF.open("a") as f:
            f.write(f"\n### Draining (benchmarks/bench_drain.py), {stamp}, {platform.node()} "
                    f"({platform.machine()}, SQLite)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
