"""Instants of accounting: whole seconds since the UNIX epoch, UTC.

Usage is accounted to the second. Drivers hand in float seconds (the domain's
clock); ``to_second`` truncates them once, at the edge. Because every interval
boundary is truncated the same way, consecutive intervals of a run tile
exactly and the GPU-seconds of a run never drift from the sum of its parts.

Dates (price validity, exchange rates, expiry) are UTC calendar dates; a date
``d`` as a bound means the instant ``d 00:00:00 UTC``.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from masnaa.accounting.errors import AccountingError

Instant = int
DAY = 86_400
HOUR = 3_600
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def to_second(t: float | int) -> Instant:
    """Truncate a driver's float time to a whole second."""
    if isinstance(t, float) and not math.isfinite(t):
        raise AccountingError("bad-instant", f"time must be finite, got {t!r}")
    return math.floor(t)


def at(d: date | datetime) -> Instant:
    """The instant of a UTC date (midnight) or of an aware datetime."""
    if isinstance(d, datetime):
        if d.tzinfo is None:
            raise AccountingError(
                "naive-datetime",
                f"{d.isoformat()} has no time zone; pass an aware datetime (e.g. tzinfo=UTC)",
            )
        return math.floor(d.timestamp())
    return (d.toordinal() - _EPOCH_ORDINAL) * DAY


def day_of(t: Instant) -> date:
    """The UTC calendar date containing instant ``t``."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t)).date()


def iso(t: Instant) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")
