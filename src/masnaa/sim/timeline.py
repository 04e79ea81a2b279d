"""Time-weighted accounting of a replay: utilisation, fair share, fragmentation.

The engine reports every interval ``[t0, t1)`` over which nothing changed,
with each tenant's running GPUs and demand (GPUs of its pending + running
jobs). Rows are buffered in Python lists and folded into NumPy in blocks, so
recording costs O(tenants) list appends per interval.

Fair-share definitions (per tenant k, over the intervals where k has demand,
C = cluster GPUs, w = entitled shares, D = the tenants with demand then):
- **received**_k = ∫ running_k dt;
- **entitled**_k = ∫ C · w_k / Σ_{j∈D} w_j dt (its share of the whole factory,
  renormalised over the tenants that want GPUs at that moment);
- **fair**_k = ∫ f_k dt, where f is the weighted max-min fair allocation of C
  capped by each tenant's demand (water-filling): a tenant asking for less
  than its share is entitled to what it asks;
- **saturated**: the same received ÷ entitled restricted to the intervals
  where demand_k ≥ C · w_k / Σ w_j (the tenant has enough demand to use its
  whole share).
The **fair ratio** received ÷ fair is what Jain's index is taken over.

Time series: the run is cut into bins of ``bin_width`` seconds; per bin the
busy GPU-seconds and per-tenant GPU-seconds. When the run outgrows
``max_bins`` bins, the width doubles and bins merge pairwise, so the series
stays compact however long the replay runs past the last submission. Fragmentation is sampled at bin
boundaries by the engine (``sample``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

FLUSH_ROWS = 32_768


@dataclass(slots=True)
class TimelineResult:
    bin_width: float
    busy: FloatArray
    """GPU-seconds held per bin."""
    tenant_gpu_seconds: FloatArray
    """Shape (bins, tenants): GPU-seconds held per tenant per bin."""
    demand_seconds: FloatArray
    """Per tenant: seconds during which it had demand."""
    received: FloatArray
    entitled: FloatArray
    fair: FloatArray
    received_saturated: FloatArray
    entitled_saturated: FloatArray
    busy_gpu_seconds: float
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    """Fragmentation samples: (t, free GPUs, partially used nodes, free GPUs too few for
    the smallest waiting task, pending jobs)."""


def waterfill(demand: FloatArray, weights: FloatArray, capacity: float) -> FloatArray:
    """Weighted max-min fair allocation of ``capacity``, row by row, capped by demand.

    ``demand`` has shape (rows, tenants); ``weights`` (tenants,) > 0.
    """
    total = demand.sum(axis=1)
    out = demand.astype(np.float64, copy=True)
    over = total > capacity
    if not over.any():
        return out
    d = demand[over].astype(np.float64)
    w = np.broadcast_to(weights, d.shape)
    ratio = d / w
    order = np.argsort(ratio, axis=1, kind="stable")
    ds = np.take_along_axis(d, order, axis=1)
    ws = np.take_along_axis(w, order, axis=1)
    rs = ds / ws
    before = np.cumsum(ds, axis=1) - ds
    rest_w = np.cumsum(ws[:, ::-1], axis=1)[:, ::-1]
    level_total = before + rs * rest_w
    j = np.argmax(level_total >= capacity, axis=1)
    rows = np.arange(d.shape[0])
    lam = (capacity - before[rows, j]) / rest_w[rows, j]
    out[over] = np.minimum(d, lam[:, None] * weights[None, :])
    return out


class Timeline:
    def __init__(
        self, weights: list[float], capacity: int, bin_width: float, max_bins: int = 1024
    ) -> None:
        self.tenants = len(weights)
        self.weights = np.maximum(np.asarray(weights, dtype=np.float64), 1e-12)
        self.capacity = capacity
        self.bin_width = max(bin_width, 1.0)
        self.max_bins = max_bins
        self._bin: list[int] = []
        """Each buffered row's bin, at the current width: counted as the interval is cut,
        never recomputed from its start (``3 * 861.34 // 861.34`` is 2.0)."""
        self._dt: list[float] = []
        self._run: list[int] = []
        self._dem: list[int] = []
        self._busy = np.zeros(0)
        self._tenant_bins = np.zeros((0, self.tenants))
        z = np.zeros(self.tenants)
        self._demand_s = z.copy()
        self._recv = z.copy()
        self._ent = z.copy()
        self._fair = z.copy()
        self._recv_sat = z.copy()
        self._ent_sat = z.copy()
        self.samples: list[tuple[float, int, int, int, int]] = []

    def advance(self, t0: float, t1: float, running: list[int], demand: list[int]) -> None:
        """Nothing changed during ``[t0, t1)``; ``running``/``demand`` are per tenant."""
        while t1 >= self.bin_width * self.max_bins:
            self._coarsen()
        bw = self.bin_width
        k = int(t0 // bw)
        edge = (k + 1) * bw
        while edge < t1:
            self._row(k, max(0.0, edge - t0), running, demand)
            t0 = edge
            k += 1
            edge = (k + 1) * bw
        self._row(k, t1 - t0, running, demand)

    def _row(self, k: int, dt: float, running: list[int], demand: list[int]) -> None:
        self._bin.append(k)
        self._dt.append(dt)
        self._run.extend(running)
        self._dem.extend(demand)
        if len(self._bin) >= FLUSH_ROWS:
            self._flush()

    def _coarsen(self) -> None:
        """Double the bin width (merging bins pairwise) so the series stays compact."""
        self._flush()
        n = self._busy.shape[0]
        if n % 2:
            self._busy = np.concatenate([self._busy, np.zeros(1)])
            self._tenant_bins = np.concatenate([self._tenant_bins, np.zeros((1, self.tenants))])
        self._busy = self._busy.reshape(-1, 2).sum(axis=1)
        self._tenant_bins = self._tenant_bins.reshape(-1, 2, self.tenants).sum(axis=1)
        self.bin_width *= 2

    def sample(self, t: float, free: int, partial: int, stranded: int, pending: int) -> None:
        self.samples.append((t, free, partial, stranded, pending))

    def _flush(self) -> None:
        if not self._bin:
            return
        bins = np.asarray(self._bin, dtype=np.int64)
        dt = np.asarray(self._dt)[:, None]
        run = np.asarray(self._run, dtype=np.float64).reshape(-1, self.tenants)
        dem = np.asarray(self._dem, dtype=np.float64).reshape(-1, self.tenants)
        self._bin.clear()
        self._dt.clear()
        self._run.clear()
        self._dem.clear()

        active = dem > 0
        aw = active * self.weights
        s = aw.sum(axis=1, keepdims=True)
        ent = np.divide(aw * self.capacity, s, out=np.zeros_like(aw), where=s > 0)
        held = run * dt
        self._demand_s += (active * dt).sum(axis=0)
        self._recv += (held * active).sum(axis=0)
        self._ent += (ent * dt).sum(axis=0)
        self._fair += (waterfill(dem, self.weights, float(self.capacity)) * dt).sum(axis=0)
        sat = active & (dem >= ent)
        self._recv_sat += (held * sat).sum(axis=0)
        self._ent_sat += (ent * sat * dt).sum(axis=0)

        need = int(bins.max()) + 1
        if need > self._busy.shape[0]:
            grow = need - self._busy.shape[0]
            self._busy = np.concatenate([self._busy, np.zeros(grow)])
            self._tenant_bins = np.concatenate(
                [self._tenant_bins, np.zeros((grow, self.tenants))]
            )
        np.add.at(self._busy, bins, held.sum(axis=1))
        np.add.at(self._tenant_bins, bins, held)

    def finish(self, until: float | None = None) -> TimelineResult:
        """The series; ``until``: the makespan, past which the clock may have run (a job
        rejected after every other ended still arrived) with nothing to record."""
        self._flush()
        if until is not None:
            keep = max(1, math.ceil(until / self.bin_width))
            self._busy = self._busy[:keep]
            self._tenant_bins = self._tenant_bins[:keep]
            self.samples = [s for s in self.samples if s[0] <= until]
        return TimelineResult(
            bin_width=self.bin_width,
            busy=self._busy,
            tenant_gpu_seconds=self._tenant_bins,
            demand_seconds=self._demand_s,
            received=self._recv,
            entitled=self._ent,
            fair=self._fair,
            received_saturated=self._recv_sat,
            entitled_saturated=self._ent_sat,
            busy_gpu_seconds=float(self._busy.sum()),
            samples=self.samples,
        )
