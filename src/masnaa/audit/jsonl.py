"""The audit log in a JSON-lines file: one canonical record per line, append-only.

Owns: appending (under an exclusive ``flock``, then ``fsync``, so concurrent
writers on one host keep one chain and an acknowledged record survives a
crash), reading and verifying a file.

Invariants: the file only grows; each line is ``AuditRecord.to_line()``; a
writer chains onto the last line it finds under the lock, and refuses to
append after a last line it cannot read (it would hide the damage).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from masnaa.audit.chain import (
    AuditFormatError,
    AuditRecord,
    Break,
    JsonValue,
    Verification,
    seal,
    verify,
)

_CHUNK = 64 * 1024


class JsonlAuditLog:
    """An append-only audit log at ``path`` (created on first append)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        site: str | None = None,
        data_ids: Iterable[str] = (),
        rule_id: str | None = None,
        legal_basis: str | None = None,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditRecord:
        """Write the next record durably and return it."""
        created = not self.path.exists()
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                record = seal(_last_record(f, self.path), at=at, actor=actor, action=action,
                              site=site, data_ids=data_ids, rule_id=rule_id,
                              legal_basis=legal_basis, details=details)
                f.seek(0, os.SEEK_END)
                f.write(record.to_line() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        if created:
            _fsync_dir(self.path.parent)
        return record

    def records(self) -> list[AuditRecord]:
        return read_records(self.path)

    def verify(self, anchor: tuple[int, str] | None = None) -> Verification:
        return verify_file(self.path, anchor)


def read_records(path: str | Path) -> list[AuditRecord]:
    """Every record of the file; ``AuditFormatError`` names the first bad line."""
    records: list[AuditRecord] = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                records.append(_parse(line, f"line {n}"))
    return records


def verify_file(path: str | Path, anchor: tuple[int, str] | None = None) -> Verification:
    """Verify the chain stored in ``path``, offline."""
    records: list[AuditRecord] = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(_parse(line, f"line {n}"))
            except AuditFormatError as exc:
                return Verification(False, len(records) + 1, len(records), None,
                                    Break.UNREADABLE, f"record #{len(records)} ({exc})")
    return verify(records, anchor)


def _parse(line: bytes, where: str) -> AuditRecord:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AuditFormatError(where, f"not JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
                               ) from None
    return AuditRecord.from_json(obj, where)


def _last_record(f: BinaryIO, path: Path) -> AuditRecord | None:
    """The record on the last non-empty line, reading backwards from the end."""
    end = f.seek(0, os.SEEK_END)
    tail = b""
    pos = end
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped or pos == 0:
            line = stripped.rsplit(b"\n", 1)[-1]
            if not line.strip():
                return None
            try:
                return _parse(line, f"{path}: last line")
            except AuditFormatError as exc:
                raise AuditFormatError(
                    str(path), f"cannot append after an unreadable last record ({exc}); "
                    "run `masnaa audit verify` and restore the file") from None
    return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
