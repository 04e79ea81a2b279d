"""Memory over a long run of ``masnaa up`` under steady work (target: flat over 10 minutes).

What runs: ``masnaa up`` as a user starts it (API, control loop and local
executor in one process, SQLite in a fresh ``MASNAA_HOME``), on a declared
virtual factory of one site with two GPU types:

- ``soak-gpu``: one node of 8 GPUs that takes the stream — ``--rate`` jobs per
  second, alternately ``true`` and ``sleep 0.1``, of 1 or 2 GPUs, each a real
  process under its supervisor;
- ``held-gpu``: one node of 1 GPU held by a ``sleep`` job for the whole run,
  with ``--backlog`` jobs pending behind it: a standing queue the control loop
  reconsiders on every pass, and that ``/metrics`` reads at every scrape.

Every ``--cancel-every`` seconds the newest stream job is cancelled (it may be
pending, starting, running or already ended: all four are fine) and one
backlog job is cancelled and replaced, so the backlog stays the same size.

Every ``--sample`` seconds it records the service process's resident memory
(``VmRSS``, split into anonymous memory — the heap — and file pages: shared
libraries and SQLite's memory-mapped WAL index), its threads, open files and
unreaped children, the jobs submitted and finished, and the control loop's mean
pass time over the interval (from ``masnaa_pass_seconds`` on ``/metrics``).

Verdict: the least-squares slope of RSS over the second half of the run (after
``--warmup``). "flat" when it is below ``--threshold`` MB per minute (see
``THRESHOLD_MB_PER_MIN``). The run fails (exit 1) if any job failed, a request
got a 5xx or an unexpected 4xx, a job did not end, or the service died; exit 2
means it ran cleanly but leaked: memory grew, or, measured at rest 5 s after
the last job ended, the service still had unreaped children (zombie
supervisors) or its idle control loop passed more often than ``3 / TICK``
times a second (an idle loop passes once a tick).

``--debug`` starts the service with a watcher thread that, at each sample,
records what holds its memory: malloc's bytes in use and free (``mallinfo2``:
fragmentation shows as free bytes), SQLite's own (``sqlite3_memory_used``:
page caches and statements), Python's allocator blocks, the objects the
garbage collector tracks, by type. At the end it prints how each changed
between the first sample after warm-up and the last one. ``--tracemalloc``
adds allocation sites (much slower: the control loop falls behind at 10/s).

Usage:
  .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--rate 10] [--backlog 1000]
      [--warmup 60] [--debug [--tracemalloc]] [--append docs/performance.md]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from up_harness import wait_for_up

THRESHOLD_MB_PER_MIN = 1.0
"""Flat means RSS grows by less than this per minute over the second half of the run.

Why 1 MB/min: it is what the RSS of a service without a Python-level leak
stays under on this 2-core machine, with room. Such runs (2026-11-25, the
supervisors reaped, ``--debug`` showing Python's objects flat: +255 objects
over 3,600 jobs) fitted +0.27 and +0.71 MB/min: malloc keeps freed memory
(+1.5 MB of free heap in six minutes), SQLite's page caches grow with the
database up to their cap (2 MB per pooled connection), and RSS moves in
steps of ~2 MB. A leak of 1.7 KB per job at the default 10 jobs/s — one
``Popen`` object and its dict per job is about that — reaches the threshold;
smaller ones need ``--debug`` (object counts by type) or a longer run."""

FACTORY = """\
[[sites]]
name = "soak"
country = "MA"
currency = "MAD"
executor = "local"

[[gpu_types]]
name = "soak-gpu"
memory_gb = 80

[[gpu_types]]
name = "held-gpu"
memory_gb = 80

[[nodes]]
site = "soak"
gpu_type = "soak-gpu"
gpus = 8
count = 1
prefix = "soak-"
virtual = true

[[nodes]]
site = "soak"
gpu_type = "held-gpu"
gpus = 1
count = 1
prefix = "held-"
virtual = true

[[tenants]]
name = "local"
kind = "public-body"
country = "MA"
projects = ["default"]

[[quotas]]
tenant = "local"
site = "soak"
gpu_type = "soak-gpu"
nominal = 8

[[quotas]]
tenant = "local"
site = "soak"
gpu_type = "held-gpu"
nominal = 1
"""

TERMINAL = ("succeeded", "failed", "cancelled")
TICK = 0.5
"""The control loop's longest time between passes (``LoopConfig.tick``, as ``masnaa up`` runs)."""

DEBUG_BOOT = """\
import ctypes, ctypes.util, gc, os, sys, threading, time, tracemalloc
from collections import Counter
out = os.environ["SOAK_DEBUG_DIR"]
if os.environ.get("SOAK_TRACEMALLOC"):
    tracemalloc.start(8)
class MallInfo2(ctypes.Structure):
    _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))  # the library _sqlite3 loaded
sqlite.sqlite3_memory_used.restype = ctypes.c_int64
def dump(n):
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(os.path.join(out, f"snap-{n:04d}.tracemalloc"))
    objects = gc.get_objects()
    kinds = Counter(type(o).__name__ for o in objects)
    mi = libc.mallinfo2()
    with open(os.path.join(out, f"types-{n:04d}.txt"), "w") as f:
        f.write(f"python_blocks {sys.getallocatedblocks()} gc_objects {len(objects)} "
                f"malloc_in_use {mi.uordblks + mi.hblkhd} malloc_free {mi.fordblks} "
                f"sqlite_used {sqlite.sqlite3_memory_used()} "
                f"gc_count {'/'.join(map(str, gc.get_count()))}\\n")
        for name, count in kinds.most_common(80):
            f.write(f"{count} {name}\\n")
    del objects
def watch():
    n = 1
    while True:
        if os.path.exists(os.path.join(out, f"want-{n:04d}")):
            dump(n)
            n += 1
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["masnaa"] + sys.argv[1:]
from masnaa.cli.main import app
app()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_memory(pid: int) -> dict[str, float]:
    """RSS and its parts (MB), threads, open files and unreaped children of ``pid``."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            fields[key] = int(value)
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    zombies = children = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            children += 1
            zombies += stat[0] == "Z"
    fields["children"] = children
    fields["zombies"] = zombies
    return fields


def stop_leftovers(home: Path) -> None:
    """SIGTERM the supervisors still running under ``home`` (a run cut short leaves the
    held job behind); each one then stops its job."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"masnaa.executors.shim" in argv and any(a.startswith(bytes(home)) for a in argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)


def scrape(client: httpx.Client) -> dict[str, float]:
    """The counters this benchmark follows, from the service's ``/metrics``."""
    text = client.get("/metrics").text
    out: dict[str, float] = {"pass_sum": 0.0, "pass_count": 0.0, "submitted": 0.0}
    for line in text.splitlines():
        if line.startswith("masnaa_pass_seconds_sum"):
            out["pass_sum"] = float(line.split()[-1])
        elif line.startswith("masnaa_pass_seconds_count"):
            out["pass_count"] = float(line.split()[-1])
        elif line.startswith("masnaa_submissions_total"):
            out["submitted"] = float(line.split()[-1])
        elif line.startswith("masnaa_job_transitions_total"):
            to = re.search(r'to_state="([a-z]+)"', line)
            if to and to.group(1) in TERMINAL:
                out[to.group(1)] = out.get(to.group(1), 0.0) + float(line.split()[-1])
        elif line.startswith("masnaa_queue_depth{"):
            out["pending"] = out.get("pending", 0.0) + float(line.split()[-1])
    return out


@dataclass
class Load:
    """What the load generator did (written by its thread, read at the end)."""

    stream: list[str] = field(default_factory=list)
    backlog: list[str] = field(default_factory=list)
    cancelled_stream: set[str] = field(default_factory=set)
    sent: int = 0
    behind: int = 0
    cancels: int = 0
    errors: list[str] = field(default_factory=list)


def check(reply: httpx.Response, load: Load, allowed: tuple[int, ...] = ()) -> bool:
    if reply.is_success:
        return True
    if reply.status_code in allowed:
        return False
    load.errors.append(f"{reply.request.method} {reply.request.url.path}: "
                       f"{reply.status_code} {reply.text[:200]}")
    return False


def stream_job(k: int) -> dict[str, object]:
    return {
        "command": ["true"] if k % 2 == 0 else ["sleep", "0.1"],
        "gpus_per_task": 1 + k % 3 // 2,
        "gpu_types": ["soak-gpu"],
        "time_limit": 120,
        "name": f"soak-{k}",
    }


BACKLOG_JOB = {"command": ["true"], "gpu_types": ["held-gpu"], "time_limit": 60,
               "name": "backlog"}


def generate(client: httpx.Client, load: Load, rate: float, cancel_every: float,
             stop_at: float, stop: threading.Event) -> None:
    try:
        _generate(client, load, rate, cancel_every, stop_at, stop)
    except Exception as exc:  # the run must fail, not end early looking clean
        load.errors.append(f"the load generator stopped: {exc!r}")


def _generate(client: httpx.Client, load: Load, rate: float, cancel_every: float,
              stop_at: float, stop: threading.Event) -> None:
    """Submit at ``rate``/s on a fixed schedule; cancel on another; never skip a send."""
    start = time.monotonic()
    next_cancel = start + cancel_every
    k = 0
    while not stop.is_set():
        due = start + k / rate
        if due >= stop_at:
            break
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > 0.05:
            load.behind += 1
        reply = client.post("/api/v1/jobs", json=stream_job(k))
        k += 1
        load.sent += 1
        if check(reply, load):
            load.stream.append(reply.json()["id"])
        if time.monotonic() >= next_cancel and load.stream:
            next_cancel += cancel_every
            victim = load.stream[-1]
            if check(client.post(f"/api/v1/jobs/{victim}/cancel"), load, (409,)):
                load.cancelled_stream.add(victim)
            load.cancels += 1
            if load.backlog:
                old = load.backlog.pop(0)
                check(client.post(f"/api/v1/jobs/{old}/cancel"), load)
                reply = client.post("/api/v1/jobs", json=BACKLOG_JOB)
                if check(reply, load):
                    load.backlog.append(reply.json()["id"])
                load.cancels += 1


def all_jobs(client: httpx.Client, states: tuple[str, ...] = ()) -> list[dict[str, object]]:
    jobs: list[dict[str, object]] = []
    before: str | None = None
    while True:
        params: dict[str, object] = {"limit": 1000, "state": list(states)}
        if before:
            params["before"] = before
        page = client.get("/api/v1/jobs", params=params)
        page.raise_for_status()
        body = page.json()
        jobs.extend(body["jobs"])
        before = body["next"]
        if not before:
            return jobs


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def debug_report(folder: Path, first: int, last: int) -> None:
    """Where the memory went between two samples: by owner, then by object type."""
    import tracemalloc

    while last > first and not (folder / f"types-{last:04d}.txt").exists():
        last -= 1  # the last one asked for may not have been written before the stop
    heads, counts = [], []
    for n in (first, last):
        rows = (folder / f"types-{n:04d}.txt").read_text().splitlines()
        words = rows[0].split()
        heads.append(dict(zip(words[::2], words[1::2], strict=True)))
        counts.append({r.split()[1]: int(r.split()[0]) for r in rows[1:]})
    print(f"\nin the service, sample {first} → {last}:")
    for key, unit in (("malloc_in_use", "MB held by malloc (C and Python)"),
                      ("malloc_free", "MB free inside malloc's heap (fragmentation)"),
                      ("sqlite_used", "MB held by SQLite (page caches, statements)"),
                      ("python_blocks", "Python object allocator blocks"),
                      ("gc_objects", "objects tracked by the garbage collector")):
        a, b = float(heads[0][key]), float(heads[1][key])
        scale = 1 / 2**20 if unit.startswith("MB") else 1
        print(f"  {a * scale:12,.1f} → {b * scale:12,.1f}  ({(b - a) * scale:+,.1f})  {unit}")
    print(f"  gc generation counts {heads[0]['gc_count']} → {heads[1]['gc_count']}")
    grew = sorted(((counts[1].get(k, 0) - counts[0].get(k, 0), k) for k in counts[1]),
                  reverse=True)
    print("  object types whose counts grew most: "
          + (", ".join(f"{k} {d:+d}" for d, k in grew[:12] if d > 0) or "none"))
    snaps = [folder / f"snap-{n:04d}.tracemalloc" for n in (first, last)]
    if not all(p.exists() for p in snaps):
        return
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    a_snap, b_snap = (tracemalloc.Snapshot.load(str(p)).filter_traces(keep) for p in snaps)
    print("  allocation sites that grew most (tracemalloc):")
    for stat in b_snap.compare_to(a_snap, "traceback")[:10]:
        print(f"  {stat.size_diff / 1024:+9.1f} KiB  {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=6):
            print("     " + line)


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # run the clean-up of ``main`` (stop the service, its jobs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="measured run after warm-up")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the "
                    "first counted sample (caches and connection pools fill up)")
    ap.add_argument("--rate", type=float, default=10.0, help="stream jobs submitted per second "
                    "(each starts a Python supervisor: 10/s takes about half of a 2-core machine)")
    ap.add_argument("--backlog", type=int, default=1000, help="standing pending jobs waiting "
                    "for the held GPU type (more than backfill_depth, 500: the stream for the "
                    "other type must still flow past them)")
    ap.add_argument("--cancel-every", type=float, default=2.0)
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--threshold", type=float, default=THRESHOLD_MB_PER_MIN,
                    help="MB/min of RSS slope over the second half still called flat")
    ap.add_argument("--debug", action="store_true", help="at each sample, the service "
                    "records malloc's, SQLite's and Python's memory and its object counts")
    ap.add_argument("--tracemalloc", action="store_true", help="with --debug: also "
                    "tracemalloc snapshots (much slower: use a lower --rate)")
    ap.add_argument("--append", type=Path, default=None, help="append the result to this file")
    ap.add_argument("--keep", action="store_true", help="keep the service's home (database, "
                    "job files, log) after a clean run; a failed run always keeps it")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, _interrupted)
    home = Path(tempfile.mkdtemp(prefix="masnaa-soak-"))
    (home / "factory.toml").write_text(FACTORY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env["MASNAA_HOME"] = str(home)
    port = free_port()
    argv = ["up", "--port", str(port), "--factory", str(home / "factory.toml")]
    if args.debug:
        (home / "debug").mkdir()
        env["SOAK_DEBUG_DIR"] = str(home / "debug")
        if args.tracemalloc:
            env["SOAK_TRACEMALLOC"] = "1"
        cmd = [sys.executable, "-c", DEBUG_BOOT, *argv]
    else:
        cmd = [sys.executable, "-c", "from masnaa.cli.main import app; app()", *argv]
    log = (home / "up.log").open("wb")
    up = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    load = Load()
    rest: dict[str, float] = {}
    samples: list[dict[str, float]] = []
    failures: list[str] = []
    print(f"home {home}; masnaa up pid {up.pid}; {args.rate:g} jobs/s for "
          f"{args.warmup:g} s warm-up + {args.minutes:g} min", flush=True)
    try:
        token = wait_for_up(base, up, home, 300 if args.tracemalloc else 60)  # it is slow
        if token is None:
            return 1
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=base, headers=headers, timeout=30)
        gen_client = httpx.Client(base_url=base, headers=headers, timeout=30)

        hog = client.post("/api/v1/jobs", json={
            "command": ["sleep", "86400"], "gpu_types": ["held-gpu"], "time_limit": 86400,
            "name": "hog"})
        hog.raise_for_status()
        hog_id = hog.json()["id"]
        deadline = time.monotonic() + 60
        while (state := client.get(f"/api/v1/jobs/{hog_id}").json()["state"]) != "running":
            if state in TERMINAL or time.monotonic() > deadline:
                raise RuntimeError(f"the job holding held-gpu did not start (it is {state})")
            time.sleep(0.1)
        for i in range(0, args.backlog, 500):
            batch = client.post("/api/v1/jobs/batch",
                                json={"jobs": [BACKLOG_JOB] * min(500, args.backlog - i)})
            batch.raise_for_status()
            load.backlog.extend(j["id"] for j in batch.json()["jobs"])

        t0 = time.monotonic()
        total = args.warmup + args.minutes * 60
        stop = threading.Event()
        gen = threading.Thread(target=generate, args=(gen_client, load, args.rate,
                                                      args.cancel_every, t0 + total, stop),
                               daemon=True)
        gen.start()
        print(f"{'t s':>6} {'RSS MB':>7} {'anon':>6} {'file':>6} {'thr':>4} {'fds':>4} "
              f"{'kids':>4} {'zomb':>4} {'sent':>6} {'done':>6} {'pend':>5} {'pass ms':>7} "
              f"{'pass/s':>6} {'load':>5}", flush=True)
        previous: dict[str, float] | None = None
        n = 0
        while True:
            n += 1
            target = t0 + n * args.sample
            while time.monotonic() < target and gen.is_alive():
                time.sleep(0.2)
            if up.poll() is not None:
                failures.append(f"masnaa up exited with {up.returncode}")
                break
            mem = proc_memory(up.pid)
            if args.debug:  # the service's watcher thread writes snapshot n
                (home / "debug" / f"want-{n:04d}").touch()
            metrics = scrape(client)
            passes = metrics["pass_count"] - (previous or {}).get("pass_count", 0.0)
            pass_ms = ((metrics["pass_sum"] - (previous or {}).get("pass_sum", 0.0))
                       / passes * 1e3 if passes else float("nan"))
            per_s = passes / (time.monotonic() - (previous or {}).get("at", t0))
            previous = {**metrics, "at": time.monotonic()}
            done = sum(metrics.get(s, 0.0) for s in TERMINAL)
            row = {"t": time.monotonic() - t0, **mem, "sent": float(load.sent), "done": done,
                   "pending": metrics.get("pending", 0.0), "pass_ms": pass_ms, "passes": per_s,
                   "load": os.getloadavg()[0], "sample": float(n)}
            samples.append(row)
            print(f"{row['t']:6.0f} {mem['VmRSS']:7.1f} {mem['RssAnon']:6.1f} "
                  f"{mem['RssFile']:6.1f} {mem['Threads']:4.0f} {mem['fds']:4.0f} "
                  f"{mem['children']:4.0f} {mem['zombies']:4.0f} {load.sent:6d} {done:6.0f} "
                  f"{row['pending']:5.0f} {pass_ms:7.1f} {per_s:6.1f} {row['load']:5.1f}",
                  flush=True)
            if not gen.is_alive():
                break
        stop.set()
        gen.join()

        # Wind down: end the hog and the backlog, wait until every job has ended.
        check(client.post(f"/api/v1/jobs/{hog_id}/cancel"), load)
        for job_id in load.backlog:
            check(client.post(f"/api/v1/jobs/{job_id}/cancel"), load, (409,))
        end_by = time.monotonic() + 120
        active: list[dict[str, object]] = []
        while time.monotonic() < end_by:
            active = all_jobs(client, ("pending", "admitted", "running"))
            if not active:
                break
            time.sleep(1)
        jobs = {str(j["id"]): j for j in all_jobs(client)}
        # At rest: an idle loop passes every tick (2/s) and has reaped every supervisor.
        time.sleep(5)
        before = scrape(client)["pass_count"]
        time.sleep(10)
        rest = {**proc_memory(up.pid),
                "passes": (scrape(client)["pass_count"] - before) / 10}
    finally:
        if up.poll() is None:
            up.terminate()  # as SIGINT would (SIGINT is ignored when run in the background)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                up.kill()
                failures.append("masnaa up did not stop on SIGTERM within 30 s")
        stop_leftovers(home)

    # Every job ended, and as it should have.
    if active:
        failures.append(f"{len(active)} jobs had not ended 120 s after the load stopped")
    if load.errors:
        failures.append(f"{len(load.errors)} requests failed, first: {load.errors[0]}")
    failed = [j for j in jobs.values() if j["state"] == "failed"]
    if failed:
        failures.append(f"{len(failed)} jobs failed, first: {failed[0]['id']} "
                        f"({failed[0].get('state_reason')})")
    for job_id in load.stream:
        state = jobs.get(job_id, {}).get("state")
        if state != "succeeded" and not (state == "cancelled" and job_id in load.cancelled_stream):
            failures.append(f"stream job {job_id} ended {state}")
            break
    leaks = []
    if rest.get("zombies"):
        leaks.append(f"{rest['zombies']:.0f} job supervisors never reaped (zombies of the "
                     "service) at rest")
    if rest.get("passes", 0.0) > 3 / TICK:
        leaks.append(f"the idle control loop passes {rest['passes']:.0f} times/s (expected "
                     f"{1 / TICK:g}/s at rest)")
    if "Traceback" in (home / "up.log").read_text(errors="replace"):
        failures.append(f"the service logged a traceback: see {home / 'up.log'}")

    counted = [s for s in samples if s["t"] >= args.warmup]
    verdict, half_slope, anon_slope = "no samples", float("nan"), float("nan")
    if len(counted) >= 4:
        second = counted[len(counted) // 2:]
        half_slope = slope([(s["t"] / 60, s["VmRSS"]) for s in second])
        anon_slope = slope([(s["t"] / 60, s["RssAnon"]) for s in second])
        verdict = "flat" if half_slope < args.threshold else "grows"
    first, last = (counted[0], counted[-1]) if counted else ({}, {})
    peak = max((s["VmRSS"] for s in samples), default=float("nan"))
    finished = sum(1 for j in jobs.values() if j["state"] in TERMINAL)
    loads = [s["load"] for s in samples]
    summary = (
        f"{len(load.stream):,} stream jobs + {args.backlog:,} standing backlog, "
        f"{load.cancels:,} cancels, {finished:,} jobs ended; {load.behind} sends > 50 ms late\n"
        f"RSS after warm-up {first.get('VmRSS', float('nan')):.1f} MB, at the end "
        f"{last.get('VmRSS', float('nan')):.1f} MB, max {peak:.1f} MB; slope over the second "
        f"half {half_slope:+.3f} MB/min (anonymous {anon_slope:+.3f} MB/min) → {verdict} "
        f"(threshold {args.threshold:g} MB/min)\n"
        f"threads {last.get('Threads', 0):.0f}, open files {first.get('fds', 0):.0f} → "
        f"{last.get('fds', 0):.0f}, unreaped children at the end {last.get('zombies', 0):.0f}; "
        f"mean pass {first.get('pass_ms', float('nan')):.1f} → "
        f"{last.get('pass_ms', float('nan')):.1f} ms; load average "
        f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f}"
    )
    summary += (f"\nat rest after the run: RSS {rest.get('VmRSS', float('nan')):.1f} MB, "
                f"{rest.get('passes', float('nan')):.1f} passes/s, unreaped children "
                f"{rest.get('zombies', float('nan')):.0f}")
    print(summary)
    for leak in leaks:
        print(f"LEAK: {leak}", file=sys.stderr)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if args.debug and len(counted) >= 2:
        debug_report(home / "debug", int(counted[0]["sample"]), int(counted[-1]["sample"]))
    if args.append and not failures:
        lines = [
            "",
            f"## Memory over a long run (`benchmarks/bench_soak.py`), "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC",
            f"{platform.machine()}, {os.cpu_count()} CPUs shared with other work (load average "
            f"{min(loads):.1f}–{max(loads):.1f} during the run), CPython "
            f"{platform.python_version()}; `masnaa up` on SQLite, local executor, virtual "
            f"8 + 1 GPUs; {args.rate:g} jobs/s (`true`, `sleep 0.1`) for {args.minutes:g} min "
            f"after {args.warmup:g} s of warm-up, {args.backlog:,} jobs pending throughout, a "
            f"cancel every {args.cancel_every:g} s; RSS of the one process (API + loop) every "
            f"{args.sample:g} s.",
            "",
            "| RSS after warm-up | at the end | max | slope, 2nd half | anonymous | verdict |",
            "|---|---|---|---|---|---|",
            f"| {first['VmRSS']:.1f} MB | {last['VmRSS']:.1f} MB | {peak:.1f} MB | "
            f"{half_slope:+.3f} MB/min | {anon_slope:+.3f} MB/min | {verdict} (threshold "
            f"{args.threshold:g} MB/min) |",
            "",
            f"{len(load.stream):,} stream jobs, {finished:,} jobs ended, none failed; mean "
            f"pass {first['pass_ms']:.1f} ms after warm-up, {last['pass_ms']:.1f} ms at the end; "
            f"open files {first['fds']:.0f} → {last['fds']:.0f}. At rest after the run: "
            f"{rest['passes']:.1f} passes/s, {rest['zombies']:.0f} unreaped supervisors"
            + "".join(f"; **{leak}**" for leak in leaks) + ".",
        ]
        with args.append.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    if failures:
        print(f"kept for inspection: {home}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)  # ~20 KB of job files per job
    return 0 if verdict == "flat" and not leaks else 2


if __name__ == "__main__":
    raise SystemExit(main())
