"""The transport to a Slurm controller: its command-line tools, machine-readable output.

Owns every subprocess call to ``sbatch``, ``squeue``, ``sinfo``, ``scancel``,
``scontrol`` and ``sacct``. Each call has a timeout; nothing here retries.

Also ``await_orphan_sbatch``: whether an ``sbatch`` of an attempt is still in
flight on this host (read from ``/proc``), so it is not submitted twice.

Errors, the only two a caller needs to tell apart:

- ``SiteUnreachable`` (an ``ExecutorUnavailable``: "retry on a later pass"):
  the controller did not answer, the tool timed out or is missing, or the JSON
  it printed carries Slurm's own ``errors`` (``squeue --json`` exits 0 with an
  empty job list and an error entry when slurmctld is down: trusting the exit
  status would read "no jobs" and lose them all);
- ``SlurmRejected`` (a ``LaunchRejected``): the controller answered and refused
  the request itself (bad partition, unknown node, invalid option).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from masnaa.executors.base import ExecutorUnavailable, LaunchRejected

# Words Slurm's clients print when the controller, not the request, is at fault.
_UNREACHABLE_MARKERS = (
    "unable to contact slurm controller",
    "connect failure",
    "connection refused",
    "socket timed out",
    "slurm_receive_msg",
    "communication connection failure",
    "zero bytes were transmitted",
    "slurmctld(primary)",
    "temporarily unable to accept job",
    "unspecified error",
    "failed while looking for",
    "unable to establish",
)


class SiteUnreachable(ExecutorUnavailable):
    """The site's Slurm controller cannot be reached now; nothing was decided by it."""


class SlurmRejected(LaunchRejected):
    """Slurm answered and refused the request; retrying the same request will not help."""


@dataclass(frozen=True, slots=True)
class Completed:
    stdout: str
    stderr: str


class SlurmCommands:
    """Runs Slurm's client tools with a timeout.

    ``bin_dir`` (optional) is where the tools live; ``env`` adds variables such
    as ``SLURM_CONF`` for a site whose configuration is not in the default place.
    """

    def __init__(
        self,
        *,
        bin_dir: str | None = None,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.timeout = timeout
        self._env = {**os.environ, **(env or {})}
        # Slurm's tools read SLURM_*/SBATCH_* variables as options; a Masnaa
        # process started from inside a Slurm job must not pass its own on.
        for key in list(self._env):
            if key.startswith(("SBATCH_", "SQUEUE_", "SINFO_", "SCANCEL_")) or key in (
                "SLURM_JOB_ID",
                "SLURM_JOBID",
            ):
                del self._env[key]

    def _tool(self, name: str) -> str:
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def run(self, tool: str, args: Sequence[str], *, stdin: str | None = None) -> Completed:
        argv = [self._tool(tool), *args]
        try:
            proc = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SiteUnreachable(
                f"{tool} did not answer within {self.timeout:g}s: the Slurm controller is "
                "unreachable or overloaded"
            ) from exc
        except FileNotFoundError as exc:
            raise SiteUnreachable(
                f"{tool} is not installed here (looked for {argv[0]!r}); install Slurm's "
                "client tools or set bin_dir in the site's Slurm configuration"
            ) from exc
        if proc.returncode != 0:
            message = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
            if _looks_unreachable(message):
                raise SiteUnreachable(f"{tool}: {message}")
            raise SlurmRejected(f"{tool} {' '.join(args[:1])}…: {message}")
        return Completed(proc.stdout, proc.stderr)

    def run_json(self, tool: str, args: Sequence[str]) -> dict[str, Any]:
        out = self.run(tool, [*args, "--json"]).stdout
        try:
            data = json.loads(out)
        except json.JSONDecodeError as exc:
            raise SiteUnreachable(
                f"{tool} --json printed something that is not JSON: {exc}"
            ) from exc
        errors = data.get("errors") or []
        if errors:
            text = "; ".join(
                f"{e.get('source', '?')}: {e.get('description') or e.get('error')}" for e in errors
            )
            raise SiteUnreachable(f"{tool} --json reported errors: {text}")
        if not isinstance(data, dict):
            raise SiteUnreachable(f"{tool} --json printed a {type(data).__name__}, not an object")
        return data

    # The calls the executor uses --------------------------------------------------

    def sbatch(self, args: Sequence[str], script: str) -> int:
        """Submit a batch script (on stdin); returns Slurm's job id."""
        out = self.run("sbatch", ["--parsable", *args], stdin=script).stdout.strip()
        head = out.split(";", 1)[0]  # "--parsable" prints "id" or "id;cluster"
        if not head.isdigit():
            raise SiteUnreachable(f"sbatch printed {out!r}, not a job id")
        return int(head)

    def squeue(self, extra: Sequence[str] = ()) -> dict[str, Any]:
        return self.run_json("squeue", list(extra))

    def squeue_text(self, fmt: str) -> str:
        """Every job slurmctld still holds (finished ones for ``MinJobAge``), one line each."""
        return self.run("squeue", ["--noheader", "--states=all", f"--format={fmt}"]).stdout

    def job_exit(self, slurm_id: int) -> str:
        return self.run("scontrol", ["--oneliner", "show", "job", str(slurm_id)]).stdout

    def sinfo(self) -> dict[str, Any]:
        return self.run_json("sinfo", [])

    def scancel(
        self, job_ids: Sequence[int], *, signal: str | None = None, batch: bool = False
    ) -> None:
        if not job_ids:
            return
        args: list[str] = []
        if signal:
            args.append(f"--signal={signal}")
        if batch:
            args.append("--batch")
        try:
            self.run("scancel", [*args, *map(str, job_ids)])
        except SlurmRejected as exc:
            # Cancelling a job Slurm already forgot or finished is what idempotent stop means.
            text = str(exc).lower()
            if (
                "invalid job id" in text
                or "already completing or completed" in text
                or ("job/step already" in text)
            ):
                return
            raise

    def cancelled_by(self, slurm_id: int) -> int | None:
        """The uid that cancelled this job, from accounting (``sacct``: ``CANCELLED by 0``);
        None when it was not cancelled or accounting cannot say. Never raises: it only
        names who did it."""
        try:
            out = self.run("sacct", ["-n", "-X", "-P", "-j", str(slurm_id), "-o", "State"])
        except (SiteUnreachable, SlurmRejected):
            return None
        for line in out.stdout.splitlines():
            words = line.split()
            if len(words) == 3 and words[:2] == ["CANCELLED", "by"] and words[2].isdigit():
                return int(words[2])
        return None

    def scontrol(self, args: Sequence[str]) -> str:
        return self.run("scontrol", list(args)).stdout


def _looks_unreachable(message: str) -> bool:
    low = message.lower()
    return any(marker in low for marker in _UNREACHABLE_MARKERS)


def await_orphan_sbatch(name: str, timeout: float) -> None:
    """Wait (at most ``timeout``) while an ``sbatch --job-name=<name>`` still runs here.

    Only this host's processes are visible, which is where the executor runs its
    ``sbatch``: a submission started by a previous incarnation of the executor on
    this host either reaches the controller or gives up within its own timeout.
    """
    needle = f"--job-name={name}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(needle in cmd and b"sbatch" in cmd for cmd in _command_lines()):
            return
        time.sleep(0.05)


def _command_lines() -> list[bytes]:
    """Every readable process command line on this host (``/proc``; empty elsewhere)."""
    lines = []
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    lines.append(f.read())
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return lines
