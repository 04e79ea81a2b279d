"""Job verbs of the ``masnaa`` command, familiar to Slurm users.

``submit`` (sbatch), ``submit-batch``, ``queue`` (squeue), ``show``
(scontrol show job), ``cancel`` (scancel), ``logs``, ``explain`` and
``usage`` (sreport). They talk to the API only, through ``MasnaaClient``,
with the URL and token of ``$MASNAA_HOME/credentials.toml`` (or
``MASNAA_URL``/``MASNAA_TOKEN``). Errors print the API's sentence and its
code on stderr and exit 1.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from masnaa.client import MasnaaClient, MasnaaError
from masnaa.client.config import CredentialsMissing

out = Console(highlight=False, soft_wrap=True)
LOG_CHUNK = 1024 * 1024
"""Bytes of output per request of ``masnaa logs``: the API's largest page
(``job_views.MAX_LOG_CHUNK``); a 64 KiB page made a gigabyte 16,000 requests."""
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 60.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from '90' (minutes, as in Slurm), '30s', '45m', '2h', '1d', 'H:MM:SS'
    or 'D-HH:MM:SS'."""
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    days = 0
    rest = text.strip()
    if "-" in rest:
        day_text, rest = rest.split("-", 1)
        if not day_text.isdigit():
            raise typer.BadParameter(f"{text!r} is not a duration")
        days = int(day_text)
    parts = rest.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(
            f"{text!r} is not a duration: write e.g. 30s, 45m, 2h, 1d, 1:30:00 or 90 (minutes)"
        )
    values = [int(p) for p in parts]
    while len(values) < 3:
        values.insert(0, 0)
    hours, minutes, seconds = values
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


def fail(message: str, code: str | None = None) -> NoReturn:
    err.print(f"[red]error:[/red] {message}" + (f" [dim]({code})[/dim]" if code else ""))
    raise typer.Exit(1)


@contextmanager
def api() -> Iterator[MasnaaClient]:
    """A client from the credentials file; API errors become a message and exit 1."""
    try:
        client = MasnaaClient.from_config()
    except CredentialsMissing as exc:
        fail(str(exc), "no-credentials")
    try:
        yield client
    except MasnaaError as exc:
        where = f" (field {exc.field})" if exc.field else ""
        fail(exc.message + where, exc.code)
    finally:
        client.close()


def ago(ts: float | None, now: float | None = None) -> str:
    """A time as 'in 5m' / '3m ago' / '-'."""
    if ts is None:
        return "-"
    delta = ts - (now if now is not None else time.time())
    span = abs(delta)
    if span < 60:
        text = f"{span:.0f}s"
    elif span < 3600:
        text = f"{span / 60:.0f}m"
    elif span < 86400:
        text = f"{span / 3600:.1f}h"
    else:
        text = f"{span / 86400:.1f}d"
    return f"in {text}" if delta > 0 else f"{text} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


_STATE_STYLE = {
    "pending": "yellow",
    "admitted": "cyan",
    "running": "green",
    "succeeded": "bold green",
    "failed": "red",
    "cancelled": "dim",
}


_ENDED = frozenset({"succeeded", "failed", "cancelled"})


def _stopping(job: dict[str, Any]) -> bool:
    """Asked to cancel and not yet ended: what the queue's asterisk says."""
    return bool(job.get("cancel_requested")) and job["state"] not in _ENDED


def _state(job: dict[str, Any]) -> str:
    style = _STATE_STYLE.get(job["state"], "")
    text = job["state"] + ("*" if _stopping(job) else "")
    return f"[{style}]{text}[/{style}]" if style else text


def _reason(job: dict[str, Any]) -> str:
    """squeue's NODELIST(REASON): where a job runs, or why it waits or ended. A gang's
    nodes are its first and how many more (``n017+15``): a line per job holds no list
    of sixteen."""
    if job["state"] == "pending":
        return job.get("wait_code") or "-"
    if job["state"] in {"admitted", "running"}:
        if _held(job):
            return str(job["wait_message"])
        nodes = [part["node"] for part in job.get("placement") or ()]
        if not nodes:
            return job.get("site") or "-"
        return nodes[0] + (f"+{len(nodes) - 1}" if len(nodes) > 1 else "")
    return job.get("state_reason") or "-"


def _held(job: dict[str, Any]) -> bool:
    """Handed to a site's own scheduler (Slurm), which has not started it yet: Masnaa's
    part is done, and the site's reason is the one that says why it waits."""
    return (job["state"] == "running" and not job.get("started_at")
            and bool(job.get("wait_message")))


def _gpus(job: dict[str, Any]) -> str:
    kind = job.get("gpu_type") or ",".join(job.get("gpu_types") or []) or "any"
    total = job["total_gpus"]
    shape = f"{job['tasks']}×{job['gpus_per_task']}" if job["tasks"] > 1 else str(total)
    return f"{shape} {kind}"


def jobs_table(jobs: list[dict[str, Any]], *, title: str | None = None) -> Table:
    table = Table(title=title, box=None, header_style="bold", pad_edge=False,
                  collapse_padding=True)
    now = time.time()
    rows = []
    for j in jobs:
        start = j.get("started_at") or j.get("estimated_start")
        rows.append((
            j["id"],
            j.get("name") or "-",
            f"{j['tenant']}/{j['project']}",
            j.get("user") or "-",
            _state(j),
            _gpus(j),
            str(j["position"]) if j.get("position") else "-",
            _reason(j),
            ago(start, now),
        ))
    cols = ("JOB", "NAME", "PROJECT", "USER", "STATE", "GPUS", "POS", "NODES/REASON", "START")
    if not any(j.get("position") for j in jobs):
        # A plain listing (--all, --state, --project) carries no places in line, which
        # only the queue view computes (over every pending job): no column of dashes.
        cols = cols[:6] + cols[7:]
        rows = [row[:6] + row[7:] for row in rows]
    # One line per job, as squeue keeps it: ids, states, codes and times stay whole,
    # and where the terminal is narrow the free text is cut short with an ellipsis
    # (`masnaa show` and `--json` give it whole). Rich would shrink every column alike.
    natural = [max([len(c), *(Text.from_markup(r[k]).cell_len for r in rows)])
               for k, c in enumerate(cols)]
    # Where and why is short for a job that waits or runs (a wait code, nodes) and
    # stays whole; the sentence that says why a job ended may be cut like free text.
    reason = cols.index("NODES/REASON")
    short = [len(cols[reason]), *(len(r[reason]) for r, j in zip(rows, jobs, strict=True)
                                  if j["state"] not in _ENDED)]
    free = sorted({1, 2, 3, 5, reason})
    floors = [max(short) if k == reason else len(cols[k]) for k in free]  # headers whole
    room = out.width - (len(cols) - 1) - sum(w for k, w in enumerate(natural) if k not in free)
    caps = _water_fill([natural[k] for k in free], room, floors)
    cap = dict(zip(free, caps, strict=True))
    for k, col in enumerate(cols):
        table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=cap.get(k),
                         min_width=natural[k] if k not in cap else cap[k])
    for row in rows:
        table.add_row(*row)
    return table


def _water_fill(widths: list[int], room: int, floors: list[int]) -> list[int]:
    """Widths that share ``room``: each column is given what it needs, up to an equal
    share of what the narrower ones leave, and never less than its floor (nor than it
    needs, where that is less). Floors are set aside first, so a wide floor does not
    eat the share of the columns after it."""
    given = [min(w, f) for w, f in zip(widths, floors, strict=True)]
    left = room - sum(given)
    order = sorted(range(len(widths)), key=lambda k: widths[k] - given[k])
    for n, k in enumerate(order):
        more = min(widths[k] - given[k], max(0, left) // (len(order) - n))
        given[k] += more
        left -= more
    return given


def _env_pairs(values: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--env {item!r}: write KEY=VALUE")
        env[key] = value
    return env


def _split(values: list[str]) -> list[str]:
    return [v for item in values for v in item.split(",") if v]


def submit(
    command: Annotated[
        list[str] | None, typer.Argument(help="The program and its arguments, after '--'.")
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", "-g", min=1, help="GPUs per task.")] = 1,
    tasks: Annotated[
        int, typer.Option("--tasks", "-n", min=1, help="Tasks (one node each at most).")
    ] = 1,
    gpu_type: Annotated[
        list[str], typer.Option("--gpu-type", "-t", help="Acceptable GPU type(s), preferred first.")
    ] = [],  # noqa: B006 — typer reads the default, never mutates it
    time_limit: Annotated[
        str, typer.Option("--time", help="Time limit: 30m, 2h, 1d, 1:30:00, or minutes.")
    ] = "1h",
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Project to charge.")
    ] = None,
    priority: Annotated[str, typer.Option("--priority", help="Priority class.")] = "normal",
    env: Annotated[list[str], typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")] = [],  # noqa: B006
    workdir: Annotated[
        str | None, typer.Option("--workdir", "-C", help="Working directory (default: here).")
    ] = None,
    name: Annotated[str, typer.Option("--name", "-J", help="A name for the job.")] = "",
    script: Annotated[
        Path | None,
        typer.Option("--script", help="Run this script instead of a command, under the "
                     "interpreter its #! line names (else /bin/sh)."),
    ] = None,
    site: Annotated[list[str], typer.Option("--site", help="Allowed site(s).")] = [],  # noqa: B006
    data: Annotated[list[str], typer.Option(
        "--data", help="Dataset/artifact id it reads (repeatable): placed where their law allows."
    )] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole job as JSON.")] = False,
) -> None:
    """Submit a job and print its id: masnaa submit --gpus 2 -- python train.py"""
    if bool(command) == (script is not None):
        fail("give a command after '--' or --script FILE (one of them)", "command-or-script")
    spec: dict[str, Any] = {
        "name": name,
        "tasks": tasks,
        "gpus_per_task": gpus,
        "gpu_types": _split(gpu_type),
        "time_limit": parse_duration(time_limit),
        "priority_class": priority,
        "env": _env_pairs(env),
        "workdir": workdir or os.getcwd(),
    }
    if project:
        spec["project"] = project
    if site:
        spec["sites"] = _split(site)
    if data:
        spec["datasets"] = _split(data)
    if script is not None:
        try:
            spec["script"] = script.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {script}: {exc.strerror}", "unreadable-script")
        spec["name"] = spec["name"] or script.name
    else:
        spec["command"] = list(command or [])
        spec["name"] = spec["name"] or Path(spec["command"][0]).name
    with api() as client:
        # A fresh key per job: a retry after a dropped connection never makes a second one.
        job = client.submit(idempotency_key=uuid.uuid4().hex, **spec)
    if as_json:
        out.print_json(json.dumps(job))
    else:
        typer.echo(job["id"])


def submit_batch(
    file: Annotated[Path, typer.Argument(help="JSON: a list of job specs, or {\"jobs\": [...]}.")],
) -> None:
    """Submit several jobs at once, all or none; print their ids."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", "unreadable-file")
    except json.JSONDecodeError as exc:
        fail(f"{file} is not JSON: {exc}", "invalid-json")
    specs = data.get("jobs") if isinstance(data, dict) else data
    if not isinstance(specs, list):
        fail(f"{file} must hold a list of job specs or {{\"jobs\": [...]}}", "invalid-batch")
    with api() as client:
        jobs = client.submit_batch(specs)
    for j in jobs:
        typer.echo(j["id"])


def queue(
    all_jobs: Annotated[
        bool, typer.Option("--all", "-a", help="Also finished jobs (newest first).")
    ] = False,
    state: Annotated[list[str], typer.Option("--state", "-s", help="Only these states.")] = [],  # noqa: B006
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project's.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many jobs.")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """List jobs with their state, why they wait and when they should start."""
    with api() as client:
        if all_jobs or state or project:
            jobs = client.jobs(state=_split(state) or None, project=project, limit=limit)["jobs"]
            tenants: list[dict[str, Any]] = []
        else:
            view = client.queue(limit=limit)
            jobs, tenants = view["jobs"], view["tenants"]
    if as_json:
        out.print_json(json.dumps({"jobs": jobs, "tenants": tenants}))
        return
    if not jobs:
        out.print("no jobs" + ("" if all_jobs else " in the queue (try --all)"))
    else:
        out.print(jobs_table(jobs))
        if any(_stopping(j) for j in jobs):
            out.print("* cancel requested: the job is stopping (SIGTERM, then its grace period)")
    for t in tenants:
        held = sum(t["gpus_in_use"].values())
        quota = sum(t["quota_nominal"].values())
        out.print(
            f"[bold]{t['tenant']}[/bold]: {held} GPUs in use"
            + (f" of {quota} quota" if quota else "")
            + f", {t['gpu_fraction_in_use']:.0%} of the factory vs a {t['share_fraction']:.0%} "
            f"share, {t['pending_jobs']} pending"
        )


def show(job_id: Annotated[str, typer.Argument(help="Job id, e.g. j-7k3q9x2m4p.")]) -> None:
    """A job's request, placement and state history."""
    with api() as client:
        job = client.job(job_id)
    rows = [
        ("job", job["id"] + (f"  ({job['name']})" if job["name"] else "")),
        ("owner", f"{job['tenant']}/{job['project']} by {job.get('user') or '-'}"),
        ("state", _state(job) + (f" — {job['state_reason']}" if job["state_reason"] else "")),
        ("request", f"{_gpus(job)}, time limit {duration(job['time_limit'])}, "
                    f"priority {job['priority_class']}"),
        ("command", " ".join(job["command"]) if job["command"] else "(script)"),
        ("workdir", job.get("workdir") or "-"),
        ("submitted", ago(job["submitted_at"])),
        ("started", ago(job.get("started_at"))),
        ("ended", ago(job.get("ended_at"))),
        ("exit code", "-" if job.get("exit_code") is None else str(job["exit_code"])),
        ("placement", ", ".join(
            f"{s['node']}:{','.join(str(g) for g in s['gpus'])}" for s in job.get("placement") or []
        ) or "-"),
    ]
    if job["state"] == "pending":
        rows.append(("waits", f"{job.get('wait_code') or '-'}: {job.get('wait_message') or '-'}"))
        rows.append(("estimated start", ago(job.get("estimated_start"))))
    elif _held(job):
        rows.append(("not started", job["wait_message"]))
    for key, value in rows:
        out.print(f"[bold]{key:>15}[/bold]  {value}")
    history = Table(title="history", box=None, header_style="bold", title_justify="left")
    for col in ("WHEN", "FROM", "TO", "EVENT", "ATTEMPT", "REASON"):
        history.add_column(col, overflow="fold", no_wrap=col != "REASON")
    for e in job["events"]:
        history.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])),
            e.get("from_state") or "-", e["to_state"], e["code"], str(e["attempt"]), e["reason"],
        )
    out.print(history)


def cancel(job_ids: Annotated[list[str], typer.Argument(help="Job id(s).")]) -> None:
    """Cancel jobs: pending ones at once, running ones after their grace period."""
    failed = False
    with api() as client:
        for job_id in job_ids:
            try:
                job = client.cancel(job_id)
            except MasnaaError as exc:
                err.print(f"[red]error:[/red] {job_id}: {exc.message} [dim]({exc.code})[/dim]")
                failed = True
                continue
            if job["state"] == "cancelled":
                out.print(f"{job_id}: cancelled")
            else:
                out.print(f"{job_id}: cancel requested; it stops shortly ({job['state']})")
    if failed:
        raise typer.Exit(1)


def logs(
    job_id: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until it ends, run after run.")
    ] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="The error stream instead.")] = False,
    run: Annotated[
        int | None,
        typer.Option("--run", min=1, help="Read run N (a requeued job runs again); default: "
                     "the latest."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls with -f.")] = 0.5,
) -> None:
    """Print a job's output (stdout, or --stderr); -f follows it until the job ends.

    Each run of a job (it runs again after a preemption or a lost node) writes its
    own output. -f goes on from one run to the next, with a line on stderr between."""
    stream = "stderr" if stderr else "stdout"
    offset = 0
    with api() as client:
        while True:
            try:
                chunk = client.logs(job_id, stream=stream, offset=offset, run=run,
                                    limit=LOG_CHUNK)
            except MasnaaError as exc:
                # A site that writes logs to paths of its own keeps only the latest
                # run's where Masnaa reads them, and an ended run's files may have been
                # deleted: go on with the run after this one, if there is one.
                if not (follow and exc.code == "log-not-found" and run
                        and client.job(job_id)["attempt"] > run):
                    raise
                err.print(f"--- {job_id}: run {run} cannot be read further; "
                          f"run {run + 1} ---", style="dim")
                run, offset = run + 1, 0
                continue
            if chunk["run"]:
                run = chunk["run"]  # read this run to its end, whatever starts meanwhile
            if chunk["data"]:
                sys.stdout.write(chunk["data"])
                sys.stdout.flush()
            progressed = chunk["next_offset"] > offset
            offset = chunk["next_offset"]
            if chunk["complete"]:
                if follow and chunk["runs"] > chunk["run"]:
                    run, offset = chunk["run"] + 1, 0
                    err.print(f"--- {job_id}: run {run} ---", style="dim")
                    continue
                break
            if progressed and offset < chunk["size"]:
                continue  # more is there already
            if not follow:
                break
            time.sleep(interval)
    if not follow and chunk["runs"] > 1 and chunk["run"] == chunk["runs"]:
        err.print(f"(run {chunk['run']} of {chunk['runs']}: --run N shows an earlier one)",
                  style="dim")


def explain(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Why a job waits, and when it should start."""
    with api() as client:
        x = client.explain(job_id)
        # Per site, why its data may or may not go there (docs/residency.md).
        lawful = client._call("GET", f"/jobs/{job_id}/residency")
    out.print(f"[bold]{x['id']}[/bold] {x['summary']}")
    if x.get("wait_code"):
        out.print(f"  reason:          {x['wait_code']}")
    if x.get("estimated_start") is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x["estimated_start"]))
        out.print(f"  estimated start: {when} ({ago(x['estimated_start'])})")
    if x.get("last_event"):
        e = x["last_event"]
        out.print(f"  last change:     {e['code']} {ago(e['at'])}: {e['reason']}")
    if x["state"] == "failed":
        # A command's own error is on stderr, which ``logs`` shows only when asked.
        out.print(f"  its output:      masnaa logs {x['id']} --stderr (and without --stderr: "
                  "stdout)", markup=False)
    if lawful["data"]:
        out.print(f"  reads:           {', '.join(lawful['data'])}; per site:", markup=False)
        for line in lawful["lines"]:
            out.print(f"    {line}", markup=False)


def usage(
    since: Annotated[
        str | None, typer.Option("--since", help="Only jobs submitted within this span, e.g. 7d.")
    ] = None,
) -> None:
    """GPU-hours used per project."""
    start = time.time() - parse_duration(since) if since else None
    with api() as client:
        rows = client.usage(since=start)
    table = Table(box=None, header_style="bold")
    for col in ("TENANT", "PROJECT", "JOBS", "GPU-HOURS", "RUNNING GPUS"):
        table.add_column(col, justify="right" if col not in {"TENANT", "PROJECT"} else "left")
    for r in rows:
        table.add_row(
            r["tenant"], r["project"], str(r["jobs"]), f"{r['gpu_hours']:.2f}",
            str(r["running_gpus"]),
        )
    out.print(table if rows else "no usage yet")


VERBS: dict[str, Callable[..., None]] = {
    "submit": submit,
    "submit-batch": submit_batch,
    "queue": queue,
    "show": show,
    "cancel": cancel,
    "logs": logs,
    "explain": explain,
    "usage": usage,
}


def register(app: typer.Typer) -> None:
    for name, fn in VERBS.items():
        app.command(name)(fn)
