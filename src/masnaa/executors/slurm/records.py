"""The durable records of each attempt: one directory per (job, attempt).

Owns the layout of ``<state_dir>/runs/<job>/<attempt>/`` and the claim that
makes submission idempotent across processes:

``claim``         written by ``os.mkdir`` of the directory: exactly one caller wins;
                  holds the claim time. An attempt whose directory exists was claimed.
``job.sh``        the batch script submitted.
``submitting``    present while ``sbatch`` is in flight or after it got no answer
                  (for people: ``start`` decides from ``slurm_job_id`` alone).
``slurm_job_id``  written after ``sbatch`` answers, and again by the batch script.
``started_at``    the batch script, when it begins (UNIX seconds).
``exit``          the batch script, at the end: ``<status> <reason> <ended_at>``.
``stop``          ``stop()``: ``<grace> <deadline> <reason words…>``; the batch script
                  reads the grace from it.
``signalled``     the stop's ``scancel --signal=TERM`` reached Slurm (the ``stop`` record
                  is the intent, written first; without this file it is sent again,
                  and ``stop``'s grace is rewritten to what remains before its deadline).
``cancelled``     ``scancel`` was sent after the stop deadline (hard stop done).
``lost``          the executor decided this attempt is lost: ``<reason words…>``.
                  Final: a lost attempt is never reported otherwise afterwards.

Every file is written whole (temporary file + rename), so a reader sees
either nothing or all of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def job_dir_name(job_id: str) -> str:
    safe = _SAFE.sub("_", job_id)
    if safe != job_id or safe in (".", ".."):
        safe = f"{safe}-{hashlib.sha1(job_id.encode()).hexdigest()[:8]}"
    return safe


@dataclass(frozen=True, slots=True)
class ExitRecord:
    status: int
    reason: str
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class StopRecord:
    grace: float
    deadline: float
    reason: str


class RunRecords:
    """Reads and writes one attempt's directory.

    The directory is listed once, on the first read, and only files present
    are opened: a reconciliation pass reads ten thousand of these. An object
    therefore sees the records as they were at that first read (plus its own
    writes); make a new one to look again.
    """

    def __init__(self, state_dir: Path, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.dir = state_dir / "runs" / job_dir_name(job_id) / str(attempt)
        self._path = str(self.dir)
        self._names: set[str] | None = None

    def _listing(self) -> set[str]:
        if self._names is None:
            try:
                self._names = set(os.listdir(self._path))
            except FileNotFoundError:
                self._names = set()
        return self._names

    def reread(self) -> RunRecords:
        """Forget the listing: the next read looks at the directory again."""
        self._names = None
        return self

    # claiming ------------------------------------------------------------------
    def claim(self, now: float | None = None) -> bool:
        """True when this call claimed the attempt; False when it was claimed before."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(self._path)
        except FileExistsError:
            self._names = None
            return False
        self._names = set()
        self.put("claim", f"{time.time() if now is None else now:.3f}")
        return True

    @property
    def claimed(self) -> bool:
        return bool(self._listing()) or os.path.isdir(self._path)

    def claimed_at(self) -> float | None:
        text = self.get("claim")
        if text is None:  # claimed but the claim time not yet written: use the directory's
            return self.mtime("")
        return _float(text)

    # plain files -------------------------------------------------------------
    def put(self, name: str, text: str) -> None:
        tmp = os.path.join(self._path, f".{name}.{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, os.path.join(self._path, name))
        if self._names is not None:
            self._names.add(name)

    def get(self, name: str) -> str | None:
        if name not in self._listing():
            return None
        try:
            with open(os.path.join(self._path, name)) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    def mtime(self, name: str) -> float | None:
        try:
            return os.stat(os.path.join(self._path, name) if name else self._path).st_mtime
        except FileNotFoundError:
            return None

    def has(self, name: str) -> bool:
        return name in self._listing()

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._path, name))
        if self._names is not None:
            self._names.discard(name)

    # typed records -----------------------------------------------------------
    def slurm_job_id(self) -> int | None:
        text = self.get("slurm_job_id")
        return int(text) if text and text.isdigit() else None

    def started_at(self) -> float | None:
        return _float(self.get("started_at"))

    def exit(self) -> ExitRecord | None:
        text = self.get("exit")
        if not text:
            return None
        parts = text.split()
        try:
            status = int(parts[0])
        except (ValueError, IndexError):
            return None
        reason = parts[1] if len(parts) > 1 else "exited"
        return ExitRecord(status, reason, _float(parts[2]) if len(parts) > 2 else None)

    def stop(self) -> StopRecord | None:
        text = self.get("stop")
        if not text:
            return None
        grace, deadline, *reason = text.split(maxsplit=2)
        return StopRecord(float(grace), float(deadline), reason[0] if reason else "")

    def write_stop(self, grace: float, now: float, reason: str) -> None:
        words = " ".join(reason.split()) or "stopped"
        self.put("stop", f"{grace:g} {now + grace:.3f} {words}")

    def lost(self) -> str | None:
        return self.get("lost")


def _float(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None
