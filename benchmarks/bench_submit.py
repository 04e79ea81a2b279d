"""Job submissions per second through the real API, and their latency.

Target (issue 3): ≥ 1,000 submissions/s sustained with p99 ≤ 50 ms at 64
concurrent clients on a 2-core machine, on SQLite and on PostgreSQL; a queue
of 50,000 pending jobs must not slow submissions by more than 2×.

What runs: a fresh database (SQLite file, or a scratch database on the
PostgreSQL server of ``--pg-url``/``MASNAA_TEST_POSTGRES_URL``), migrated and
seeded with one site of 8 GPUs, a tenant, a project and a member's token;
optionally ``--prefill`` pending jobs; then ``uvicorn`` in its own process(es)
serving ``create_app`` exactly as ``masnaa up`` would, and in this process an
asyncio load generator with ``--clients`` keep-alive connections, each
submitting (``POST /api/v1/jobs``). The load generator shares the machine's
cores with the server: on 2 cores it takes a real share.

Two ways to load it:

- closed loop (the default): each client sends its next job as soon as the
  previous answer arrives. This finds the saturation throughput; its latency
  is ``clients / throughput`` by construction, so it says little about p99.
- paced (``--rate R``): R submissions per second offered in all, spread over
  the clients, each client on a fixed schedule (client i sends at
  ``i/R + k·clients/R``). A client whose previous answer is late sends at once
  when it arrives, and its latency is counted from the *scheduled* send time,
  so a stall of the server shows up as the queueing it causes (no coordinated
  omission). Reported: the achieved rate (answers to the sends scheduled in the
  measured window, over the time until the last of them arrived), p50/p99/max,
  and how many sends left more than ``BEHIND`` after their time. Sends still
  unsent ``duration`` seconds after the window (5 s at least) are given up,
  counted as errors, and their waits so far enter the latencies. The issue's
  target (≥ 1,000/s with p99 ≤ 50 ms at 64 clients) is measured faithfully by
  ``--rate 1000 --clients 64``.

The run fails (exit 1) on any answer other than 201, on a send given up, or if
the database does not hold exactly the jobs the server accepted.

Usage:
  .venv/bin/python benchmarks/bench_submit.py [--db sqlite|postgres] [--clients 64]
      [--rate 1000] [--duration 10] [--workers 1] [--prefill 0] [--sbatch 200]
      [--append docs/performance.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from masnaa.service import tenancy, tokens
from masnaa.service.jobs import new_job_id
from masnaa.store import models as m
from masnaa.store.db import make_engine, session_factory, upgrade
from masnaa.store.testing import postgres_url, scratch_database

JOB = {"command": ["python", "train.py"], "project": "bench", "gpus_per_task": 1,
       "time_limit": 3600, "env": {"SEED": "1"}}

BEHIND = 0.005
"""A paced send leaving later than this after its scheduled time is counted as behind
(the event loop's own timer jitter on a busy machine is a millisecond or two)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(url: str, prefill: int) -> str:
    """Migrate and declare a small factory; return a member's token."""
    upgrade(url)
    engine = make_engine(url)
    now = time.time()
    with session_factory(engine).begin() as s:
        tenancy.bootstrap(s, now=now)
        site = m.Site(name="site-1")
        gpu = m.GpuType(name="h100-sxm-80gb")
        s.add_all([site, gpu])
        s.flush()
        s.add(m.Node(site_id=site.id, name="n0", gpu_type_id=gpu.id, gpu_count=8,
                     domains=["nvl0", "leaf0"]))
        tenant = m.Tenant(name="bench", kind="university", created_at=now)
        s.add(tenant)
        s.flush()
        project = m.Project(tenant_id=tenant.id, name="bench", created_at=now)
        user = m.User(name="researcher", role="member", tenant_id=tenant.id, created_at=now)
        s.add_all([project, user])
        s.flush()
        op = tenancy.Caller(0, "bench", m.Role.OPERATOR, None, None, 0)
        token = tokens.issue_token(s, op, "researcher", now=now).secret
        project_id, tenant_id, user_id = project.id, tenant.id, user.id
    done = 0
    while done < prefill:
        n = min(5000, prefill - done)
        rows = [
            {"id": new_job_id(), "tenant_id": tenant_id, "project_id": project_id,
             "user_id": user_id, "name": "", "command": ["true"], "script": None, "env": {},
             "workdir": None, "tasks": 1, "gpus_per_task": 1, "gpu_types": ["h100-sxm-80gb"],
             "time_limit": 3600.0, "priority_class": "normal", "sites": None,
             "submitted_at": now + i * 1e-3, "state": "pending", "state_reason": "submitted",
             "attempt": 0, "cancel_requested": False, "attained_service": 0.0, "version": 1}
            for i in range(n)
        ]
        with session_factory(engine).begin() as s:
            s.execute(insert(m.Job), rows)
            s.execute(insert(m.JobEvent), [
                {"job_id": r["id"], "at": now, "from_state": None, "to_state": "pending",
                 "code": "submitted", "reason": "prefill", "attempt": 0} for r in rows
            ])
        done += n
    engine.dispose()
    return token


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


@contextlib.contextmanager
def serve(url: str, home: Path, workers: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "MASNAA_DB_URL": url, "MASNAA_HOME": str(home), "MASNAA_MIGRATE": "0"}
    cmd = [sys.executable, "-m", "uvicorn", "masnaa.api.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning", "--no-access-log"]
    for option, module in (("--loop", "uvloop"), ("--http", "httptools")):
        with contextlib.suppress(ImportError):
            __import__(module)
            cmd += [option, module]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Tally:
    """What the clients saw (one event loop: no locks needed)."""

    latencies: list[float] = field(default_factory=list)
    """Seconds, of the sends in the measured window (paced: from the scheduled time)."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers to the sends in the measured window."""
    accepted: int = 0
    """201 answers over the whole run, warm-up included (what the database must hold)."""
    behind: int = 0
    unsent: int = 0
    last_answer: float = 0.0


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.index(b"content-length:") + len(b"content-length:")
    await reader.readexactly(int(lower[at:lower.index(b"\r\n", at)]))
    return int(head[9:12])


async def _client(port: int, request: bytes, warm_until: float, stop_at: float,
                  tally: Tally) -> None:
    """Closed loop: the next send as soon as the answer arrives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            status = await _roundtrip(reader, writer, request)
            tally.accepted += status == 201
            if t0 >= warm_until:
                tally.latencies.append(time.perf_counter() - t0)
                tally.statuses[status] += 1
    finally:
        writer.close()


async def _paced_client(port: int, request: bytes, first: float, interval: float,
                        warm_until: float, stop_at: float, give_up: float,
                        tally: Tally) -> None:
    """Open loop: send k at ``first + k·interval``; latency counts from that time."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        k = 0
        while True:
            due = first + k * interval
            if due >= stop_at:
                break
            now = time.perf_counter()
            if now >= give_up:  # the rest of this client's window is never sent
                while due < stop_at:
                    if due >= warm_until:
                        tally.unsent += 1
                        tally.latencies.append(now - due)  # a lower bound of its wait
                    k += 1
                    due = first + k * interval
                break
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > BEHIND and due >= warm_until:
                tally.behind += 1
            status = await _roundtrip(reader, writer, request)
            answered = time.perf_counter()
            tally.accepted += status == 201
            if due >= warm_until:
                tally.latencies.append(answered - due)
                tally.statuses[status] += 1
                tally.last_answer = max(tally.last_answer, answered)
            k += 1
    finally:
        writer.close()


async def _load(port: int, token: str, clients: int, warmup: float, duration: float,
                rate: float | None) -> tuple[Tally, float]:
    """Run the clients; return what they saw and the seconds the measured window took."""
    body = json.dumps(JOB).encode()
    request = (
        f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    tally = Tally()
    start = time.perf_counter()
    warm_until, stop_at = start + warmup, start + warmup + duration
    if rate is None:
        await asyncio.gather(*(
            _client(port, request, warm_until, stop_at, tally) for _ in range(clients)
        ))
        return tally, duration
    give_up = stop_at + max(5.0, duration)
    await asyncio.gather(*(
        _paced_client(port, request, start + i / rate, clients / rate, warm_until, stop_at,
                      give_up, tally)
        for i in range(clients)
    ))
    # Answers to the window's sends, over the time until the last of them arrived: a
    # server that cannot keep up stretches the window and its achieved rate falls.
    return tally, max(duration, tally.last_answer - warm_until)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def sbatch_rate(n: int) -> float | None:
    """Submissions/s of a plain ``sbatch`` loop, when Slurm is installed here."""
    if n <= 0 or shutil.which("sbatch") is None:
        return None
    start = time.perf_counter()
    for _ in range(n):
        done = subprocess.run(["sbatch", "--wrap", "true", "-o", "/dev/null", "--hold"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"sbatch failed: {done.stderr.strip()}", file=sys.stderr)
            return None
    rate = n / (time.perf_counter() - start)
    subprocess.run(["scancel", "--user", os.environ.get("USER", "root"), "--state", "PENDING"],
                   capture_output=True, check=False)
    return rate


def run_one(backend: str, args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, scratch_database(backend, Path(tmp)) as url:
        token = seed(url, args.prefill)
        with serve(url, Path(tmp), args.workers) as (base, pid):
            port = int(base.rsplit(":", 1)[1])
            server_cpu, client_cpu = cpu_seconds(pid), time.process_time()
            tally, window = asyncio.run(
                _load(port, token, args.clients, args.warmup, args.duration, args.rate)
            )
            server_cpu = cpu_seconds(pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
        engine = make_engine(url)
        with session_factory(engine)() as s:
            stored = s.scalar(select(func.count()).select_from(m.Job))
        engine.dispose()
    statuses, latencies = tally.statuses, tally.latencies
    accepted = statuses.get(201, 0)
    errors = sum(v for k, v in statuses.items() if k != 201) + tally.unsent
    total = accepted + errors or 1
    # CPU per submission over warm-up and measurement alike (both count requests).
    served = total * (args.duration + args.warmup) / args.duration
    return {
        "server_cpu_ms": server_cpu / served * 1e3,
        "client_cpu_ms": client_cpu / served * 1e3,
        "backend": backend, "workers": args.workers, "clients": args.clients,
        "prefill": args.prefill, "offered": args.rate, "rate": accepted / window,
        "p50_ms": pct(latencies, 0.50) * 1e3, "p99_ms": pct(latencies, 0.99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "errors": errors, "statuses": dict(statuses), "unsent": tally.unsent,
        "behind": tally.behind, "sends": accepted + errors,
        "stored": stored, "expected": args.prefill + tally.accepted,
        "load": os.getloadavg()[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--pg-url", default=None, help="PostgreSQL server (default: "
                    "MASNAA_TEST_POSTGRES_URL); a scratch database is created on it")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--rate", type=float, default=None, help="paced: offer this many "
                    "submissions/s in all, on a fixed schedule (default: closed loop)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--prefill", type=int, default=0, help="pending jobs already queued")
    ap.add_argument("--sbatch", type=int, default=0, help="also time N sbatch submissions")
    ap.add_argument("--append", type=Path, default=None, help="append the results to this file")
    args = ap.parse_args()
    if args.rate is not None and args.rate <= 0:
        ap.error("--rate must be a positive number of submissions per second")
    if args.pg_url:
        os.environ["MASNAA_TEST_POSTGRES_URL"] = args.pg_url
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in backends and postgres_url() is None:
        sys.exit("PostgreSQL needs --pg-url or MASNAA_TEST_POSTGRES_URL")
    rows = []
    failures = []
    mode = "closed loop" if args.rate is None else f"paced at {args.rate:g}/s offered"
    for backend in backends:
        r = run_one(backend, args)
        rows.append(r)
        paced = "" if args.rate is None else (
            f"  behind schedule (> {BEHIND * 1e3:g} ms) {r['behind']} of {r['sends']}"
            f"  unsent {r['unsent']}")
        print(f"{backend:8} workers={r['workers']} clients={r['clients']} prefill={r['prefill']}"
              f" {mode}: {r['rate']:7.0f} submissions/s  p50 {r['p50_ms']:.1f} ms  "
              f"p99 {r['p99_ms']:.1f} ms  max {r['max_ms']:.0f} ms  errors {r['errors']}  "
              f"jobs stored {r['stored']}{paced}\n"
              f"         API CPU {r['server_cpu_ms']:.2f} ms/submission, load generator CPU "
              f"{r['client_cpu_ms']:.2f} ms/submission, load average {r['load']:.1f}")
        if r["errors"]:
            failures.append(f"{backend}: {r['errors']} submissions failed (answers "
                            f"{r['statuses']}, {r['unsent']} never sent)")
        if r["stored"] != r["expected"]:
            failures.append(f"{backend}: the database holds {r['stored']} jobs, but "
                            f"{r['expected']} were accepted (with the prefill)")
    sb = sbatch_rate(args.sbatch)
    if sb is not None:
        print(f"sbatch loop: {sb:.0f} submissions/s (same machine, same run)")
    if args.append:
        load = os.getloadavg()[0]
        lines = [
            "",
            f"### Submissions (`benchmarks/bench_submit.py`), {time.strftime('%Y-%m-%d %H:%M')}",
            f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} at the end, "
            f"CPython {platform.python_version()}; {args.duration:.0f} s after {args.warmup:.0f} s "
            f"warm-up, {mode}"
            + ("" if args.rate is None else
               " (latency from each send's scheduled time; behind: sent more than "
               f"{BEHIND * 1e3:g} ms late)")
            + "; the load generator runs on the same cores.",
            "",
            "| backend | API workers | clients | pending before | offered/s | submissions/s | "
            "p50 ms | p99 ms | max ms | behind | errors | API CPU ms/sub | load avg |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            offered = "closed loop" if r["offered"] is None else f"{r['offered']:,.0f}"
            behind = "—" if r["offered"] is None else f"{r['behind']:,} of {r['sends']:,}"
            lines.append(
                f"| {r['backend']} | {r['workers']} | {r['clients']} | {r['prefill']:,} | "
                f"{offered} | {r['rate']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['max_ms']:.0f} | {behind} | {r['errors']} | {r['server_cpu_ms']:.2f} | "
                f"{r['load']:.1f} |"
            )
        if sb is not None:
            lines.append(f"\n`sbatch` loop in the same run: {sb:.0f} submissions/s.")
        with args.append.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
