"""The ``sacct`` loader: an operator's own Slurm history, replayed under each policy.

Input is the output of, for example::

    sacct --allusers --parsable2 --starttime 2025-01-01 \\
          --format JobID,Submit,Start,End,Elapsed,AllocTRES,Account,Timelimit,State

``|``-separated, with Slurm's header line (without one, the columns are
assumed to be in the order above). Needed columns: ``JobID``, ``Submit``,
``Account``, ``AllocTRES`` or ``ReqTRES``, and ``Elapsed`` or both ``Start``
and ``End``. Optional: ``Timelimit`` (the requested limit: a job that ran into
it is killed at it in the twin too), ``State``, ``NNodes``.

What counts as a job to replay:
- job steps (``123.batch``, ``123.0``, ``123.extern``) are parts of a job and
  are counted under ``ignored["job-step"]``;
- jobs that never ran (no start, or no ``AllocTRES``: Slurm gives a job cancelled
  while pending its cancel time as ``Start``) go to ``ignored["never-started"]``, and jobs that
  started but ran for no measurable time (``Elapsed`` 00:00:00) to
  ``ignored["no-runtime"]``;
- a pending array range (``105_[3-5]``) is one line for several jobs, counted as
  that many;
- the components of a heterogeneous job (``108+0``, ``108+1``) start together in
  Slurm, so they are replayed as one gang where one can express them: the same
  GPUs per node, GPU type and account in every component with GPUs (Σ GPUs on Σ
  nodes, the longest ``Elapsed``, the earliest ``Submit`` and ``Start``, job id
  ``108``). Otherwise the job is counted under ``ignored["het-job-mixed"]``;
- jobs still running, pending, suspended or requeued when sacct ran (their
  ``State``, or an ``End`` of ``Unknown``) go to ``ignored["unfinished"]``: their
  ``Elapsed`` is the time so far, not a runtime, and replaying it would shorten them;
- jobs without GPUs go to ``ignored["cpu-only"]``.
``Start`` is kept as the job's recorded start (``Trace.started``), so a report can
set what the site's own Slurm did beside the replays; a ``Start`` before ``Submit``
is taken as unknown and counted (``Trace.notes["start-before-submit"]``).
Date-times carry no zone: sacct prints them in its local time, read in
``TraceSource.timezone`` (``--timezone``, default UTC; or print them with
``TZ=UTC sacct ...``).
GPUs come from the TRES string (``gres/gpu=8`` or ``gres/gpu:h100=8``; the
typed entry also gives the GPU type); nodes from ``node=N`` or ``NNodes``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import Loader, TraceSource, register
from masnaa.sim.loaders.fields import bounded, count, instant, read_text, slurm_duration, zone
from masnaa.sim.trace import Trace, TraceBuilder

DEFAULT_ORDER = (
    "JobID", "Submit", "Start", "End", "Elapsed", "AllocTRES", "Account", "Timelimit", "State",
)
_NOT_A_TIME = {"", "unknown", "none", "n/a"}
_UNFINISHED = frozenset({
    "RUNNING", "PENDING", "REQUEUED", "SUSPENDED", "RESIZING", "CONFIGURING",
    "COMPLETING", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED",
    "RESV_DEL_HOLD",
})
"""Slurm's job states of a job that has not ended (``CANCELLED by 0``: the first word)."""
_HET_COMPONENT = re.compile(r"^(\d+)\+(\d+)$")
_ARRAY_RANGE = re.compile(r"^\d+_\[([^\]]*)\]$")


def parse_tres(value: str, line: int) -> tuple[int, str | None, int]:
    """``(gpus, gpu_type or None, nodes)`` from a TRES string like
    ``billing=8,cpu=64,gres/gpu:h100=8,gres/gpu=8,mem=512G,node=1``."""
    gpus_any: int | None = None
    typed: dict[str, int] = {}
    nodes = 0
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep:
            raise TraceError("malformed-line", f"TRES entry {item!r} has no '='", line)
        if key == "gres/gpu":
            gpus_any = count("gres/gpu", raw, line)
        elif key.startswith("gres/gpu:"):
            typed[key.split(":", 1)[1]] = count(key, raw, line)
        elif key == "node":
            nodes = count("node", raw, line)
    gpus = gpus_any if gpus_any is not None else sum(typed.values())
    gpu_type = max(typed, key=lambda k: typed[k]) if typed else None
    return gpus, gpu_type, nodes


@dataclass(slots=True)
class _Row:
    """One job line, parsed: what ``_add`` needs to replay or count it."""

    job_id: str
    submit: float
    start: float | None
    elapsed: float | None
    gpus: int
    gpu_type: str | None
    nodes: int
    limit: float | None
    account: str
    unfinished: bool


def array_size(job_id: str) -> int:
    """Jobs one line stands for: a pending array range ``105_[3-5]`` (or
    ``105_[1,4-6%2]``, ``%`` a throttle) is one line for each of its tasks; any
    other line, one job."""
    m = _ARRAY_RANGE.match(job_id)
    if m is None:
        return 1
    total = 0
    for part in m.group(1).split("%", 1)[0].split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return 1
        total += int(hi) - int(lo) + 1 if hi else 1
    return max(1, total)


def load(source: TraceSource) -> Trace:
    assert source.path is not None
    tz = zone(source.timezone)
    b = TraceBuilder(source.path.stem)
    lines = read_text(source.path).splitlines()
    start_line = 1
    columns: tuple[str, ...] = DEFAULT_ORDER
    # Slurm's header names its columns in the order --format asked for them.
    first = tuple(c.strip() for c in lines[0].split("|")) if lines else ()
    if "JobID" in first or "JobIDRaw" in first:
        columns = tuple("JobID" if c == "JobIDRaw" and "JobID" not in first else c
                        for c in first)
        start_line = 2
    col = {name: i for i, name in enumerate(columns)}
    tres_col = "AllocTRES" if "AllocTRES" in col else "ReqTRES"
    need = ["JobID", "Submit", "Account", tres_col]
    missing = [c for c in need if c not in col]
    if "Elapsed" not in col and not ("Start" in col and "End" in col):
        missing.append("Elapsed (or Start and End)")
    if missing:
        raise TraceError(
            "bad-header",
            f"sacct output lacks {', '.join(missing)}; run sacct --parsable2 --format "
            + ",".join(DEFAULT_ORDER),
            1,
        )

    het: dict[str, list[_Row]] = {}  # components of heterogeneous jobs, by their job
    for line, text in enumerate(lines[start_line - 1:], start=start_line):
        if not text.strip():
            continue
        row = text.split("|")

        def get(name: str, row: list[str] = row) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        def when(name: str, line: int = line) -> float:
            return instant(name, get(name).replace("T", " "), line, tz)

        try:
            if len(row) != len(columns):
                raise TraceError(
                    "malformed-line",
                    f"expected {len(columns)} '|'-separated fields "
                    f"({'|'.join(columns)}), got {len(row)}",
                    line,
                )
            job_id = get("JobID")
            if not job_id:
                raise TraceError("malformed-line", "JobID is empty", line)
            if "." in job_id:
                b.ignore("job-step")
                continue
            submit = when("Submit")
            elapsed = slurm_duration("Elapsed", get("Elapsed"), line) if "Elapsed" in col else None
            start: float | None = None
            if get("Start").lower() not in _NOT_A_TIME:
                start = when("Start")
            if elapsed is None and start is not None:
                end_raw = get("End")
                if end_raw.lower() not in _NOT_A_TIME:
                    elapsed = bounded("End − Start", f"{end_raw} − {get('Start')}",
                                      when("End") - start, line)
            if "AllocTRES" in col and not get("AllocTRES"):
                # Never allocated: Slurm gives a job cancelled while pending its cancel
                # time as Start, with Elapsed 0; it never ran.
                start = None
            tres = get(tres_col) or get("ReqTRES")
            gpus, gpu_type, nodes = parse_tres(tres, line)
            if "NNodes" in col and get("NNodes"):
                nodes = count("NNodes", get("NNodes"), line)
            limit = (
                slurm_duration("Timelimit", get("Timelimit"), line)
                if "Timelimit" in col else None
            )
            account = get("Account")
            if not account:
                raise TraceError("malformed-line", "Account (the tenant) is empty", line)
        except TraceError as e:
            if not source.lenient:
                raise
            b.skip(line, e.detail)
            continue
        state = get("State").split(" ", 1)[0].upper()
        has_end = get("End").lower() not in _NOT_A_TIME if "End" in col else True
        parsed = _Row(job_id, submit, start, elapsed, gpus, gpu_type, nodes, limit, account,
                      state in _UNFINISHED or (start is not None and not has_end))
        m = _HET_COMPONENT.match(job_id)
        if m is not None:
            het.setdefault(m.group(1), []).append(parsed)
        else:
            _add(b, parsed, array_size(job_id))
    for job_id, parts in het.items():
        _add_het(b, job_id, parts)
    return b.build()


def _add(b: TraceBuilder, r: _Row, jobs: int = 1) -> None:
    """Replay the job of ``r`` (``jobs`` > 1: an array range, only ever counted), or
    count it under ``ignored`` by why it is not replayed."""
    if r.unfinished:
        b.ignore("unfinished", jobs)
    elif r.elapsed is None or r.elapsed <= 0:
        b.ignore("never-started" if r.start is None else "no-runtime", jobs)
    elif r.gpus == 0:
        b.ignore("cpu-only", jobs)
    else:
        # A Start before Submit is no start of this submission (a file printed in
        # another zone than --timezone, or a clock change): the job is replayed from
        # its Elapsed, its recorded start is unknown, and the report counts it.
        started = r.start
        if started is not None and started < r.submit:
            b.note("start-before-submit")
            started = None
        b.add(
            submit=r.submit,
            runtime=r.elapsed,
            gpus=r.gpus,
            tenant=r.account,
            time_limit=r.limit if r.limit is not None and r.limit > 0 else None,
            gpu_type=r.gpu_type,
            tasks=r.nodes,
            job_id=r.job_id,
            started=started,
        )


def _add_het(b: TraceBuilder, job_id: str, parts: list[_Row]) -> None:
    """A heterogeneous job (``108+0``, ``108+1``, …): Slurm starts its components
    together, so the twin replays them as one gang where a gang can express them
    (every GPU component has the same GPUs per node, GPU type and account): Σ GPUs on
    Σ nodes, the longest Elapsed, the earliest Submit and Start. Components without
    GPUs add nothing to the gang. A het job a gang cannot express (different GPUs per
    node, types or accounts) is counted under ``ignored["het-job-mixed"]``."""
    unfinished = any(r.unfinished for r in parts)
    gpu_parts = [r for r in parts if r.gpus > 0]
    if not gpu_parts:  # counted as its first component is: unfinished, never started, CPUs
        _add(b, dataclasses.replace(parts[0], job_id=job_id, unfinished=unfinished))
        return
    shapes = {(r.gpus // r.nodes if r.nodes and r.gpus % r.nodes == 0 else r.gpus,
               r.gpu_type, r.account) for r in gpu_parts}
    if len(shapes) > 1:
        b.ignore("het-job-mixed")
        return
    per_node = next(iter(shapes))[0]
    starts = [r.start for r in gpu_parts if r.start is not None]
    elapsed = [r.elapsed for r in gpu_parts if r.elapsed is not None]
    limits = [r.limit for r in gpu_parts if r.limit is not None]
    gpus = sum(r.gpus for r in gpu_parts)
    _add(b, _Row(
        job_id=job_id, submit=min(r.submit for r in gpu_parts),
        start=min(starts) if starts else None, elapsed=max(elapsed) if elapsed else None,
        gpus=gpus, gpu_type=gpu_parts[0].gpu_type, nodes=gpus // per_node,
        limit=max(limits) if limits else None, account=gpu_parts[0].account,
        unfinished=unfinished,
    ))


register(Loader("sacct", "Slurm history: sacct --parsable2 output (JobID|Submit|...|AllocTRES|...)",
                load, zoned=True))
