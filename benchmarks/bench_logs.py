"""How fast ``masnaa logs`` reads a large output, by page size, side by side.

Starts ``masnaa up`` in a throw-away home on a free port, runs one job that writes
``--mb`` megabytes to stdout, then reads it with ``masnaa logs`` at each page size
in turn (``--rounds`` times, alternating, so that both see the same machine).

    .venv/bin/python benchmarks/bench_logs.py --mb 200 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PAGES = (64 * 1024, 1024 * 1024)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str, page: int | None = None) -> str:
    code = "import sys, masnaa.cli.jobs as j\n"
    if page is not None:
        code += f"j.LOG_CHUNK = {page}\n"
    code += "from masnaa.cli.main import app\nsys.argv = ['masnaa', *sys.argv[1:]]\napp()\n"
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          check=True)  # fmt: skip
    return done.stdout.decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, port = Path(tmp) / "home", _port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASNAA_")}
        env.update(MASNAA_HOME=str(home), MASNAA_VIRTUAL_GPUS="1x8")
        log = (Path(tmp) / "up.log").open("wb")
        up = subprocess.Popen([sys.executable, "-c", "from masnaa.cli.main import app; app()",
                               "up", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                assert up.poll() is None, "masnaa up stopped; see its log"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            line = "x" * 99
            job = _cli(env, "submit", "--", sys.executable, "-c",
                       f"import sys; sys.stdout.write(('{line}' + chr(10)) * {args.mb * 10_000})"
                       ).strip()  # fmt: skip
            while "succeeded" not in _cli(env, "show", job):
                time.sleep(0.5)
            for r in range(args.rounds):
                for page in PAGES:
                    began = time.perf_counter()
                    out = _cli(env, "logs", job, page=page)
                    took = time.perf_counter() - began
                    assert len(out) == args.mb * 1_000_000 and re.fullmatch(r"(x{99}\n)+", out)
                    print(f"round {r + 1}  page {page // 1024:>5} KiB  {args.mb} MB in "
                          f"{took:6.2f} s  ({args.mb / took:6.1f} MB/s)")
        finally:
            up.terminate()
            up.wait(timeout=30)


if __name__ == "__main__":
    main()
