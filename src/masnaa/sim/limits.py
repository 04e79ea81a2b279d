"""Derived time limits: an honest planning estimate for traces without one.

Philly records no requested time limit, but backfill and start-time estimates
need one. The twin derives it the way an operator could: from the runtimes of
the same tenant's jobs that have **already completed** when the job is
submitted, never from the job's own runtime.

- estimate = the ``percentile`` (default p90) of the tenant's completed
  runtimes, read from a log-binned histogram (20 bins per decade, the upper
  edge of the bin, so it errs long);
- until the tenant has ``min_samples`` completions, the percentile over all
  tenants' completions is used; until there are ``min_samples`` of those,
  ``default`` (4 hours);
- the histogram's percentile is recomputed only after the tenant's count grew
  by 5 % (or 64 jobs), so an estimate costs O(1) amortised.

Such a limit serves planning only: a job that outruns it is not killed in the
twin; the engine extends its expected end (see ``engine``).
"""

from __future__ import annotations

import math

BINS_PER_DECADE = 20
MIN_SECONDS = 1.0
MAX_SECONDS = 1e8
_NBINS = int(math.log10(MAX_SECONDS / MIN_SECONDS) * BINS_PER_DECADE) + 1


def _bin(seconds: float) -> int:
    if seconds <= MIN_SECONDS:
        return 0
    b = int(math.log10(seconds / MIN_SECONDS) * BINS_PER_DECADE) + 1
    return b if b < _NBINS else _NBINS - 1


def _upper_edge(b: int) -> float:
    return float(MIN_SECONDS * 10.0 ** (b / BINS_PER_DECADE))


class _Histogram:
    __slots__ = ("cached", "cached_at", "counts", "n")

    def __init__(self) -> None:
        self.counts = [0] * _NBINS
        self.n = 0
        self.cached = 0.0
        self.cached_at = -1

    def add(self, seconds: float) -> None:
        self.counts[_bin(seconds)] += 1
        self.n += 1

    def quantile(self, q: float) -> float:
        if self.cached_at < 0 or self.n - self.cached_at >= min(64, max(1, self.cached_at // 20)):
            target = q * self.n
            acc = 0
            for b, c in enumerate(self.counts):
                acc += c
                if acc >= target:
                    self.cached = _upper_edge(b)
                    break
            self.cached_at = self.n
        return self.cached


class LimitEstimator:
    """Per-tenant percentile of completed runtimes (see the module docstring)."""

    def __init__(
        self, *, percentile: float = 0.9, min_samples: int = 20, default: float = 4 * 3600.0
    ) -> None:
        if not 0 < percentile <= 1:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        self.percentile = percentile
        self.min_samples = min_samples
        self.default = default
        self._tenants: dict[str, _Histogram] = {}
        self._all = _Histogram()

    def completed(self, tenant: str, runtime: float) -> None:
        """A job of ``tenant`` finished after running ``runtime`` seconds in all."""
        h = self._tenants.get(tenant)
        if h is None:
            h = self._tenants[tenant] = _Histogram()
        h.add(runtime)
        self._all.add(runtime)

    def estimate(self, tenant: str) -> float:
        """The limit to plan with for a job ``tenant`` submits now."""
        h = self._tenants.get(tenant)
        if h is not None and h.n >= self.min_samples:
            return h.quantile(self.percentile)
        if self._all.n >= self.min_samples:
            return self._all.quantile(self.percentile)
        return self.default
