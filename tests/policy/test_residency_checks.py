"""Lineage, named sites, downloads and site states."""

from __future__ import annotations

import pytest
from residency_builders import NOW, RULES, SITES, ds, ground, sites_with

from masnaa.policy import (
    ResidencyRefused,
    SiteState,
    check_named_sites,
    derive_artifact,
    eligible_sites,
    may_download,
)


def test_model_trained_on_moroccan_health_data_stays_moroccan_health() -> None:
    src = ds("scans", "MA", "health", ground("MA", "cndp_transfer_authorisation"))
    assert set(eligible_sites([src], SITES, RULES, NOW).lawful_sites) == {
        "ma-1", "za-1", "ng-1", "ke-1", "eg-1"}
    model = derive_artifact("model", [src, ds("notes", "MA", "personal")], home_site="ma-1",
                            owner="lab")
    assert model.jurisdictions == {"MA"}
    assert RULES.strictest(model.classes) == "health"
    assert model.derived_from == ("scans", "notes")
    # The authorisation covered the scans, not what was made of them.
    e = eligible_sites([model], SITES, RULES, NOW)
    assert e.lawful_sites == ("ma-1",)
    assert e.site("za-1").refusals[0].rule_id == "MA.conditional"


def test_every_class_counts_under_every_jurisdiction() -> None:
    # Conservative lineage: the strictest class applies under each jurisdiction,
    # even one that only contributed public data.
    art = derive_artifact("mix", [ds("scans", "MA", "health"), ds("wiki", "EG", "public")],
                          home_site="ma-1", owner="lab")
    assert art.jurisdictions == {"MA", "EG"}
    verdict = eligible_sites([art], SITES, RULES, NOW).site("ma-1")
    assert not verdict.lawful
    assert [f.rule_id for f in verdict.refusals] == ["EG.conditional"]


def test_artifact_of_two_countries_needs_both_laws() -> None:
    a = ds("a", "MA", "personal")
    b = ds("b", "ZA", "personal", ground("ZA", "consent", to=("MA",)))
    art = derive_artifact("out", [a, b], home_site="ma-1", owner="lab",
                          grounds=[ground("ZA", "consent", to=("MA",))])
    assert eligible_sites([art], SITES, RULES, NOW).lawful_sites == ("ma-1",)
    assert eligible_sites([a, b], SITES, RULES, NOW).lawful_sites == ("ma-1",)
    assert eligible_sites([derive_artifact("bare", [a, b], home_site="ma-1", owner="lab")],
                          SITES, RULES, NOW).lawful_sites == ()


def test_artifact_needs_inputs() -> None:
    with pytest.raises(ValueError, match="derived from"):
        derive_artifact("x", [], home_site="ma-1", owner="lab")


def test_named_unlawful_site_is_refused_with_rule_law_and_remedy() -> None:
    e = eligible_sites([ds("d", "NG", "government")], SITES, RULES, NOW)
    with pytest.raises(ResidencyRefused) as err:
        check_named_sites(["ng-1", "za-1"], e)
    assert err.value.code == "residency-refused"
    assert err.value.site == "za-1"
    assert err.value.rule_id == "NG.strict-local"
    assert err.value.law == RULES.countries["NG"].law and err.value.regulator == "NDPC"
    assert err.value.remedy == "run at a site in NG"
    assert "za-1" in str(err.value) and "NG.strict-local" in str(err.value)


def test_named_sites_anywhere_unknown_and_drained() -> None:
    e = eligible_sites([ds("d", "KE", "personal", ground("KE", "consent", to=("ZA",)))],
                       sites_with(ke_1="drained"), RULES, NOW)
    assert check_named_sites(None, e) == ("za-1", "ke-1")
    assert e.eligible_sites == ("za-1",)
    # A drained lawful site stays allowed: the job waits or goes to another named site.
    assert check_named_sites(["ke-1"], e) == ("ke-1",)
    drained = e.site("ke-1")
    assert drained.lawful and not drained.eligible
    assert drained.refusals[0].rule_id == "site.state"
    with pytest.raises(ResidencyRefused) as err:
        check_named_sites(["mars-1"], e)
    assert err.value.code == "unknown-site" and "ma-1" in (err.value.remedy or "")


def test_no_lawful_site_anywhere_is_refused() -> None:
    e = eligible_sites([ds("a", "MA", "government_sensitive"), ds("b", "NG", "government")],
                       SITES, RULES, NOW)
    with pytest.raises(ResidencyRefused) as err:
        check_named_sites(None, e)
    assert err.value.code == "no-lawful-site" and err.value.rule_id.endswith("strict-local")


def test_job_without_data_may_run_anywhere_up() -> None:
    e = eligible_sites([], sites_with(eg_1="unreachable"), RULES, NOW)
    assert e.lawful_sites == tuple(s.name for s in SITES)
    assert e.eligible_sites == ("ma-1", "za-1", "ng-1", "ke-1")
    assert e.site("eg-1").state is SiteState.UNREACHABLE


def test_explain_lists_every_site_and_why() -> None:
    e = eligible_sites([ds("d", "MA", "health")], sites_with(ke_1="drained"), RULES, NOW)
    text = "\n".join(e.explain())
    assert "ma-1 (MA, up): eligible" in text
    assert "ke-1 (KE, drained): not lawful" in text
    assert text.count("MA.prior-authorisation") + text.count("MA.conditional") == 4


def test_valid_until_is_the_first_expiry_after_now() -> None:
    d = ds("d", "MA", "personal", ground("MA", "express_consent", days=10),
           ground("MA", "contract_or_vital_or_public_interest", days=3),
           ground("MA", "express_consent", days=-5))
    e = eligible_sites([d], SITES, RULES, NOW)
    assert e.valid_until is not None and (e.valid_until - NOW).days == 3


@pytest.mark.parametrize(
    ("destination", "person", "role", "allowed", "rule"),
    [
        ("MA", "MA", "member", True, "MA.in-country"),
        ("ZA", "ZA", "member", False, "MA.conditional"),
        ("MA", "ZA", "member", False, "MA.conditional"),  # remote access is a transfer
        ("MA", "MA", "guest", False, "download.role"),
    ],
)
def test_may_download(destination: str, person: str, role: str, allowed: bool,
                      rule: str) -> None:
    model = derive_artifact("model", [ds("scans", "MA", "health")], home_site="ma-1",
                            owner="lab")
    decision = may_download(model, destination, person, role, RULES, NOW)
    assert decision.allowed is allowed
    first = next((f for f in decision.findings if not f.allowed), decision.findings[0])
    assert first.rule_id == rule
    if not allowed:
        with pytest.raises(ResidencyRefused, match=rule.replace(".", r"\.")):
            decision.raise_if_refused()


def test_download_with_authorisation_reaches_the_covered_country_only() -> None:
    model = derive_artifact("model", [ds("scans", "MA", "health")], home_site="ma-1",
                            owner="lab",
                            grounds=[ground("MA", "cndp_transfer_authorisation", to=("KE",))])
    assert may_download(model, "KE", "KE", "owner", RULES, NOW).allowed
    assert not may_download(model, "KE", "NG", "owner", RULES, NOW).allowed


def test_grounds_and_datasets_validate_their_input() -> None:
    from datetime import datetime

    from masnaa.policy import GroundKind, TransferGround
    with pytest.raises(ValueError, match="reference"):
        TransferGround("MA", "cndp_transfer_authorisation", GroundKind.AUTHORISATION)
    with pytest.raises(ValueError, match="timezone-aware"):
        TransferGround("MA", "express_consent", GroundKind.CONSENT,
                       expires=datetime(2027, 1, 1))
    with pytest.raises(ValueError, match="not one of its jurisdictions"):
        ds("d", "MA", "personal", ground("ZA", "consent"))
