"""``UsageLedger``: fair-share usage per tenant, in GPU-seconds decayed with a half-life.

Owns: each tenant's decayed usage, folded forward lazily. A GPU-second used at
time *t* weighs ``2 ** (-(now - t) / half_life)`` at ``now``. Running jobs
accrue continuously: a tenant running *G* GPUs from ``t0`` to ``now`` adds
``G · h/ln 2 · (1 − 2^(−(now−t0)/h))`` — the exact decayed integral, so the
ledger needs only ``(usage at t_ref, t_ref, G)`` per tenant and ``usage()`` is
O(1) however many jobs run.

Pure: time is always an argument; reading never mutates. ``half_life`` may be
``math.inf`` (no decay: plain GPU-seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class _Account:
    usage: float = 0.0
    t_ref: float = 0.0
    gpus: int = 0


class UsageLedger:
    """Decayed GPU-seconds per tenant (see the module docstring)."""

    __slots__ = ("_accounts", "_half_life", "_jobs", "_rate")

    def __init__(self, half_life: float) -> None:
        if not half_life > 0:
            raise ValueError(f"half_life must be > 0 seconds (or math.inf), got {half_life}")
        self._half_life = half_life
        self._rate = 0.0 if math.isinf(half_life) else math.log(2) / half_life
        self._accounts: dict[str, _Account] = {}
        self._jobs: dict[str, tuple[str, int]] = {}

    @property
    def half_life(self) -> float:
        return self._half_life

    def start(self, job_id: str, tenant: str, gpus: int, now: float) -> None:
        """A job of ``tenant`` starts holding ``gpus`` GPUs at ``now``."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} already accrues usage; stop it first")
        if gpus <= 0:
            raise ValueError(f"job {job_id!r}: gpus must be positive, got {gpus}")
        acc = self._advance(tenant, now)
        acc.gpus += gpus
        self._jobs[job_id] = (tenant, gpus)

    def stop(self, job_id: str, now: float) -> None:
        """The job released its GPUs at ``now``. ``KeyError`` if it was not started."""
        held = self._jobs.pop(job_id, None)
        if held is None:
            raise KeyError(f"job {job_id!r} does not accrue usage")
        tenant, gpus = held
        acc = self._advance(tenant, now)
        acc.gpus -= gpus

    def charge(self, tenant: str, gpu_seconds: float, now: float) -> None:
        """Add usage not tied to a running job (e.g. history loaded at start-up)."""
        if gpu_seconds < 0:
            raise ValueError(f"gpu_seconds must be ≥ 0, got {gpu_seconds}")
        acc = self._advance(tenant, now)
        acc.usage += gpu_seconds

    def usage(self, tenant: str, now: float) -> float:
        """Decayed GPU-seconds of ``tenant`` at ``now``, running jobs' accrual included."""
        acc = self._accounts.get(tenant)
        if acc is None:
            return 0.0
        return self._value(acc, now)

    def running_gpus(self, tenant: str) -> int:
        acc = self._accounts.get(tenant)
        return 0 if acc is None else acc.gpus

    def tenants(self) -> tuple[str, ...]:
        """Tenants the ledger has seen, sorted."""
        return tuple(sorted(self._accounts))

    def _value(self, acc: _Account, now: float) -> float:
        dt = now - acc.t_ref
        if self._rate == 0.0:
            return acc.usage + acc.gpus * dt
        decay = math.exp(-self._rate * dt)
        # -expm1 keeps precision when dt is tiny next to the half-life.
        accrued = acc.gpus * (-math.expm1(-self._rate * dt)) / self._rate
        return acc.usage * decay + accrued

    def _advance(self, tenant: str, now: float) -> _Account:
        acc = self._accounts.get(tenant)
        if acc is None:
            acc = self._accounts[tenant] = _Account(t_ref=now)
            return acc
        acc.usage = self._value(acc, now)
        acc.t_ref = now
        return acc
