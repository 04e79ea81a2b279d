"""The rules file: the shipped one loads; bad ones are refused naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from residency_builders import RULES

from masnaa.policy.loader import RulesError, default_rules_path, load_rules, parse_rules
from masnaa.policy.rules import StrictLocalMode

SHIPPED = default_rules_path().read_text()


def test_shipped_rules_model_the_five_countries() -> None:
    assert RULES.version == "0.1-draft"
    assert "residency-draft.yaml" in RULES.source
    assert set(RULES.countries) == {"MA", "NG", "KE", "ZA", "EG"}
    assert RULES.countries["KE"].strict_local_mode == StrictLocalMode.SERVING_COPY
    assert RULES.countries["EG"].conditions[0] == ("equivalent_protection",
                                                   "pdpc_transfer_licence")
    assert RULES.resolve_class("no-such-class") == "sensitive"
    assert RULES.regional["AU"]["binds"] == "ratifying_states_only"


def test_digest_follows_content_not_comments() -> None:
    again = parse_rules("# a new comment\n" + SHIPPED)
    assert again.digest == RULES.digest and len(RULES.digest) == 64
    changed = parse_rules(SHIPPED.replace('regulator = "NDPC"', 'regulator = "NDPC (new)"'))
    assert changed.digest != RULES.digest


@pytest.mark.parametrize(
    ("old", "new", "path", "says"),
    [
        ('strict_local_mode = "process_in_country_or_serving_copy_in_country"',
         'strict_local_mode = "sometimes"', "countries.KE.strict_local_mode", "is not one of"),
        ('["informed_consent"]', '["informed_consnet"]', "countries.NG.conditions",
         "not declared in [conditions]"),
        ('strict_local_classes = ["cbe_regulated_banking"',
         'strict_local_classes = ["cbe_banking"', "countries.EG.strict_local_classes",
         "not in classes.known"),
        ('transfer_default = "conditional"   # nearest',
         'transfer_default = "maybe"   # nearest', "countries.EG.transfer_default", "maybe"),
        ("[countries.MA]", "[countries.Morocco]", "countries.Morocco", "ISO 3166"),
        ('law = "Nigeria', 'lawz = "x"\nlaw = "Nigeria', "countries.NG.lawz", "unknown key"),
        ('authorisation_condition = "pdpc_transfer_licence"',
         'authorisation_condition = "explicit_consent"', "countries.EG.authorisation_condition",
         "kind 'authorisation'"),
        ('unknown_class = "sensitive"', 'unknown_class = "secret"', "defaults.unknown_class",
         "not in classes.known"),
        ('cross_site_is_transfer = true', 'cross_site_is_transfer = "yes"',
         "defaults.cross_site_is_transfer", "true or false"),
        ('pdpc_transfer_licence = "authorisation"', 'pdpc_transfer_licence = "permit"',
         "conditions.pdpc_transfer_licence", "is not one of"),
        ('["equivalent_protection", "pdpc_transfer_licence"]', '[]',
         "countries.EG.conditions[0]", "non-empty list"),
    ],
)
def test_bad_rules_name_the_key_path(old: str, new: str, path: str, says: str) -> None:
    assert old in SHIPPED
    with pytest.raises(RulesError) as err:
        parse_rules(SHIPPED.replace(old, new, 1))
    assert err.value.path == path
    assert says in err.value.message
    assert err.value.code == "rules-invalid"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="not valid TOML"):
        parse_rules("version = ")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")
    target = tmp_path / "rules.toml"
    target.write_text(SHIPPED)
    assert load_rules(target).digest == RULES.digest
