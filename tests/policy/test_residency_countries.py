"""Per-country table tests of ``eligible_sites`` against the shipped rules (from the draft)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from residency_builders import NOW, RULES, SITES, ds, ground, rules_with_adequate

from masnaa.policy import Dataset, eligible_sites
from masnaa.policy.rules import RuleSet


@dataclass(frozen=True)
class Case:
    name: str
    data: tuple[Dataset, ...]
    site: str
    allowed: bool
    rule_id: str
    says: str = ""
    """A phrase the basis (allowed) or the reason + remedy (refused) must contain."""
    rules: RuleSet = RULES


CASES = [
    # --- Morocco (CNDP, Law 09-08) --------------------------------------------------------
    Case("MA health stays home", (ds("d", "MA", "health"),), "ma-1", True, "MA.in-country",
         "in-country (MA)"),
    Case("MA strict-local refused abroad even with grounds",
         (ds("d", "MA", "government_sensitive", ground("MA", "express_consent"),
             ground("MA", "cndp_transfer_authorisation")),), "za-1", False, "MA.strict-local",
         "run at a site in MA"),
    Case("MA personal without ground", (ds("d", "MA", "personal"),), "za-1", False,
         "MA.conditional", "express_consent"),
    Case("MA personal with consent", (ds("d", "MA", "personal",
                                         ground("MA", "express_consent", ref="C-7")),),
         "za-1", True, "MA.conditional", "express_consent: consent on record (C-7)"),
    Case("MA health with consent still needs CNDP authorisation",
         (ds("d", "MA", "health", ground("MA", "express_consent")),), "za-1", False,
         "MA.prior-authorisation", "cndp_transfer_authorisation"),
    Case("MA health with valid CNDP authorisation",
         (ds("d", "MA", "health", ground("MA", "cndp_transfer_authorisation",
                                         ref="CNDP-2026-17", days=30)),),
         "ng-1", True, "MA.conditional",
         "authorisation CNDP-2026-17 valid until 2026-12-25T12:00:00Z"),
    Case("MA health with expired CNDP authorisation",
         (ds("d", "MA", "health", ground("MA", "cndp_transfer_authorisation", days=-1)),),
         "ng-1", False, "MA.conditional", "expired at 2026-11-24T12:00:00Z"),
    Case("MA consent limited to NG does not cover ZA",
         (ds("d", "MA", "personal", ground("MA", "express_consent", to=("NG",))),),
         "za-1", False, "MA.conditional", "does not cover ZA"),
    Case("MA adequate list satisfies the condition",
         (ds("d", "MA", "personal"),), "za-1", True, "MA.conditional",
         "ZA is on MA's adequate list", rules_with_adequate("MA", ["ZA"])),
    # --- South Africa (Information Regulator, POPIA) ---------------------------------------
    Case("ZA personal stays home", (ds("d", "ZA", "personal"),), "za-1", True,
         "ZA.in-country"),
    Case("ZA government never leaves", (ds("d", "ZA", "government",
                                           ground("ZA", "consent")),), "ng-1", False,
         "ZA.strict-local"),
    Case("ZA personal with contract", (ds("d", "ZA", "personal", ground("ZA", "contract")),),
         "ma-1", True, "ZA.conditional", "contract: contract on record"),
    Case("ZA children need prior authorisation", (ds("d", "ZA", "children",
                                                     ground("ZA", "consent")),),
         "ke-1", False, "ZA.prior-authorisation", "information_regulator_prior_authorisation"),
    Case("ZA children with authorisation", (ds("d", "ZA", "children", ground("ZA", "consent"),
                                               ground("ZA", "information_regulator_prior_"
                                                      "authorisation", ref="IR-9")),),
         "ke-1", True, "ZA.conditional", "authorisation IR-9"),
    Case("ZA children to an adequate destination need no authorisation",
         (ds("d", "ZA", "children", ground("ZA", "consent")),), "ke-1", True,
         "ZA.conditional", "KE adequate: no prior authorisation needed",
         rules_with_adequate("ZA", ["KE"])),
    # --- Nigeria (NDPC, NDPA 2023) --------------------------------------------------------
    Case("NG BVN identity never leaves", (ds("d", "NG", "bvn_banking_identity"),), "za-1",
         False, "NG.strict-local"),
    Case("NG personal with informed consent", (ds("d", "NG", "personal",
                                                  ground("NG", "informed_consent")),),
         "ke-1", True, "NG.conditional", "informed_consent"),
    Case("NG consent under another country's condition name does not count",
         (ds("d", "NG", "personal", ground("NG", "express_consent", kind="consent")),),
         "ke-1", False, "NG.conditional", "informed_consent"),
    Case("NG ground of the wrong kind does not count",
         (ds("d", "NG", "personal", ground("NG", "informed_consent", kind="contract")),),
         "ke-1", False, "NG.conditional", "recorded as contract"),
    Case("NG telecom at home", (ds("d", "NG", "telecom_subscriber"),), "ng-1", True,
         "NG.in-country"),
    # --- Kenya (ODPC, DPA 2019) -----------------------------------------------------------
    Case("KE elections processed at home", (ds("d", "KE", "elections"),), "ke-1", True,
         "KE.in-country"),
    Case("KE health care abroad without a serving copy",
         (ds("d", "KE", "health_care", ground("KE", "consent"),
             ground("KE", "appropriate_safeguards")),), "za-1", False,
         "KE.strict-local.serving-copy", "keep a serving copy in KE"),
    Case("KE health care abroad with a serving copy and both grounds",
         (ds("d", "KE", "health_care", ground("KE", "consent"),
             ground("KE", "appropriate_safeguards"), serving=("KE",)),), "za-1", True,
         "KE.sensitive-transfer", "serving copy kept in KE"),
    Case("KE sensitive with consent only (needs consent AND safeguards)",
         (ds("d", "KE", "health_care", ground("KE", "consent"), serving=("KE",)),), "za-1",
         False, "KE.sensitive-transfer", "consent + appropriate_safeguards"),
    Case("KE personal with consent", (ds("d", "KE", "personal", ground("KE", "consent")),),
         "eg-1", True, "KE.conditional", "consent: consent on record"),
    # --- Egypt (PDPC, PDPL 151/2020) ------------------------------------------------------
    Case("EG licence alone is not enough (needs equivalence AND licence)",
         (ds("d", "EG", "personal", ground("EG", "pdpc_transfer_licence")),), "ma-1", False,
         "EG.conditional", "equivalent_protection + pdpc_transfer_licence"),
    Case("EG equivalence alone is not enough",
         (ds("d", "EG", "personal"),), "ma-1", False, "EG.conditional",
         "pdpc_transfer_licence", rules_with_adequate("EG", ["MA"])),
    Case("EG equivalence and licence",
         (ds("d", "EG", "personal", ground("EG", "pdpc_transfer_licence", ref="PDPC-3")),),
         "ma-1", True, "EG.conditional", "authorisation PDPC-3",
         rules_with_adequate("EG", ["MA"])),
    Case("EG health by consent + art.15 still needs the licence",
         (ds("d", "EG", "health", ground("EG", "explicit_consent"),
             ground("EG", "art15_case")),), "ke-1", False, "EG.prior-authorisation",
         "pdpc_transfer_licence"),
    Case("EG unknown class counts as sensitive", (ds("d", "EG", "x-ray-archive",
                                                    ground("EG", "explicit_consent"),
                                                    ground("EG", "art15_case")),),
         "ke-1", False, "EG.prior-authorisation", "unknown class, counted as sensitive"),
    Case("EG banking never leaves", (ds("d", "EG", "cbe_regulated_banking"),), "za-1", False,
         "EG.strict-local"),
    # --- across countries -----------------------------------------------------------------
    Case("public data goes anywhere", (ds("d", "EG", "public"),), "za-1", True,
         "classes.unrestricted"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_country_rule(case: Case) -> None:
    verdict = eligible_sites(case.data, SITES, case.rules, NOW).site(case.site)
    assert verdict.lawful is case.allowed
    assert verdict.eligible is case.allowed  # all sites are up here
    legal = [f for f in verdict.findings if f.dataset is not None]
    decisive = next((f for f in legal if not f.allowed), legal[-1])
    assert decisive.rule_id == case.rule_id
    assert decisive.law and decisive.regulator
    if case.allowed:
        assert decisive.basis and case.says in decisive.basis
    else:
        assert decisive.remedy
        assert case.says in decisive.reason + " " + decisive.remedy


def test_every_country_has_three_cases() -> None:
    per_country: dict[str, int] = {}
    for c in CASES:
        for d in c.data:
            for j in d.jurisdictions:
                per_country[j] = per_country.get(j, 0) + 1
    assert {k: v >= 3 for k, v in per_country.items()} == dict.fromkeys(RULES.countries, True)


def test_refusal_names_law_and_regulator_of_the_data() -> None:
    e = eligible_sites([ds("d", "KE", "elections")], SITES, RULES, NOW)
    f = e.site("eg-1").refusals[0]
    assert (f.regulator, f.law) == ("ODPC", RULES.countries["KE"].law)
    assert "ODPC" in f.sentence() and "To make it lawful" in f.sentence()
