"""Suite-wide hooks: which core the tests run against.

``scripts/test.sh`` runs the scheduler, twin and service suites a second time against the
mypyc-compiled core (``scripts/build-compiled.sh``). A compiled module calls its
own functions directly, so a test that replaces one of them with
``mock.patch``/``monkeypatch`` (to count calls, or to switch a fast path off)
would see nothing change; such tests carry ``interpreted_core`` and are skipped
there, with the reason printed.
"""

from __future__ import annotations

import os

import pytest

from masnaa.sim.build import core_build

# Rich reads COLUMNS when a console is made, and the CLI makes its consoles when it is
# imported, before ``CliRunner(env=...)`` sets anything: fix the width for the whole
# session, so that a table's columns never depend on which test imported the CLI first
# or on the terminal pytest runs in.
os.environ["COLUMNS"] = "200"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if core_build() == "python":
        return
    skip = pytest.mark.skip(reason="patches core functions; the compiled core does not see it")
    for item in items:
        if "interpreted_core" in item.keywords:
            item.add_marker(skip)
