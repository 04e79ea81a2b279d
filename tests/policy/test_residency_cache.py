"""The caller-owned eligibility cache: reuse, and every reason to recompute."""

from __future__ import annotations

from datetime import timedelta

from residency_builders import NOW, RULES, SITES, ds, ground, sites_with

from masnaa.policy import EligibilityCache, dataset_key, eligible_sites
from masnaa.policy.loader import default_rules_path, parse_rules


def test_same_dataset_set_is_computed_once() -> None:
    cache = EligibilityCache()
    a, b = ds("a", "MA", "personal"), ds("b", "KE", "personal", ground("KE", "consent"))
    first = cache.get([a, b], SITES, RULES, NOW)
    again = cache.get([b, a], SITES, RULES, NOW, key=dataset_key([a, b]))
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    assert first == eligible_sites([a, b], SITES, RULES, NOW)


def test_new_version_rules_sites_or_expiry_recompute() -> None:
    cache = EligibilityCache()
    d1 = ds("d", "MA", "personal", ground("MA", "express_consent", days=1))
    e1 = cache.get([d1], SITES, RULES, NOW)
    assert "za-1" in e1.lawful_sites
    # The consent expires: the cached answer is no longer served.
    later = NOW + timedelta(days=2)
    assert "za-1" not in cache.get([d1], SITES, RULES, later).lawful_sites
    # A dataset version is a new key.
    d2 = ds("d", "MA", "personal", version=2)
    assert cache.get([d2], SITES, RULES, NOW).lawful_sites == ("ma-1",)
    misses = cache.misses
    # New rules (same version label, other content) start a new generation.
    text = default_rules_path().read_text().replace(
        "adequate_destinations = []   # fill", 'adequate_destinations = ["ZA"]   # fill')
    assert "za-1" in cache.get([d2], SITES, parse_rules(text), NOW).lawful_sites
    # Site states are part of the generation too.
    e = cache.get([d2], sites_with(ma_1="drained"), RULES, NOW)
    assert e.eligible_sites == ()
    assert cache.misses == misses + 2


def test_bounded() -> None:
    cache = EligibilityCache(max_entries=3)
    for i in range(10):
        cache.get([ds(f"d{i}", "MA", "personal")], SITES, RULES, NOW)
        assert len(cache) <= 3  # after every insert, not only at the end


def test_refresh_returns_only_sets_whose_ground_expired() -> None:
    cache = EligibilityCache()
    short = ds("short", "MA", "personal", ground("MA", "express_consent", days=1))
    long = ds("long", "KE", "personal", ground("KE", "consent", days=100))
    plain = ds("plain", "ZA", "personal")
    for data in ([short], [long], [short, plain], [plain]):
        cache.get(data, SITES, RULES, NOW)
    assert cache.refresh(NOW + timedelta(hours=1)) == {}
    changed = cache.refresh(NOW + timedelta(days=2))
    assert set(changed) == {dataset_key([short]), dataset_key([short, plain])}
    assert all("za-1" not in e.lawful_sites for e in changed.values())
    assert cache.refresh(NOW + timedelta(days=3)) == {}
    # The recomputed answer is what get serves now.
    assert cache.get([short], SITES, RULES, NOW + timedelta(days=3)) is changed[
        dataset_key([short])]
    assert set(cache.refresh(NOW + timedelta(days=101))) == {dataset_key([long])}
