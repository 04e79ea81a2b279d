"""The audit record and its hash chain (PURE): ``AuditRecord``, ``seal``, ``verify``.

Owns: the record format, its canonical JSON serialisation and SHA-256 chaining,
and the verification that names the first broken record and why.

Invariants:
- records are numbered ``seq = 0, 1, 2, ...`` without gaps;
- ``hash = sha256(canonical_json(body))`` where the body is every field but
  ``hash`` (so it covers ``seq`` and ``prev_hash``);
- ``prev_hash`` of record 0 is ``GENESIS``, of record n the ``hash`` of n-1;
- canonical JSON: keys sorted, no spaces, UTF-8, no floats anywhere (they
  round differently across languages: put decimals in strings), timestamps as
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.

A chain proves the order and content of what it holds. It cannot by itself
show that its *tail* was cut off; pass ``anchor`` (a ``(seq, hash)`` published
elsewhere, e.g. in the database or a regulator's report) to catch that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

GENESIS = "0" * 64
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"

JsonValue = Any
"""A JSON value without floats (checked by ``canonical_json``)."""


class AuditAction(StrEnum):
    """What happened. Stable names: reports and regulators read them."""

    PLACEMENT = "placement"
    REFUSAL = "refusal"
    DATA_REGISTRATION = "data-registration"
    GROUND_GRANT = "ground-grant"
    DOWNLOAD = "download"
    POLICY_CHANGE = "policy-change"
    SITE_STATE = "site-state"
    """An operator drained a site, marked it unreachable or brought it back."""
    NODE_STATE = "node-state"
    """An operator drained or undrained a node."""


class AuditFormatError(ValueError):
    """A record that is not well formed. ``where`` names it (line or field)."""

    code = "audit-format"

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


def format_time(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware, e.g. datetime.now(UTC)")
    return at.astimezone(UTC).strftime(_TIME)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME).replace(tzinfo=UTC)


def _check_json(value: object, path: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in audit records; "
                         "write decimals as strings, e.g. \"12.50\"")
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{path}: keys must be strings, got {k!r}")
            _check_json(v, f"{path}.{k}")
        return
    raise ValueError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8, no floats: the same bytes everywhere."""
    _check_json(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    site: str | None
    data_ids: tuple[str, ...]
    rule_id: str | None
    legal_basis: str | None
    details: Mapping[str, JsonValue]
    prev_hash: str
    hash: str = field(default="")

    def body(self) -> dict[str, JsonValue]:
        """Everything the hash covers."""
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "action": self.action,
            "site": self.site,
            "data_ids": list(self.data_ids),
            "rule_id": self.rule_id,
            "legal_basis": self.legal_basis,
            "details": dict(self.details),
            "prev_hash": self.prev_hash,
        }

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.body())).hexdigest()

    def to_json(self) -> dict[str, JsonValue]:
        return {**self.body(), "hash": self.hash}

    def to_line(self) -> bytes:
        return canonical_json(self.to_json())

    @staticmethod
    def from_json(obj: object, where: str = "record") -> AuditRecord:
        if not isinstance(obj, Mapping):
            raise AuditFormatError(where, "expected a JSON object")
        expected = {"seq", "at", "actor", "action", "site", "data_ids", "rule_id",
                    "legal_basis", "details", "prev_hash", "hash"}
        keys = set(obj)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(keys - expected)
            raise AuditFormatError(where, f"fields differ from the format: missing {missing}, "
                                   f"unexpected {extra}")
        try:
            seq = obj["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise TypeError("seq must be an integer")
            data_ids = obj["data_ids"]
            if not isinstance(data_ids, list) or not all(isinstance(d, str) for d in data_ids):
                raise TypeError("data_ids must be a list of strings")
            details = obj["details"]
            if not isinstance(details, Mapping):
                raise TypeError("details must be an object")
            for name in ("actor", "action", "prev_hash", "hash", "at"):
                if not isinstance(obj[name], str):
                    raise TypeError(f"{name} must be a string")
            for name in ("site", "rule_id", "legal_basis"):
                if obj[name] is not None and not isinstance(obj[name], str):
                    raise TypeError(f"{name} must be a string or null")
            return AuditRecord(
                seq=seq, at=parse_time(obj["at"]), actor=obj["actor"], action=obj["action"],
                site=obj["site"], data_ids=tuple(data_ids), rule_id=obj["rule_id"],
                legal_basis=obj["legal_basis"], details=dict(details),
                prev_hash=obj["prev_hash"], hash=obj["hash"],
            )
        except (TypeError, ValueError) as exc:
            raise AuditFormatError(where, str(exc)) from None


def seal(
    prev: AuditRecord | None,
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
    """The next record after ``prev`` (``None``: the first), hashed and chained."""
    normalised = json.loads(canonical_json(dict(details or {})))
    record = AuditRecord(
        seq=0 if prev is None else prev.seq + 1,
        at=at, actor=actor, action=str(action), site=site, data_ids=tuple(data_ids),
        rule_id=rule_id, legal_basis=legal_basis, details=normalised,
        prev_hash=GENESIS if prev is None else prev.hash,
    )
    return AuditRecord(**{**_fields(record), "hash": record.computed_hash()})


def _fields(r: AuditRecord) -> dict[str, Any]:
    return {name: getattr(r, name) for name in AuditRecord.__dataclass_fields__}


class Break(StrEnum):
    TAMPERED = "tampered"
    """The content does not match the record's hash."""
    MISSING = "missing"
    """One or more sequence numbers are absent (records deleted)."""
    REORDERED = "reordered"
    """Sequence numbers are out of order or repeated."""
    WRONG_PREV_HASH = "wrong-prev-hash"
    """The record does not point to the hash of the record before it."""
    TRUNCATED = "truncated"
    """The chain ends before the anchor it was checked against."""
    UNREADABLE = "unreadable"
    """A stored record could not be parsed."""


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int
    position: int | None = None
    """0-based position of the first broken record in what was checked."""
    seq: int | None = None
    """Its sequence number as stored, when readable."""
    reason: Break | None = None
    message: str = "the chain is intact"
    head: tuple[int, str] | None = None
    """``(seq, hash)`` of the last record when intact: publish it as an anchor."""


def verify(records: Sequence[AuditRecord], anchor: tuple[int, str] | None = None
           ) -> Verification:
    """Check the chain; name the first broken record and why."""
    positions: dict[int, int] = {}
    for i, r in enumerate(records):
        positions.setdefault(r.seq, i)
    expected, prev = 0, GENESIS
    for i, r in enumerate(records):
        def broken(reason: Break, message: str, _i: int = i, _r: AuditRecord = r
                   ) -> Verification:
            return Verification(False, _i + 1, _i, _r.seq, reason,
                                f"record #{_i} (seq {_r.seq}): {message}")
        if r.computed_hash() != r.hash:
            return broken(Break.TAMPERED, "its content does not match its hash (altered)")
        if r.seq != expected:
            if r.seq < expected:
                return broken(Break.REORDERED, f"seq {r.seq} comes after seq {expected - 1}")
            if positions.get(expected, -1) > i:
                return broken(Break.REORDERED, f"expected seq {expected} here; it comes later")
            missing = (f"seq {expected}" if r.seq == expected + 1
                       else f"seqs {expected}..{r.seq - 1}")
            return broken(Break.MISSING, f"{missing} missing before it (deleted)")
        if r.prev_hash != prev:
            return broken(Break.WRONG_PREV_HASH,
                          "its prev_hash is not the hash of the record before it")
        prev, expected = r.hash, r.seq + 1
    head = (records[-1].seq, records[-1].hash) if records else None
    if anchor is not None:
        seq, digest = anchor
        at = positions.get(seq)
        if at is None:
            return Verification(False, len(records), len(records), None, Break.TRUNCATED,
                                f"the chain ends at seq {expected - 1}, before the anchor "
                                f"seq {seq} (records cut off the end)")
        if records[at].hash != digest:
            return Verification(False, len(records), at, seq, Break.TAMPERED,
                                f"record #{at} (seq {seq}): its hash differs from the anchor")
    return Verification(True, len(records), head=head)
