"""The ``csv`` loader: a documented generic CSV any operator can write.

Header row required; columns in any order, names exact:

- ``submit_time`` (required): seconds, or an ISO 8601 date-time (one without a
  zone is read in ``TraceSource.timezone``, ``--timezone``, default UTC);
- ``runtime`` (required): seconds the job ran (> 0, at most 10 years:
  ``fields.MAX_DURATION``);
- ``gpus`` (required): GPUs of the whole job (≥ 1; rows with 0 are counted as
  CPU-only and ignored);
- ``tenant`` (required): who submitted it;
- ``time_limit`` (optional): seconds the user asked for; empty means none
  (the twin then derives an estimate). A job whose runtime exceeds its limit
  is killed at the limit, as a real cluster would;
- ``gpu_type`` (optional): the GPU type it ran on or asked for;
- ``nodes`` (optional): how many nodes (tasks) the gang spans; it must divide
  ``gpus`` (a gang has the same GPUs on each node);
- ``job_id`` (optional): shown in reports;
- ``sites`` (optional): ``;``-separated sites the job may run at;
- ``start_time`` (optional): when the job started on the cluster the trace
  comes from (seconds or ISO 8601, like ``submit_time``; not before it). Empty
  means unknown. Where given, the report sets that recorded schedule beside the
  replays (``sim.recorded``).
"""

from __future__ import annotations

import csv
import io

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import Loader, TraceSource, register
from masnaa.sim.loaders.fields import count, duration, instant, read_text, zone
from masnaa.sim.trace import Trace, TraceBuilder

REQUIRED = ("submit_time", "runtime", "gpus", "tenant")
OPTIONAL = ("time_limit", "gpu_type", "nodes", "job_id", "sites", "start_time")


def load(source: TraceSource) -> Trace:
    assert source.path is not None
    tz = zone(source.timezone)
    b = TraceBuilder(source.path.stem)
    with io.StringIO(read_text(source.path), newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if missing or unknown:
            raise TraceError(
                "bad-header",
                f"CSV header must name {', '.join(REQUIRED)} and optionally "
                f"{', '.join(OPTIONAL)}; missing {missing or 'none'}, unknown {unknown or 'none'}",
                1,
            )
        col = {name: i for i, name in enumerate(header)}

        def get(row: list[str], name: str) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None else ""

        # A quoted field may span lines: a record is numbered by the line it starts on.
        ended = reader.line_num
        for row in reader:
            line, ended = ended + 1, reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            try:
                if len(row) != len(header):
                    raise TraceError(
                        "malformed-line", f"expected {len(header)} fields, got {len(row)}", line
                    )
                submit = instant("submit_time", get(row, "submit_time"), line, tz)
                runtime = duration("runtime", get(row, "runtime"), line)
                gpus = count("gpus", get(row, "gpus"), line)
                tenant = get(row, "tenant")
                if not tenant:
                    raise TraceError("malformed-line", "tenant is empty", line)
                raw_limit = get(row, "time_limit")
                limit = duration("time_limit", raw_limit, line) if raw_limit else None
                raw_nodes = get(row, "nodes")
                nodes = count("nodes", raw_nodes, line) if raw_nodes else 0
                if nodes and gpus % nodes:
                    raise TraceError(
                        "malformed-line", f"{gpus} GPUs do not divide over {nodes} nodes: a "
                        "gang is nodes × the same GPUs on each", line,
                    )
                sites = [s.strip() for s in get(row, "sites").split(";") if s.strip()]
                raw_start = get(row, "start_time")
                started = instant("start_time", raw_start, line, tz) if raw_start else None
                if started is not None and started < submit:
                    raise TraceError(
                        "malformed-line",
                        f"start_time {raw_start!r} is before submit_time "
                        f"{get(row, 'submit_time')!r}; a job starts after it is submitted",
                        line,
                    )
            except TraceError as e:
                if not source.lenient:
                    raise
                b.skip(line, e.detail)
                continue
            if gpus == 0:
                b.ignore("cpu-only")
                continue
            b.add(
                submit=submit,
                runtime=runtime,
                gpus=gpus,
                tenant=tenant,
                time_limit=limit,
                gpu_type=get(row, "gpu_type") or None,
                tasks=nodes,
                job_id=get(row, "job_id") or f"line-{line}",
                sites=sites or None,
                started=started,
            )
    return b.build()


register(Loader("csv", "generic CSV: submit_time,runtime,gpus,tenant[,time_limit,gpu_type,...]",
                load, zoned=True))
