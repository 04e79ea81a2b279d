"""``masnaa loop`` as its own process: one line, not a traceback, for a database it
cannot use; its own metrics on a port of its own when asked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from masnaa.store.db import upgrade

DAEMON = [sys.executable, "-m", "masnaa.service.daemon"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
    env["MASNAA_HOME"] = str(home)
    return env


def test_a_database_without_the_schema_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    done = subprocess.run([*DAEMON, "--db", url, "--home", str(tmp_path), "--no-migrate"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) <= 3, done.stderr  # and the start-up line
    assert "cannot use the database" in errors[0] and "--migrate" in errors[0]


def test_the_loop_serves_its_metrics_when_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    upgrade(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*DAEMON, "--db", url, "--home", str(tmp_path), "--tick", "0.1",
                             "--metrics-port", str(port)], env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                text = ""
            passes = [line for line in text.splitlines()
                      if line.startswith("masnaa_pass_seconds_count")]
            if passes and float(passes[0].split()[-1]) >= 3:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
