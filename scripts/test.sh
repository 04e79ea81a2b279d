#!/usr/bin/env bash
# Set up everything Masnaa's test suite needs on a fresh Debian 12 machine and run it.
#
#   bash scripts/test.sh            # the whole suite: lint, types, unit, PostgreSQL, Slurm, browser
#   bash scripts/test.sh -k sim     # extra arguments go to pytest
#
# With no arguments it then builds the mypyc-compiled core
# (scripts/build-compiled.sh) and runs the scheduler, twin and service suites on it,
# including a Philly replay compared with the interpreted core's to the digit.
# MASNAA_SKIP_COMPILED=1 skips that step.
#
# It installs Debian packages (as root, or with sudo), creates .venv, installs
# Masnaa with its test extra, starts PostgreSQL on loopback (scripts/pg-up.sh)
# and a one-node Slurm with fake GPUs and slurmdbd accounting (scripts/slurm-up.sh),
# then runs ruff, mypy and pytest. Set MASNAA_SKIP_SYSTEM=1 to skip the Debian/Slurm/PostgreSQL
# part (those tests are then skipped, with the reason printed).
#
# pytest runs on as many workers as the machine has cores, up to 4 (pytest-xdist, a
# test file per worker at a time; tests of the one local Slurm take turns, see
# tests/slurm/conftest.py). MASNAA_TEST_WORKERS=N sets the count; 0 runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

if [ "${MASNAA_SKIP_SYSTEM:-0}" != 1 ]; then
    step "Debian packages"
    APT_PKGS=(postgresql slurm-wlm munge slurmdbd mariadb-server chromium fonts-dejavu-core gcc python3-dev)
    missing=()
    for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
fi

step "Python environment"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

if [ "${MASNAA_SKIP_SYSTEM:-0}" != 1 ]; then
    step "PostgreSQL"
    MASNAA_TEST_POSTGRES_URL=$(bash scripts/pg-up.sh | tail -1)
    export MASNAA_TEST_POSTGRES_URL
    echo "$MASNAA_TEST_POSTGRES_URL"
    step "Slurm"
    if [ -f scripts/slurm-up.sh ]; then bash scripts/slurm-up.sh; fi
    if [ -x /usr/bin/chromium ]; then export MASNAA_TEST_CHROMIUM=/usr/bin/chromium; fi
fi

step "ruff"
.venv/bin/ruff check src tests benchmarks setup.py
step "mypy (pure core)"
.venv/bin/mypy
step "pytest"
mkdir -p "$ROOT/test-artifacts"
cores=$(nproc 2>/dev/null || echo 1)
WORKERS=${MASNAA_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
PARALLEL=(-n "$WORKERS" --dist loadfile)
[ "$WORKERS" -gt 1 ] || PARALLEL=(-n 0)
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" "$@"
rc=$?
if [ $# -eq 0 ] && [ "${MASNAA_SKIP_COMPILED:-0}" != 1 ]; then
    step "compiled core (mypyc)"
    bash scripts/build-compiled.sh build/compiled || rc=1
    MASNAA_EXPECT_COMPILED=1 PYTHONPATH="$ROOT/build/compiled/site" \
        .venv/bin/python -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" \
        tests/scheduler tests/sim tests/service || rc=1
fi
set -e
step "done"
exit $rc
