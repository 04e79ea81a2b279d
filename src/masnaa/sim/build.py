"""Which build of the scheduler core this process runs (``core_build``).

A replay reports it next to its times, and the test suite reads it to skip the
tests that patch core functions on a compiled core (``tests/conftest.py``).
"""

from __future__ import annotations

from masnaa.scheduler import core as scheduler_core


def core_build() -> str:
    """How the scheduler core was built: ``"mypyc"`` (compiled, ``MASNAA_USE_MYPYC=1``)
    or ``"python"``. Decisions are the same either way; replay times are not."""
    return "python" if (scheduler_core.__file__ or "").endswith(".py") else "mypyc"
