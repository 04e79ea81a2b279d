"""The ``philly`` loader: Microsoft's Philly trace (2017), shipped with Masnaa.

Reads the bundled ``masnaa/data/traces/philly.csv.gz`` (see its README for
the source), or a file of the same format given with ``--file``. Columns:
``timestamp,duration,num_gpus,gpu_time,cluster``. Each of the 15 virtual
clusters is a tenant. Rows are not sorted in the file; the trace is. The file
has no requested time limit, so every job's limit is NaN and the twin derives
a planning estimate (``masnaa.sim.limits``).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from importlib import resources
from typing import TextIO

from masnaa.sim.errors import TraceError
from masnaa.sim.loaders import Loader, TraceSource, register
from masnaa.sim.loaders.fields import count, decode, duration, read_text
from masnaa.sim.trace import Trace, TraceBuilder

COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")


def _open(source: TraceSource) -> TextIO:
    if source.path is not None:
        return io.StringIO(read_text(source.path))
    bundled = resources.files("masnaa").joinpath("data/traces/philly.csv.gz")
    return io.StringIO(decode(bundled.read_bytes(), "philly.csv.gz"))


def load(source: TraceSource) -> Trace:
    b = TraceBuilder("philly")
    with _open(source) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise TraceError(
                "bad-header",
                f"a Philly trace starts with the header {','.join(COLUMNS)}; got {header!r}",
                1,
            )
        for line, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                if len(row) != len(COLUMNS):
                    raise TraceError(
                        "malformed-line",
                        f"expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), got {len(row)}",
                        line,
                    )
                try:
                    ts = datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp()
                except ValueError:
                    raise TraceError(
                        "malformed-line",
                        f"timestamp {row[0]!r} is not a date-time like 2017-10-09 07:01:55",
                        line,
                    ) from None
                runtime = duration("duration", row[1], line)
                gpus = count("num_gpus", row[2], line)
                if gpus == 0:
                    raise TraceError("malformed-line", "num_gpus must be ≥ 1, got 0", line)
                tenant = row[4].strip()
                if not tenant:
                    raise TraceError("malformed-line", "cluster (the tenant) is empty", line)
            except TraceError as e:
                if not source.lenient:
                    raise
                b.skip(line, e.detail)
                continue
            b.add(submit=ts, runtime=runtime, gpus=gpus, tenant=tenant, job_id=f"philly-{line}")
    trace = b.build()
    return trace


register(Loader("philly", "Microsoft Philly 2017 (bundled; 82,247 jobs, 15 tenants)", load,
                needs_file=False))
