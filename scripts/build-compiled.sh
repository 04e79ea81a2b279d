#!/usr/bin/env bash
# Build Masnaa with its pure core (masnaa.domain, masnaa.scheduler) and the twin's
# event loop (masnaa.sim.engine, fit, holdings, limits) compiled by mypyc.
#
#   bash scripts/build-compiled.sh [OUT]        # OUT defaults to build/compiled
#
# Leaves OUT/dist/masnaa-*.whl, a wheel an operator installs with pip like any
# other, and OUT/site, the same wheel unpacked, so that
#
#   PYTHONPATH=build/compiled/site .venv/bin/masnaa sim ...
#
# runs the compiled core with .venv's dependencies, next to the interpreted one.
# OUT/site is a snapshot of the sources: build again after changing them.
# Needs .venv (either README command), a C compiler and the Python headers
# (Debian: gcc, python3-dev; scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/compiled}
[ -x .venv/bin/python ] || { echo "no .venv: run one of the README's two commands first" >&2; exit 2; }
include=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v cc >/dev/null || [ ! -f "$include/Python.h" ]; then
    echo "a C compiler (cc) and the Python headers ($include/Python.h) are needed;" \
        "on Debian: apt-get install gcc python3-dev" >&2
    exit 2
fi
# mypyc ships with mypy; the build runs without isolation so that it uses these.
.venv/bin/python -m pip install -q "setuptools>=77" wheel "mypy>=1.11,<3"
rm -rf "$OUT"
mkdir -p "$OUT/dist"
# setuptools packs whatever build/lib.* holds into the wheel: start it empty, so that no
# module of an earlier build (or a deleted source) comes along. mypyc's C files and the
# compiler's objects (build/temp.*) are kept and reused when their sources are unchanged.
rm -rf build/lib.* build/bdist.*
MASNAA_USE_MYPYC=1 .venv/bin/python -m pip wheel -v --no-deps --no-build-isolation \
    -w "$OUT/dist" . >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log" >&2; exit 1; }
# mypyc builds a generator expression's whole list, which undoes an early stop in a hot
# path (docs/twin.md): the core keeps none, and a new one fails the build.
if grep "Treating generator comprehension as list" "$OUT/build.log" >&2; then
    echo "write these as generator functions (def ... yield) to keep them lazy" >&2
    exit 1
fi
wheel=$(ls "$OUT"/dist/masnaa-*.whl)
.venv/bin/python -m zipfile -e "$wheel" "$OUT/site"
echo "$wheel"
echo "PYTHONPATH=$OUT/site"
