"""Trace loaders, registered by name: ``philly``, ``csv``, ``sacct``, ``synthetic``.

A loader turns a source (a file, or a seed) into a ``Trace``. Loaders are
plug-ins: each module registers itself in ``LOADERS`` with a one-line
description, and ``load_trace`` is the only entry point the CLI uses.

Contract of every file loader: a malformed line raises ``TraceError`` with its
line number and what a right value looks like; with ``lenient=True`` the line
is skipped and recorded in ``Trace.skipped`` instead. Well-formed rows that are
not GPU jobs to replay (CPU-only jobs, jobs that never started) are counted in
``Trace.ignored``, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from masnaa.sim.errors import TraceError
from masnaa.sim.trace import Trace

SYNTHETIC_GPUS = 1024
"""The cluster a synthetic trace is made for, and so its largest gang, unless told
otherwise (``masnaa sim --gpus``)."""


@dataclass(frozen=True, slots=True)
class TraceSource:
    """What a loader may be given. File loaders use ``path``; ``synthetic`` the rest."""

    path: Path | None = None
    lenient: bool = False
    seed: int = 0
    jobs: int = 10_000
    capacity_gpus: int = SYNTHETIC_GPUS
    """Synthetic: the cluster size the arrival rate is tuned for, and the largest gang."""
    target_load: float = 0.8
    """Synthetic: offered load on ``capacity_gpus`` the arrival rate aims at."""
    tenants: int = 12
    timezone: str = "UTC"
    """File loaders that read date-times (``csv``, ``sacct``): the IANA zone of those
    without one, i.e. the zone the file was written in (sacct prints local time)."""


@dataclass(frozen=True, slots=True)
class Loader:
    name: str
    description: str
    load: Callable[[TraceSource], Trace]
    needs_file: bool = True
    reads_file: bool = True
    """False for a generator: a file given to it would be silently ignored."""
    zoned: bool = False
    """True where the format has date-times without a zone, read in ``timezone``."""


LOADERS: dict[str, Loader] = {}


def register(loader: Loader) -> Loader:
    LOADERS[loader.name] = loader
    return loader


def load_trace(name: str, source: TraceSource) -> Trace:
    """Load the trace called ``name``; unknown names raise ``TraceError`` listing the valid ones."""
    loader = LOADERS.get(name)
    if loader is None:
        raise TraceError(
            "unknown-trace",
            f"unknown trace {name!r}; valid traces: {', '.join(sorted(LOADERS))}",
        )
    if loader.needs_file and source.path is None:
        raise TraceError(
            "trace-file-required", f"trace {name!r} reads a file: give it with --file PATH"
        )
    if source.path is not None and not loader.reads_file:
        raise TraceError(
            "bad-option", f"trace {name!r} reads no file; drop --file, or name a file trace "
            f"({', '.join(sorted(n for n, x in LOADERS.items() if x.reads_file))})"
        )
    if source.timezone != "UTC" and not loader.zoned:
        raise TraceError(
            "bad-option", f"trace {name!r} has no date-times without a zone; --timezone is for "
            f"{', '.join(sorted(n for n, x in LOADERS.items() if x.zoned))}"
        )
    if source.path is not None and not source.path.is_file():
        raise TraceError("trace-file-missing", f"no such trace file: {source.path}")
    return loader.load(source)


def _register_builtin() -> None:
    # Imported for their registration side effect, in a fixed order.
    from masnaa.sim.loaders import csvtrace, philly, sacct, synthetic  # noqa: F401


_register_builtin()
