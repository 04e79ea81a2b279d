"""The control loop's lease: one loop per database.

A lease row (``service_state['control-loop']``) names the holder (host, pid
and the process's start ticks, so a reused pid is not taken for it); the
loop takes it at start, heartbeats it at most once a second from its passes
and deletes it on a clean stop. A new loop takes it over when the holder's
heartbeat is older than ``lease_ttl`` or, on the same host, its process is
gone; a loop that finds its lease taken stops (``LeaseHeld``).
"""

from __future__ import annotations

import os
import socket

from sqlalchemy.orm import Session, sessionmaker

from masnaa.executors import records
from masnaa.store import models as m

LEASE_KEY = "control-loop"


class LeaseHeld(RuntimeError):
    """Another control loop is alive on this database."""


class LoopLease:
    """The lease of one control loop, held under this process's identity."""

    def __init__(self, write: sessionmaker[Session], ttl: float) -> None:
        self.write = write
        self.ttl = ttl
        self.identity: dict[str, object] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_ticks": records.process_start_ticks(os.getpid()),
        }
        self._renewed = 0.0

    def take(self, now: float) -> None:
        with self.write() as s, s.begin():
            row = s.get(m.ServiceState, LEASE_KEY)
            if row is not None and not self._free(row.value, row.updated_at, now):
                raise LeaseHeld(
                    f"another control loop (pid {row.value.get('pid')} on {row.value.get('host')}) "
                    f"holds this database; stop it first, or wait {self.ttl:g}s "
                    "after it died"
                )
            if row is None:
                s.add(m.ServiceState(key=LEASE_KEY, value=dict(self.identity), updated_at=now))
            else:
                row.value = dict(self.identity)
                row.updated_at = now
        self._renewed = now

    def _free(self, holder: dict[str, object], heartbeat: float, now: float) -> bool:
        if holder == self.identity or now - heartbeat > self.ttl:
            return True
        if holder.get("host") == self.identity["host"]:
            pid, ticks = holder.get("pid"), holder.get("start_ticks")
            return not records.same_process(
                pid if isinstance(pid, int) else None, ticks if isinstance(ticks, int) else None
            )
        return False

    def renew(self, now: float) -> None:
        if now - self._renewed < 1.0:
            return
        with self.write() as s, s.begin():
            row = s.get(m.ServiceState, LEASE_KEY)
            if row is None or row.value != self.identity:
                raise LeaseHeld("another control loop took over this database; stopping")
            row.updated_at = now
        self._renewed = now

    def release(self) -> None:
        with self.write() as s, s.begin():
            row = s.get(m.ServiceState, LEASE_KEY)
            if row is not None and row.value == self.identity:
                s.delete(row)
