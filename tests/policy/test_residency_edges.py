"""Residency at its edges: the instant a ground expires, and what a ground must carry.

An authorisation that expires at noon does not cover a job placed at noon, and an
answer cached before noon must not be served at noon either.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from residency_builders import NOW, RULES, SITES, ds, ground

from masnaa.policy import EligibilityCache, dataset_key
from masnaa.policy.data import GroundKind, TransferGround
from masnaa.policy.residency import first_expiry

ONE_DAY = NOW + timedelta(days=1)


def test_a_cached_answer_is_not_served_at_the_instant_its_ground_expires() -> None:
    cache = EligibilityCache()
    consent = ds("d", "MA", "personal", ground("MA", "express_consent", days=1))
    assert "za-1" in cache.get([consent], SITES, RULES, ONE_DAY - timedelta(seconds=1)).lawful_sites
    assert "za-1" not in cache.get([consent], SITES, RULES, ONE_DAY).lawful_sites
    assert cache.misses == 2


def test_refresh_at_the_instant_of_expiry_recomputes() -> None:
    cache = EligibilityCache()
    consent = ds("d", "MA", "personal", ground("MA", "express_consent", days=1))
    cache.get([consent], SITES, RULES, NOW)
    changed = cache.refresh(ONE_DAY)
    assert set(changed) == {dataset_key([consent])}
    assert "za-1" not in changed[dataset_key([consent])].lawful_sites


def test_the_next_change_is_the_first_expiry_after_now_not_at_it() -> None:
    ends_now = ground("MA", "express_consent", days=0)
    later = ground("MA", "express_consent", days=2)
    assert first_expiry([ds("d", "MA", "personal", ends_now, later)], NOW) == NOW + timedelta(
        days=2)
    assert first_expiry([ds("d", "MA", "personal", ends_now)], NOW) is None


@pytest.mark.parametrize(("reference", "expires"), [
    ("MA-AUTH-7", None),
    (None, ONE_DAY),
    ("", ONE_DAY),
])
def test_an_authorisation_needs_both_its_reference_and_its_expiry(
    reference: str | None, expires: object
) -> None:
    with pytest.raises(ValueError, match="needs its reference and its expiry"):
        TransferGround("MA", "cndp_transfer_authorisation", GroundKind.AUTHORISATION,
                       reference, expires)  # type: ignore[arg-type]
    assert TransferGround("MA", "cndp_transfer_authorisation", GroundKind.AUTHORISATION,
                          "MA-AUTH-7", ONE_DAY).expires == ONE_DAY


@pytest.mark.parametrize(("expires", "shown"), [
    (datetime(2026, 11, 28, 15, 25, tzinfo=UTC), "2026-11-28T15:25:00Z"),
    # Another offset is shown as the UTC instant it is (here the previous UTC day).
    (datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=2))), "2026-11-28T23:00:00Z"),
    (datetime(2026, 11, 28, 15, 25, 0, 250000, tzinfo=UTC), "2026-11-28T15:25:00.250000Z"),
])
def test_the_basis_names_the_instant_a_ground_expires_not_only_its_day(
    expires: datetime, shown: str
) -> None:
    g = TransferGround("MA", "cndp_transfer_authorisation", GroundKind.AUTHORISATION,
                       "CNDP-1", expires)
    assert g.describe() == f"cndp_transfer_authorisation: authorisation CNDP-1 valid until {shown}"
