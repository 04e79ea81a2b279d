"""Twin speed: the whole Philly trace per policy, and a million synthetic jobs.

Run by hand (numbers are noisy on shared machines)::

    .venv/bin/python benchmarks/bench_twin.py philly [--policies fifo-backfill,masnaa]
    .venv/bin/python benchmarks/bench_twin.py synthetic [--jobs 1000000 --gpus 10000]
    .venv/bin/python benchmarks/bench_twin.py profile --policy masnaa [--jobs 200000]

Targets (docs/twin.md): whole Philly (82k jobs) for one policy ≤ 20 s on 2
cores; 1,000,000 synthetic jobs on 10,000 GPUs ≤ 5 min and < 2 GB RSS.
Each line printed says what was measured; ``--append`` adds them to
docs/performance.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import platform
import pstats
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from masnaa.sim.engine import Engine
from masnaa.sim.loaders import TraceSource, load_trace
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig
from masnaa.sim.shape import build_cluster, size_for, tenancy
from masnaa.sim.trace import Trace


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replay(trace: Trace, policy: str, *, load: float | None, gpus: int | None,
           cfg: EngineConfig) -> tuple[dict[str, object], float, float]:
    sizing = size_for(trace, load=load, gpus=gpus)
    cluster = build_cluster(trace, sizing.nodes)
    tenants, quotas = tenancy(trace, cluster)
    t0 = time.perf_counter()
    c0 = time.process_time()
    engine = Engine(trace, cluster, tenants, quotas, dataclasses.replace(cfg, policy=policy),
                    progress=progress)
    summary = summarize(engine.run())
    return summary, time.perf_counter() - t0, time.process_time() - c0


_last = [0.0]


def progress(done: int, total: int) -> None:
    if time.perf_counter() - _last[0] > 30:
        _last[0] = time.perf_counter()
        print(f"  ... {done:,}/{total:,} jobs done, CPU {time.process_time():.0f} s",
              file=sys.stderr, flush=True)


def line(summary: dict[str, object], wall: float, cpu: float, extra: str = "") -> str:
    eng = summary["engine"]
    assert isinstance(eng, dict)
    jobs = summary["jobs"]
    assert isinstance(jobs, dict)
    return (
        f"{summary['label']:>22}: {jobs['total']:>9,} jobs on {summary['gpus']:>6,} GPUs "
        f"in {wall:6.1f} s wall, {cpu:6.1f} s CPU (decide {eng['decide_seconds']:6.1f} s "
        f"wall, {eng['passes']:,} passes; the rest {wall - eng['decide_seconds']:5.1f} s) "
        f"finished {jobs['finished']:,}{extra}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["philly", "synthetic", "profile"])
    ap.add_argument("--policies", default="fifo-backfill,las,masnaa,srtf-oracle")
    ap.add_argument("--policy", default="masnaa")
    ap.add_argument("--load", type=float, default=0.9)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--gpus", type=int, default=10_000)
    ap.add_argument("--pass-interval", type=float, default=0.0)
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    cfg = EngineConfig(min_pass_interval=a.pass_interval)
    out: list[str] = []
    if a.what == "philly":
        trace = load_trace("philly", TraceSource())
        for policy in a.policies.split(","):
            s, wall, cpu = replay(trace, policy, load=a.load, gpus=None, cfg=cfg)
            out.append(f"philly load {a.load}: " + line(s, wall, cpu))
            print(out[-1], flush=True)
    elif a.what == "synthetic":
        t0 = time.perf_counter()
        trace = load_trace("synthetic", TraceSource(jobs=a.jobs, capacity_gpus=a.gpus,
                                                    target_load=0.9, seed=1))
        gen = time.perf_counter() - t0
        s, wall, cpu = replay(trace, a.policy, load=None, gpus=a.gpus, cfg=cfg)
        out.append(f"synthetic (generated in {gen:.1f} s): "
                   + line(s, wall, cpu, f", peak RSS {rss_mb():,.0f} MB"))
        print(out[-1], flush=True)
    else:
        trace = load_trace("synthetic", TraceSource(jobs=a.jobs, capacity_gpus=a.gpus,
                                                    target_load=0.9, seed=1))
        prof = cProfile.Profile()
        prof.enable()
        replay(trace, a.policy, load=None, gpus=a.gpus, cfg=cfg)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    if a.append and out:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        with Path("docs/performance.md").open("a", encoding="utf-8") as f:
            f.write(f"\n### bench_twin {a.what} — {stamp}, {platform.processor() or 'cpu'}, "
                    f"Python {platform.python_version()}\n\n")
            for row in out:
                f.write(f"- {row}\n")


if __name__ == "__main__":
    main()
