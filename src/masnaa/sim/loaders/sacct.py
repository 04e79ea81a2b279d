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
- jobs that never ran (no start, zero elapsed) go to ``ignored["never-started"]``;
- jobs still running, pending, suspended or requeued when sacct ran (their
  ``State``, or an ``End`` of ``Unknown``) go to ``ignored["unfinished"]``: their
  ``Elapsed`` is the time so far, not a runtime, and replaying it would shorten them;
- jobs without GPUs go to ``ignored["cpu-only"]``.
``Start`` is kept as the job's recorded start (``Trace.started``), so a report can
set what the site's own Slurm did beside the replays; a ``Start`` before ``Submit``
counts as unknown.
GPUs come from the TRES string (``gres/gpu=8`` or ``gres/gpu:h100=8``; the
typed entry also gives the GPU type); nodes from ``node=N`` or ``NNodes``.
"""

from __future__ import annotations

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import Loader, TraceSource, register
from masnaa.sim.loaders.fields import bounded, count, instant, read_text, slurm_duration
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


def load(source: TraceSource) -> Trace:
    assert source.path is not None
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

    for line, text in enumerate(lines[start_line - 1:], start=start_line):
        if not text.strip():
            continue
        row = text.split("|")

        def get(name: str, row: list[str] = row) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

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
            submit = instant("Submit", get("Submit").replace("T", " "), line)
            elapsed = slurm_duration("Elapsed", get("Elapsed"), line) if "Elapsed" in col else None
            start: float | None = None
            if get("Start").lower() not in _NOT_A_TIME:
                start = instant("Start", get("Start").replace("T", " "), line)
            if elapsed is None and start is not None:
                end_raw = get("End")
                if end_raw.lower() not in _NOT_A_TIME:
                    end = instant("End", end_raw.replace("T", " "), line)
                    elapsed = bounded("End − Start", f"{end_raw} − {get('Start')}", end - start,
                                      line)
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
        if state in _UNFINISHED or (start is not None and not has_end):
            b.ignore("unfinished")
            continue
        if elapsed is None or elapsed <= 0:
            b.ignore("never-started")
            continue
        if gpus == 0:
            b.ignore("cpu-only")
            continue
        b.add(
            submit=submit,
            runtime=elapsed,
            gpus=gpus,
            tenant=account,
            time_limit=limit if limit is not None and limit > 0 else None,
            gpu_type=gpu_type,
            tasks=nodes,
            job_id=job_id,
            # A Start before Submit is no start of this submission: taken as unknown
            # rather than trusted (the job is still replayed from its Elapsed).
            started=start if start is not None and start >= submit else None,
        )
    return b.build()


register(Loader("sacct", "Slurm history: sacct --parsable2 output (JobID|Submit|...|AllocTRES|...)",
                load))
