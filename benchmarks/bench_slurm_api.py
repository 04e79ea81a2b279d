"""Jobs for a Slurm site: Masnaa's API and dispatch side by side with ``sbatch`` itself.

Targets (issue 6): the API accepts jobs for a Slurm site at ≥ 5× the local
``sbatch`` rate, and the control loop dispatches admitted jobs to Slurm at
least as fast as ``sbatch`` does, measured in one run on one machine.

What runs, in order, against the local Slurm of ``scripts/slurm-up.sh``:

1. ``sbatch`` serial: a loop of ``sbatch --parsable --hold`` (the baseline);
2. ``sbatch`` with 4 submitters in parallel;
3. the API: a fresh SQLite factory whose one site is ``executor = "slurm"``
   (its node is the Slurm node), ``uvicorn`` serving ``create_app`` as
   ``masnaa up`` does, and ``--clients`` keep-alive clients each posting one
   job after another (the load generator of ``bench_submit.py``);
4. dispatch: ``--dispatch`` pending jobs, then the control loop (in this
   process) passes until every one is submitted to Slurm (``running`` in the
   store); jobs/s from the first pass to the last submission. Masnaa is told
   the node has as many GPUs as jobs and every submission carries ``--hold``,
   so Slurm accepts them all and runs none: this measures dispatch, not GPUs.

Every Slurm job it made is cancelled at the end.

Usage:
  .venv/bin/python benchmarks/bench_slurm_api.py [--sbatch 200] [--clients 64]
      [--duration 10] [--dispatch 400] [--append]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_submit import _load, pct, seed, serve
from masnaa.factory.apply import SITE_OPTIONS
from masnaa.service import jobs
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.tenancy import Caller
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory
from masnaa.store.testing import scratch_database

MADE: list[str] = []
"""Slurm job-name prefixes of the jobs this run dispatched (cancelled at the end)."""


def sbatch_once(tag: str, i: int) -> None:
    subprocess.run(
        ["sbatch", "--parsable", "--hold", f"--job-name=benchapi-{tag}-{i}", "-o", "/dev/null",
         "--wrap", "true"],
        check=True, capture_output=True,
    )  # fmt: skip


def sbatch_rates(n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for i in range(n):
        sbatch_once("serial", i)
    serial = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: sbatch_once("par", i), range(n)))
    parallel = n / (time.perf_counter() - t0)
    return serial, parallel


def cancel_named(prefixes: tuple[str, ...]) -> None:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    ids = [f[0] for f in (ln.split() for ln in out.splitlines())
           if len(f) == 2 and f[1].startswith(prefixes)]  # fmt: skip
    for at in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[at : at + 500]], capture_output=True)


def as_slurm_site(url: str, node: str, gpus: int, state_dir: Path, threads: int) -> None:
    """Turn the seeded site into a Slurm site whose node is Slurm's node."""
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        site = s.scalars(select(m.Site)).one()
        site.executor = "slurm"
        s.execute(update(m.Node).values(name=node, gpu_count=gpus))
        options = {"state_dir": str(state_dir), "sbatch_args": ["--hold"], "command_timeout": 30,
                   "dispatch_threads": threads}  # fmt: skip
        s.merge(m.ServiceState(key=f"{SITE_OPTIONS}{site.name}", value={"slurm": options},
                               updated_at=time.time()))  # fmt: skip
    engine.dispose()


def api_rate(url: str, home: Path, token: str, args: argparse.Namespace) -> dict[str, float]:
    with serve(url, home, 1) as (base, _pid):
        port = int(base.rsplit(":", 1)[1])
        latencies, statuses, duration = asyncio.run(
            _load(port, token, args.clients, 2.0, args.duration)
        )
    return {
        "rate": statuses.get(201, 0) / duration,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "errors": sum(v for k, v in statuses.items() if k != 201),
    }


def dispatch_rate(url: str, home: Path, n: int) -> tuple[float, int]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        s.execute(update(m.Job).values(state="cancelled"))  # the API phase's jobs stay out
        user = s.scalars(select(m.User).where(m.User.role == "member")).one()
        caller = Caller(user.id, user.name, m.Role.MEMBER, user.tenant_id, "bench", 0)
        spec = jobs.JobSpec(project="bench", command=["true"], gpus_per_task=1, time_limit=600)
        done = jobs.submit_batch(s, caller, [spec] * n, now=time.time())
        MADE.extend(f"masnaa-{r.id}-" for r in done.jobs)
    loop = ControlLoop(LoopConfig(db_url=url, home=home, tick=0.05), engine=engine)
    t0 = time.perf_counter()
    loop.start()
    passes = 0
    try:
        while True:
            loop.run_pass()
            passes += 1
            with sessions() as s:
                running = len(s.scalars(select(m.Job.id).where(m.Job.state == "running")).all())
            if running >= n:
                break
            if time.perf_counter() - t0 > 300:
                raise SystemExit(f"dispatch stalled at {running}/{n}")
        seconds = time.perf_counter() - t0
    finally:
        loop.release_lease()
        loop.close()
        engine.dispose()
    return n / seconds, passes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sbatch", type=int, default=200, help="submissions per sbatch method")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--dispatch", type=int, default=400, help="jobs for the dispatch phase")
    ap.add_argument("--threads", type=int, default=4, help="the site's dispatch_threads")
    ap.add_argument("--append", action="store_true", help="append to docs/performance.md")
    args = ap.parse_args()
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                          check=True).stdout.split()[0]  # fmt: skip
    try:
        serial, parallel = sbatch_rates(args.sbatch)
        cancel_named(("benchapi-",))
        with tempfile.TemporaryDirectory(prefix="masnaa-bench-slurm-api-") as tmp:
            home = Path(tmp)
            with scratch_database("sqlite", home) as url:
                token = seed(url, 0)
                as_slurm_site(url, node, args.dispatch, home / "slurm-state", args.threads)
                api = api_rate(url, home, token, args)
                dispatch, passes = dispatch_rate(url, home, args.dispatch)
    finally:
        cancel_named(("benchapi-", *MADE))
    load = os.getloadavg()[0]
    rows = [
        ("sbatch --hold, serial loop (jobs/s)", f"{serial:,.0f}"),
        ("sbatch --hold, 4 in parallel (jobs/s)", f"{parallel:,.0f}"),
        (f"API, Slurm site, {args.clients} clients (jobs accepted/s)", f"{api['rate']:,.0f}"),
        ("API p99 latency (ms)", f"{api['p99_ms']:.1f}"),
        ("API errors", f"{api['errors']}"),
        ("API / sbatch serial (x)", f"{api['rate'] / serial:.1f}"),
        ("API / sbatch 4 parallel (x)", f"{api['rate'] / parallel:.1f}"),
        (
            f"loop dispatch to Slurm, {args.dispatch} jobs, {args.threads} threads (jobs/s)",
            f"{dispatch:,.0f}",
        ),
        ("loop dispatch / sbatch serial (x)", f"{dispatch / serial:.2f}"),
        ("loop dispatch / sbatch 4 parallel (x)", f"{dispatch / parallel:.2f}"),
        ("loop passes for the dispatch", f"{passes}"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    print(f"load average {load:.1f}")
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = (
            "\n## API and dispatch for a Slurm site (`benchmarks/bench_slurm_api.py`)\n\n"
            f"{stamp}, {platform.machine()}, {os.cpu_count()} CPUs, CPython "
            f"{platform.python_version()}, Slurm 22.05 one-node (scripts/slurm-up.sh), SQLite, "
            f"one API worker; {args.sbatch} submissions per sbatch method, {args.duration:.0f} s "
            f"of API load after 2 s warm-up (load generator on the same cores), "
            f"{args.dispatch} jobs dispatched on {args.threads} sbatch threads (the time includes "
            "the loop's start, decide and admit); load average "
            f"{load:.1f} at the end.\n\n" + table + "\n"
        )
        perf = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
        with perf.open("a") as fh:
            fh.write(text)
        print(f"appended to {perf}")


if __name__ == "__main__":
    main()
