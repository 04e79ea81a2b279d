"""Waiting for a ``masnaa up`` started by a benchmark, and reading its operator token."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx


def wait_for_up(base: str, up: subprocess.Popen[bytes], home: Path, seconds: float) -> str | None:
    """The operator's token once ``base`` answers ``/readyz``; ``None`` (with the service's
    log on stderr) if it exited or did not get ready within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if up.poll() is not None or time.monotonic() > deadline:
            print((home / "up.log").read_text(), file=sys.stderr)
            return None
        time.sleep(0.1)
    token = re.search(r'token = "([^"]+)"', (home / "credentials.toml").read_text())
    assert token is not None
    return token.group(1)
