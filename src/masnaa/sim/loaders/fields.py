"""Parsing of single trace fields, shared by the file loaders.

Every parser raises ``TraceError`` naming the field, the bad value and what a
right value looks like; the caller adds the line number.
"""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

from masnaa.sim.errors import TraceError


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


def instant(field: str, value: str, line: int) -> float:
    """Seconds: a plain number, or an ISO 8601 date-time (naive means UTC)."""
    try:
        x = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(x):
            raise TraceError("malformed-line", f"{field} {value!r} must be a finite time", line)
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
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def slurm_duration(field: str, value: str, line: int) -> float | None:
    """Slurm's ``[DD-][HH:]MM:SS[.mmm]`` (or plain minutes); ``None`` for UNLIMITED."""
    v = value.strip()
    if v.upper() in {"UNLIMITED", "PARTITION_LIMIT", "INVALID", ""}:
        return None
    try:
        days = 0
        if "-" in v:
            d, v = v.split("-", 1)
            days = int(d)
        parts = [float(p) for p in v.split(":")]
    except ValueError:
        raise TraceError(
            "malformed-line",
            f"{field} {value!r} is not a Slurm duration like 1-02:03:04 or 02:03:04",
            line,
        ) from None
    if len(parts) == 1:
        secs = parts[0] * 60.0  # Slurm reads a lone number as minutes
    elif len(parts) == 2:
        secs = parts[0] * 60.0 + parts[1]
    elif len(parts) == 3:
        secs = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
    else:
        raise TraceError(
            "malformed-line", f"{field} {value!r} has too many ':'-separated parts", line
        )
    return days * 86400.0 + secs
