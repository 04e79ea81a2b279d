"""Parsing of single trace fields, shared by the file loaders.

Every parser raises ``TraceError`` naming the field, the bad value and what a
right value looks like; the caller adds the line number.

Durations (runtimes, requested limits) must be finite, positive where a job ran, and
at most ``MAX_DURATION``; plain-number instants at most ``MAX_INSTANT`` in size. A
value beyond is a malformed line (``--lenient`` skips and counts it), never a job.
"""

from __future__ import annotations

import gzip
import math
import re
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from masnaa.sim.errors import TraceError

MAX_DURATION = 10 * 365 * 86400.0
"""The longest runtime or requested limit a trace may give: 10 years. No job or limit
on a real cluster comes near it (Philly's longest job ran about 60 days, and Slurm
prints a limit it does not enforce as ``UNLIMITED``), so a larger value is a typo or a
unit error; and under it every sum the twin makes stays exact in a float: 10 years ×
a million GPUs is 3·10^14 GPU-seconds, under 2^53 ≈ 9·10^15."""
MAX_INSTANT = 1e11
"""The largest plain-number instant, in seconds (about 3,000 years of epoch time): a
larger one is no date, and spans built on it would swamp every duration."""
_SLURM_DURATION = re.compile(r"^(?:(\d+)-)?(\d+(?::\d+){0,2})(\.\d+)?$")


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``--timezone``); ``TraceError`` ``bad-option`` if unknown."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TraceError(
            "bad-option",
            f"unknown time zone {name!r}: give an IANA name such as Europe/Berlin or "
            "America/New_York (the zone the history was printed in)",
        ) from None


def read_text(path: Path) -> str:
    """A trace file's text (``decode``)."""
    return decode(path.read_bytes(), path.name)


def decode(raw: bytes, name: str) -> str:
    """A trace's text: UTF-8, with or without a byte-order mark (spreadsheets write
    one), plain or gzip-compressed (read by its magic bytes, whatever its name).

    A file in another encoding is refused with the line where it stops being UTF-8:
    ``--lenient`` skips malformed lines, but cannot guess an encoding.
    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise TraceError("bad-file", f"{name} looks gzip-compressed but is not "
                             f"readable as such ({exc})", 1) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TraceError(
            "bad-encoding",
            f"byte {raw[exc.start]:#04x} is not UTF-8: save the file as UTF-8 "
            "(for example: iconv -f latin1 -t utf-8 FILE > FILE.utf8)",
            line,
        ) from None


def number(field: str, value: str, line: int) -> float:
    try:
        x = float(value)
    except ValueError:
        raise TraceError(
            "malformed-line", f"{field} {value!r} is not a number; give seconds as a number", line
        ) from None
    if not math.isfinite(x):
        raise TraceError("malformed-line", f"{field} {value!r} must be finite", line)
    return x


def positive(field: str, value: str, line: int) -> float:
    x = number(field, value, line)
    if x <= 0:
        raise TraceError("malformed-line", f"{field} must be > 0, got {value!r}", line)
    return x


def duration(field: str, value: str, line: int) -> float:
    """Seconds > 0 and at most ``MAX_DURATION``: a runtime or a requested limit."""
    return bounded(field, value, positive(field, value, line), line)


def bounded(field: str, value: str, seconds: float, line: int) -> float:
    """``seconds`` (read from ``value``) if at most ``MAX_DURATION``."""
    if seconds > MAX_DURATION:
        raise TraceError(
            "malformed-line",
            f"{field} {value!r} is longer than 10 years, the most taken as a duration "
            "(is the unit right?)",
            line,
        )
    return seconds


def count(field: str, value: str, line: int) -> int:
    try:
        n = int(float(value))
    except (ValueError, OverflowError):  # OverflowError: "inf"; ValueError: "nan" or text
        raise TraceError(
            "malformed-line", f"{field} {value!r} is not a whole number", line
        ) from None
    if n != float(value) or n < 0:
        raise TraceError(
            "malformed-line", f"{field} must be a whole number ≥ 0, got {value!r}", line
        )
    return n


def instant(field: str, value: str, line: int, zone: tzinfo = UTC) -> float:
    """Seconds: a plain number, or an ISO 8601 date-time (one without a zone is read in
    ``zone``, UTC unless the operator names the zone the file was written in)."""
    try:
        x = float(value)
    except ValueError:
        pass
    else:
        if not abs(x) <= MAX_INSTANT:  # NaN fails the comparison too
            raise TraceError(
                "malformed-line",
                f"{field} {value!r} must be a finite time of at most {MAX_INSTANT:.0e} seconds",
                line,
            )
        return x
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise TraceError(
            "malformed-line",
            f"{field} {value!r} is neither seconds nor an ISO 8601 date-time "
            "like 2017-10-09 07:01:55",
            line,
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.timestamp()


def slurm_duration(field: str, value: str, line: int) -> float | None:
    """Slurm's duration, ``None`` for UNLIMITED (and Partition_Limit, INVALID, empty).

    The forms Slurm prints and reads: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM``, ``D-HH:MM:SS``, each part whole digits (seconds may carry
    ``.mmm``). Anything else, ``nan``, ``inf``, exponents or signs included, is a
    malformed line; so is a duration over ``MAX_DURATION``.
    """
    v = value.strip()
    if v.upper() in {"UNLIMITED", "PARTITION_LIMIT", "INVALID", ""}:
        return None
    m = _SLURM_DURATION.match(v)
    parts = [int(p) for p in m.group(2).split(":")] if m is not None else []
    with_days = m is not None and m.group(1) is not None
    # A fraction belongs to seconds only: the last of HH:MM:SS or MM:SS.
    seconds_last = len(parts) == 3 or (len(parts) == 2 and not with_days)
    if m is None or (m.group(3) is not None and not seconds_last):
        raise TraceError(
            "malformed-line",
            f"{field} {value!r} is not a Slurm duration like 1-02:03:04 or 02:03:04",
            line,
        )
    weights: tuple[float, ...]
    if with_days:  # D-HH[:MM[:SS]]
        weights = (3600.0, 60.0, 1.0)
    else:  # MM, MM:SS or HH:MM:SS
        weights = {1: (60.0,), 2: (60.0, 1.0), 3: (3600.0, 60.0, 1.0)}[len(parts)]
    secs = sum(p * w for p, w in zip(parts, weights, strict=False))
    secs += float(m.group(3) or 0.0) + (int(m.group(1)) * 86400.0 if with_days else 0.0)
    return bounded(field, value, secs, line)
