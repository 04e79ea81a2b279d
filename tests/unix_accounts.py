"""Throwaway Unix accounts for tests of jobs that run as a tenant's account (importable
from any test directory, as ``unix_accounts``).

Creating accounts needs root and ``useradd``: without them the tests that use these
accounts are skipped, with the reason. The accounts are system accounts without a
home directory, named ``mt-<random>-<n>``, and are deleted afterwards whatever
happened to the test.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def skip_unless_root() -> None:
    """Skip the calling test where accounts cannot be made or switched to."""
    if os.geteuid() != 0:
        pytest.skip("jobs switch Unix accounts only when the control plane runs as root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed: no throwaway accounts can be made")


@contextmanager
def throwaway_accounts(count: int) -> Iterator[list[pwd.struct_passwd]]:
    """``count`` fresh system accounts (each with its own group); deleted on exit."""
    skip_unless_root()
    stem = f"mt-{secrets.token_hex(3)}"
    made: list[str] = []
    try:
        for n in range(count):
            name = f"{stem}-{n}"
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
                check=True, capture_output=True,
            )
            made.append(name)
        yield [pwd.getpwnam(name) for name in made]
    finally:
        for name in made:
            subprocess.run(["userdel", "--force", name], check=False, capture_output=True)
