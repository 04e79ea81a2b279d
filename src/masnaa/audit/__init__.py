"""The audit log: append-only, hash-chained records of every residency-relevant act.

``chain`` (PURE) defines records, canonical JSON and verification; ``events``
(PURE) builds records from policy decisions; ``report`` (PURE) answers a
regulator; ``jsonl`` stores a chain in a JSON-lines file (IO).
See docs/residency.md.
"""

from masnaa.audit.chain import (
    GENESIS,
    AuditAction,
    AuditFormatError,
    AuditRecord,
    Break,
    Verification,
    canonical_json,
    seal,
    verify,
)

__all__ = [
    "GENESIS",
    "AuditAction",
    "AuditFormatError",
    "AuditRecord",
    "Break",
    "Verification",
    "canonical_json",
    "seal",
    "verify",
]
