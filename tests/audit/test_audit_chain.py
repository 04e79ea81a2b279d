"""The hash chain: intact chains verify; tampering, deletion, reordering are named."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from masnaa.audit import GENESIS, AuditAction, AuditRecord, Break, canonical_json, seal, verify

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def chain(n: int = 6) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i in range(n):
        out.append(seal(out[-1] if out else None, at=T0 + timedelta(minutes=i), actor="svc",
                        action=AuditAction.PLACEMENT, site="ma-1", data_ids=[f"d{i}"],
                        rule_id="MA.in-country", legal_basis="in-country (MA)",
                        details={"job_id": f"j{i}", "gpus": 8, "note": "é"}))
    return out


def test_intact_chain_verifies_and_links() -> None:
    records = chain()
    result = verify(records)
    assert result.ok and result.checked == 6 and result.reason is None
    assert records[0].prev_hash == GENESIS and records[0].seq == 0
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert result.head == (5, records[-1].hash)
    assert verify([]).ok


def test_round_trip_through_json_keeps_the_hash() -> None:
    for r in chain(3):
        again = AuditRecord.from_json(__import__("json").loads(r.to_line()))
        assert again == r and again.computed_hash() == r.hash


def test_canonical_json_is_stable_and_refuses_floats() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'
    with pytest.raises(ValueError, match="floats are not allowed"):
        seal(None, at=T0, actor="a", action="x", details={"price": 1.5})
    with pytest.raises(ValueError, match="timezone-aware"):
        seal(None, at=datetime(2026, 1, 1), actor="a", action="x")


def test_tampered_content_is_named() -> None:
    records = chain()
    records[3] = dataclasses.replace(records[3], site="za-1")
    result = verify(records)
    assert not result.ok and (result.position, result.seq, result.reason) == (3, 3,
                                                                              Break.TAMPERED)
    assert "seq 3" in result.message


def test_tampered_details_are_named() -> None:
    records = chain()
    records[1] = dataclasses.replace(records[1], details={**records[1].details, "gpus": 0})
    assert verify(records).reason is Break.TAMPERED and verify(records).seq == 1


def test_deletion_is_named() -> None:
    records = chain()
    del records[2]
    result = verify(records)
    assert (result.ok, result.position, result.seq, result.reason) == (False, 2, 3,
                                                                       Break.MISSING)
    assert "seq 2 missing" in result.message
    assert verify(chain()[1:]).reason is Break.MISSING  # the first record deleted


def test_reordering_is_named() -> None:
    records = chain()
    records[2], records[4] = records[4], records[2]
    result = verify(records)
    assert (result.position, result.seq, result.reason) == (2, 4, Break.REORDERED)
    dup = chain()
    dup.insert(3, dup[1])
    assert verify(dup).reason is Break.REORDERED


def test_rewritten_record_with_fresh_hash_breaks_the_link() -> None:
    records = chain()
    forged = seal(records[1], at=T0, actor="intruder", action="placement", site="za-1")
    forged = dataclasses.replace(forged, prev_hash="f" * 64)
    forged = dataclasses.replace(forged, hash=forged.computed_hash())
    records[2] = forged
    result = verify(records)
    assert (result.position, result.reason) == (2, Break.WRONG_PREV_HASH)


def test_rebuilt_chain_after_deletion_is_caught_by_an_anchor() -> None:
    records = chain()
    anchor = verify(records).head
    assert anchor is not None
    # Re-sealing the rest after deleting record 2 yields a self-consistent chain...
    rebuilt = records[:2]
    for r in records[3:]:
        rebuilt.append(seal(rebuilt[-1], at=r.at, actor=r.actor, action=r.action, site=r.site,
                            data_ids=r.data_ids, rule_id=r.rule_id,
                            legal_basis=r.legal_basis, details=r.details))
    assert verify(rebuilt).ok
    # ...which the published head exposes, as it does a cut-off tail.
    assert verify(rebuilt, anchor=anchor).reason is Break.TRUNCATED
    assert verify(records[:-1], anchor=anchor).reason is Break.TRUNCATED
    assert verify(records, anchor=anchor).ok
    assert verify(records, anchor=(5, "0" * 64)).reason is Break.TAMPERED
