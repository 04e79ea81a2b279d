"""Slurm executor speed: submission rates side by side with sbatch, and reconciliation.

    .venv/bin/python benchmarks/bench_slurm.py               # needs scripts/slurm-up.sh
    .venv/bin/python benchmarks/bench_slurm.py --append           # + docs/performance.md
    .venv/bin/python benchmarks/bench_slurm.py --synthetic-only      # no Slurm needed

Measured in one run, so the ratios hold on a noisy machine:

1. ``sbatch`` serial: a shell-like loop of ``sbatch --parsable`` (the baseline),
   plain and with the options the executor sends (pinned);
2. the same × 4 in parallel;
3. the executor's dispatch: ``start()`` one by one, and ``start_many()`` on
   4 and 8 threads (each is claim + script + ``sbatch`` with the full pinning);
4. reconciliation of 10,000 synthetic jobs: a ``squeue --json`` document of
   10,000 jobs in 22.05's shape (≈3 KB each, as the real one), parsed and
   matched against 10,000 attempts' records on disk: first pass of a fresh
   executor (a restart: every record read) and a steady pass; plus the
   control loop's way (``poll`` per run, one query shared);
5. a real reconciliation pass over ``--real`` held jobs in slurmctld.

Methods take turns over several rounds and each reports its median rate.

Submitted jobs are held (``--hold``) so the node is not flooded, then cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from masnaa.executors.base import LaunchSpec, NodeGpus
from masnaa.executors.slurm import SlurmCommands, SlurmExecutor, SlurmSiteConfig
from masnaa.executors.slurm.commands import Completed
from masnaa.executors.slurm.parse import SQUEUE_SEP, job_comment, job_name
from masnaa.executors.slurm.records import RunRecords

SYNTHETIC_JOBS = 10_000


def sbatch_once(tag: str, i: int, pinned: str | None = None) -> None:
    """One held submission; ``pinned`` (a node) adds the options the executor sends."""
    args = ["sbatch", "--parsable", "--hold", f"--job-name=bench-{tag}-{i}", "-o", "/dev/null"]
    if pinned:
        args += [
            f"--nodelist={pinned}",
            "--nodes=1",
            "--ntasks-per-node=1",
            "--gres=gpu:1",
            "--time=12",
            f"--comment=bench:{tag}:{i}",
            "--no-requeue",
            "--export=NONE",
        ]
    subprocess.run([*args, "--wrap", "true"], check=True, capture_output=True)  # fmt: skip


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def specs(node: str, prefix: str, n: int) -> list[LaunchSpec]:
    return [
        LaunchSpec(
            job_id=f"{prefix}-{i:05d}",
            attempt=1,
            argv=("true",),
            placement=(NodeGpus(node, (0,)),),
            time_limit=600,
        )
        for i in range(n)
    ]


def bench_submission(n: int, rounds: int, node: str, state: Path) -> dict[str, float]:
    """Every method once per round, in turn, on an empty queue; the median of the rounds.

    Interleaving keeps the comparison fair on a machine whose load changes
    from one second to the next.
    """
    config = SlurmSiteConfig(site="bench", state_dir=state, sbatch_args=("--hold",))
    executors = {
        t: SlurmExecutor(config.model_copy(update={"dispatch_threads": t})) for t in (4, 8)
    }
    serial_ex = SlurmExecutor(config)
    for ex in (serial_ex, *executors.values()):
        ex.inventory()  # GRES types known before timing (a running service has them)

    def sbatch_serial(tag: str, pinned: str | None) -> None:
        for i in range(n):
            sbatch_once(tag, i, pinned)

    def sbatch_par(tag: str, pinned: str | None) -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: sbatch_once(tag, i, pinned), range(n)))

    def start_serial(tag: str) -> None:
        for spec in specs(node, tag, n):
            serial_ex.start(spec)

    def start_many(tag: str, threads: int) -> None:
        failures = [o for o in executors[threads].start_many(specs(node, tag, n)) if o is not None]
        if failures:
            raise SystemExit(f"{len(failures)} submissions failed, first: {failures[0]}")

    methods = {
        "sbatch plain, serial (/s)": lambda r: sbatch_serial(f"sp{r}", None),
        "sbatch plain, 4 in parallel (/s)": lambda r: sbatch_par(f"pp{r}", None),
        "sbatch pinned, serial (/s)": lambda r: sbatch_serial(f"sn{r}", node),
        "sbatch pinned, 4 in parallel (/s)": lambda r: sbatch_par(f"pn{r}", node),
        "executor start(), serial (/s)": lambda r: start_serial(f"bs{r}"),
        "executor start_many(), 4 threads (/s)": lambda r: start_many(f"b4r{r}", 4),
        "executor start_many(), 8 threads (/s)": lambda r: start_many(f"b8r{r}", 8),
    }
    seen: dict[str, list[float]] = {name: [] for name in methods}
    for r in range(rounds):
        for name, method in methods.items():
            t0 = time.perf_counter()
            method(r)
            seen[name].append(rate(n, time.perf_counter() - t0))
            cancel_bench_jobs()
    out = {name: statistics.median(values) for name, values in seen.items()}
    for ex in (serial_ex, *executors.values()):
        ex.close()
    return out


def bench_real_reconcile(n: int, node: str, state: Path) -> dict[str, float]:
    """``n`` held jobs really in slurmctld: one pass over them, text and JSON ``squeue``."""
    config = SlurmSiteConfig(site="bench", state_dir=state, sbatch_args=("--hold",))
    submitter = SlurmExecutor(config.model_copy(update={"dispatch_threads": 8}))
    batch = specs(node, "breal", n)
    failures = [o for o in submitter.start_many(batch) if o is not None]
    if failures:
        raise SystemExit(f"{len(failures)} submissions failed, first: {failures[0]}")
    submitter.close()
    runs = [(spec.job_id, 1) for spec in batch]
    out: dict[str, float] = {}
    for form in ("text", "json"):
        ex = SlurmExecutor(config.model_copy(update={"squeue_format": form}))
        t0 = time.perf_counter()
        seen = ex.poll_many(runs)
        out[f"real reconcile of {n:,} held jobs ({form}), restart pass (ms)"] = ms(t0)
        assert all(o.state == "running" for o in seen.values()), "every held job is pending"
        t0 = time.perf_counter()
        ex.poll_many(runs)
        out[f"real reconcile of {n:,} held jobs ({form}), steady pass (ms)"] = ms(t0)
    return out


def cancel_bench_jobs() -> None:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %k"], capture_output=True, text=True).stdout
    ids = [
        f[0]
        for f in (line.split() for line in out.splitlines())
        if len(f) > 1 and (f[1].startswith("bench-") or f[1].startswith("masnaa-b"))
    ]
    for i in range(0, len(ids), 500):
        subprocess.run(["scancel", *ids[i : i + 500]], capture_output=True)


# -- synthetic reconciliation -----------------------------------------------------------------


def synthetic_job(i: int, state: str) -> dict[str, Any]:
    """One ``squeue --json`` job with the fields and sizes of Slurm 22.05's answer."""
    job_id, attempt = f"syn-{i:05d}", 1
    running = state == "RUNNING"
    return {
        "account": "um6p", "accrue_time": 1795600000, "admin_comment": "",
        "array_job_id": 0, "array_task_id": None, "array_max_tasks": 0,
        "array_task_string": "", "association_id": 0, "batch_features": "",
        "batch_flag": True, "batch_host": "gpu0001" if running else "", "flags": [
            "JOB_WAS_RUNNING", "JOB_MEM_SET"],
        "burst_buffer": "", "burst_buffer_state": "", "cluster": "masnaa",
        "cluster_features": "", "command": "(null)", "comment": job_comment(job_id, attempt),
        "container": "", "contiguous": False, "core_spec": None, "thread_spec": None,
        "cores_per_socket": None, "billable_tres": 1.0, "cpus_per_task": None,
        "cpu_frequency_minimum": None, "cpu_frequency_maximum": None,
        "cpu_frequency_governor": None, "cpus_per_tres": "", "deadline": 0,
        "delay_boot": 0, "dependency": "", "derived_exit_code": 0, "eligible_time": 1795600000,
        "end_time": 1795603600, "excluded_nodes": "", "exit_code": 0, "features": "",
        "federation_origin": "", "federation_siblings_active": "",
        "federation_siblings_viable": "", "gres_detail": ["gpu:h100:8(IDX:0-7)"] if running
        else [], "group_id": 0, "group_name": "root",
        "job_id": 100000 + i, "job_resources": {
            "nodes": "gpu0001", "allocated_cores": 1, "allocated_hosts": 1,
            "allocated_nodes": [{"sockets": {"0": {"cores": {"0": "allocated"}}},
                                 "nodename": "gpu0001", "cpus_used": 0, "memory_used": 0,
                                 "memory_allocated": 512000}]} if running else {},
        "job_state": state, "last_sched_evaluation": 1795600000, "licenses": "",
        "max_cpus": 0, "max_nodes": 0, "mcs_label": "", "memory_per_tres": "",
        "name": job_name(job_id, attempt), "nodes": f"gpu{i % 1250:04d}" if running else "",
        "nice": None, "tasks_per_core": None, "tasks_per_node": 1, "tasks_per_socket": None,
        "tasks_per_board": 0, "cpus": 1, "node_count": 1, "tasks": 1, "het_job_id": 0,
        "het_job_id_set": "", "het_job_offset": 0, "partition": "masnaa",
        "memory_per_node": None, "memory_per_cpu": None, "minimum_cpus_per_node": 1,
        "minimum_tmp_disk_per_node": 0, "preempt_time": 0, "pre_sus_time": 0,
        "priority": 4294901759,
        "profile": None, "qos": "normal", "reboot": False,
        "required_nodes": f"gpu{i % 1250:04d}", "requeue": False,
        "resize_time": 0, "restart_cnt": 0, "resv_name": "", "shared": None, "show_flags": [
            "SHOW_ALL", "SHOW_DETAIL", "SHOW_LOCAL"],
        "sockets_per_board": 0, "sockets_per_node": None, "start_time": 1795600000,
        "state_description": "", "state_reason": "None" if running else "Resources",
        "standard_error": f"/srv/masnaa/slurm/runs/{job_id}/1/stderr",
        "standard_input": "/dev/null",
        "standard_output": f"/srv/masnaa/slurm/runs/{job_id}/1/stdout",
        "submit_time": 1795600000, "suspend_time": 0, "system_comment": "",
        "time_limit": 61, "time_minimum": 0, "threads_per_core": None, "tres_bind": "",
        "tres_freq": "", "tres_per_job": "", "tres_per_node": "gres:gpu:h100:8",
        "tres_per_socket": "", "tres_per_task": "",
        "tres_req_str": "cpu=1,mem=500G,node=1,billing=1",
        "tres_alloc_str": "cpu=1,mem=500G,node=1,billing=1", "user_id": 0, "user_name": "root",
        "wckey": "", "current_working_directory": f"/srv/masnaa/slurm/runs/{job_id}/1",
    }  # fmt: skip


def synthetic_line(job: dict[str, Any]) -> str:
    """The same job as ``squeue --format=SQUEUE_FORMAT`` prints it."""
    start = datetime.fromtimestamp(job["start_time"]).isoformat()
    end = datetime.fromtimestamp(job["end_time"]).isoformat()
    return SQUEUE_SEP.join(
        [str(job["job_id"]), job["job_state"], job["state_reason"], job["nodes"],
         job["required_nodes"], start if job["nodes"] else "N/A", end, job["comment"]]
    )  # fmt: skip


class CannedSlurm(SlurmCommands):
    """Answers ``squeue``/``sinfo`` with fixed text (parsed on every call, as live)."""

    def __init__(self, squeue_json: str, squeue_text: str, sinfo: str) -> None:
        super().__init__()
        self.answers = {"squeue": squeue_json, "sinfo": sinfo}
        self.text = squeue_text

    def run(self, tool: str, args: Sequence[str], *, stdin: str | None = None) -> Completed:
        if tool == "squeue" and "--json" not in args:
            return Completed(self.text, "")
        return Completed(self.answers[tool], "")


def bench_synthetic(state: Path, n: int = SYNTHETIC_JOBS) -> dict[str, float]:
    running = int(n * 0.8)
    pending = int(n * 0.1)
    docs = [
        synthetic_job(i, "RUNNING" if i < running else "PENDING") for i in range(running + pending)
    ]
    squeue = json.dumps({"meta": {}, "errors": [], "jobs": docs}, indent=2)
    nodes = [
        {"name": f"gpu{k:04d}", "state": "allocated", "state_flags": [], "reason": "",
         "gres": "gpu:h100:8", "active_features": "h100,ib", "partitions": ["masnaa"]}
        for k in range(1250)
    ]  # fmt: skip
    sinfo = json.dumps({"meta": {}, "errors": [], "nodes": nodes})
    config = SlurmSiteConfig(site="bench", state_dir=state)
    now = time.time()
    for i in range(n):  # records as the executor and the batch scripts would leave them
        d = RunRecords(state, f"syn-{i:05d}", 1).dir
        d.mkdir(parents=True)
        files = {"claim": f"{now:.3f}", "slurm_job_id": str(100000 + i)}
        if i < running:
            files["started_at"] = f"{now:.3f}"
        elif i >= running + pending:  # finished and already gone from squeue
            files["started_at"] = f"{now:.3f}"
            files["exit"] = f"{i % 4} exited {now + 60:.3f}"
        for name, text in files.items():
            (d / name).write_text(text + "\n")
    runs = [(f"syn-{i:05d}", 1) for i in range(n)]
    text = "\n".join(synthetic_line(d) for d in docs) + "\n"
    canned = CannedSlurm(squeue, text, sinfo)
    out: dict[str, float] = {
        f"synthetic squeue of {n:,} jobs, JSON (MB)": len(squeue) / 1e6,
        f"synthetic squeue of {n:,} jobs, text (MB)": len(text) / 1e6,
    }
    for form in ("text", "json"):
        cfg = config.model_copy(update={"squeue_format": form})
        first = SlurmExecutor(cfg, canned)
        t0 = time.perf_counter()
        seen = first.poll_many(runs)
        out[f"reconcile ({form}), first pass of a fresh executor (ms)"] = ms(t0)
        states = {s: sum(1 for o in seen.values() if o.state == s) for s in ("running", "exited")}
        assert states == {"running": running + pending, "exited": n - running - pending}, states
        t0 = time.perf_counter()
        first.poll_many(runs)
        out[f"reconcile ({form}), steady pass (ms)"] = ms(t0)
        loop_way = SlurmExecutor(cfg.model_copy(update={"view_ttl": 60.0}), canned)
        loop_way.poll_many(runs[:1])
        t0 = time.perf_counter()
        for run in runs:
            loop_way.poll(*run)
        out[f"reconcile ({form}), poll() per run as the loop does, fresh executor (ms)"] = ms(t0)
    return out


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def report(results: dict[str, float]) -> str:
    return "\n".join(f"| {name} | {value:,.1f} |" for name, value in results.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50, help="submissions per method and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is reported)")
    parser.add_argument("--real", type=int, default=2000, help="held jobs for a real pass")
    parser.add_argument("--synthetic-only", action="store_true")
    parser.add_argument("--append", action="store_true", help="append to docs/performance.md")
    args = parser.parse_args()

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="masnaa-bench-slurm-") as tmp:
        if not args.synthetic_only:
            if shutil.which("sbatch") is None:
                raise SystemExit("no sbatch here: run scripts/slurm-up.sh or use --synthetic-only")
            node = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True
            ).stdout.split()[0]
            try:
                cancel_bench_jobs()
                results.update(bench_submission(args.jobs, args.rounds, node, Path(tmp) / "live"))
                if args.real:
                    results.update(bench_real_reconcile(args.real, node, Path(tmp) / "real"))
            finally:
                cancel_bench_jobs()
            best = max(v for k, v in results.items() if k.startswith("executor start_many"))
            for label in ("plain", "pinned"):
                base = results[f"sbatch {label}, serial (/s)"]
                results[f"best start_many() / sbatch {label} serial (x)"] = best / base
        results.update(bench_synthetic(Path(tmp) / "synthetic"))

    print("| measure | value |\n|---|---|")
    print(report(results))
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = (
            f"\n## Slurm executor (`benchmarks/bench_slurm.py`)\n\n"
            f"{stamp}, {platform.machine()}, CPython {platform.python_version()}, "
            f"Slurm 22.05 one-node (scripts/slurm-up.sh); submission rates are the median of "
            f"{args.rounds} interleaved rounds of {args.jobs} held jobs per method; "
            f"{SYNTHETIC_JOBS:,} synthetic jobs for reconciliation; load average "
            f"{os.getloadavg()[0]:.1f} at the end.\n\n"
            "| measure | value |\n|---|---|\n" + report(results) + "\n"
        )
        perf = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
        with perf.open("a") as fh:
            fh.write(text)
        print(f"appended to {perf}")


if __name__ == "__main__":
    main()
