"""Build hook for an optionally compiled pure core.

``pip install .`` (and ``-e .``) installs Masnaa as plain Python. With
``MASNAA_USE_MYPYC=1`` the pure core (``masnaa.domain`` and ``masnaa.scheduler``,
which mypy already checks strictly) and the twin's event loop that drives it
(``TWIN``) are compiled to C extensions with mypyc, the way mypy and black ship
themselves; every other module stays Python. The build
then needs mypy, a C compiler and the Python headers, so run it without build
isolation (``scripts/build-compiled.sh`` does)::

    MASNAA_USE_MYPYC=1 pip wheel --no-deps --no-build-isolation -w dist .

The compiled core makes the same decisions as the interpreted one (CI replays
Philly with both and runs the scheduler, twin and service suites on it); docs/twin.md
gives the speed.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

COMPILED = ("src/masnaa/domain", "src/masnaa/scheduler")
TWIN = (
    "src/masnaa/sim/engine.py", "src/masnaa/sim/fit.py", "src/masnaa/sim/holdings.py",
    "src/masnaa/sim/limits.py",
)


def _core_modules() -> list[str]:
    return sorted([str(p) for d in COMPILED for p in Path(d).glob("*.py")] + list(TWIN))


ext_modules = []
if os.environ.get("MASNAA_USE_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(_core_modules(), opt_level="3")

setup(ext_modules=ext_modules)
