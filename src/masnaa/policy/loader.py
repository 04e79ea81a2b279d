"""Reading the operator's rules file into a pure ``RuleSet``: the only IO of ``policy``.

Owns: the TOML format of the residency rules (``masnaa/data/residency/rules.toml``
is the shipped default) and its validation. Every error is a ``RulesError``
naming the key path (``countries.KE.strict_local_mode``), what was wrong and
what would be right; nothing half-valid is returned.

TOML is read with the standard library (``tomllib``), so the rules need no
extra dependency and keep comments next to the values they explain.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from masnaa.policy.rules import (
    ConditionKind,
    CountryRule,
    InconsistentRules,
    RuleSet,
    StrictLocalMode,
    TransferDefault,
)

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_TOP_KEYS = {
    "version", "source", "defaults", "classes", "download", "conditions", "countries", "regional",
}
_COUNTRY_KEYS = {
    "regulator", "law", "transfer_default", "conditions", "strict_local_classes",
    "strict_local_mode", "prior_authorisation_classes", "authorisation_condition",
    "prior_authorisation_unless_adequate", "sensitive_transfer", "adequate_destinations",
}


class RulesError(ValueError):
    """The rules file is not valid. ``path`` is the TOML key path of the fault."""

    code = "rules-invalid"

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def default_rules_path() -> Path:
    """The rules file shipped with Masnaa (derived from the reference draft)."""
    return Path(str(resources.files("masnaa").joinpath("data", "residency", "rules.toml")))


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Read and validate a rules file (the shipped default when ``path`` is None)."""
    p = Path(path) if path is not None else default_rules_path()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError("<file>", f"cannot read {p}: {exc.strerror}") from exc
    return parse_rules(text)


def parse_rules(text: str) -> RuleSet:
    """Validate TOML text and build a ``RuleSet``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError("<file>", f"not valid TOML: {exc}") from exc
    return rules_from_mapping(raw)


def rules_from_mapping(raw: Mapping[str, Any]) -> RuleSet:
    _no_extra(raw, _TOP_KEYS, "")
    version = _str(raw, "version", "")
    defaults = _table(raw, "defaults", "", required=False)
    _no_extra(defaults, {"cross_site_is_transfer", "remote_admin_access_is_transfer",
                         "unknown_class"}, "defaults")
    classes = _table(raw, "classes", "")
    _no_extra(classes, {"known", "unrestricted", "sensitive"}, "classes")
    known = _str_list(classes, "known", "classes")
    if not known:
        raise RulesError("classes.known", "list at least one data class")
    download = _table(raw, "download", "", required=False)
    _no_extra(download, {"roles"}, "download")

    kinds_raw = _table(raw, "conditions", "")
    kinds: dict[str, ConditionKind] = {}
    for name, kind in kinds_raw.items():
        kinds[name] = _enum(ConditionKind, kind, f"conditions.{name}")

    countries_raw = _table(raw, "countries", "")
    countries = {code: _country(code, body) for code, body in countries_raw.items()}

    regional_raw = _table(raw, "regional", "", required=False)
    regional: dict[str, dict[str, str]] = {}
    for name, body in regional_raw.items():
        if not isinstance(body, Mapping):
            raise RulesError(f"regional.{name}", "expected a table")
        regional[name] = {k: str(v) for k, v in body.items()}

    fields: dict[str, Any] = {
        "version": version,
        "source": _str(raw, "source", "", required=False) or "",
        "countries": countries,
        "condition_kinds": kinds,
        "known_classes": tuple(known),
        "unrestricted_classes": frozenset(
            _str_list(classes, "unrestricted", "classes", required=False)),
        "sensitive_classes": frozenset(_str_list(classes, "sensitive", "classes", required=False)),
        "unknown_class": _str(defaults, "unknown_class", "defaults", required=False)
        or "sensitive",
        "cross_site_is_transfer": _bool(defaults, "cross_site_is_transfer", "defaults", True),
        "remote_admin_access_is_transfer": _bool(
            defaults, "remote_admin_access_is_transfer", "defaults", True),
        "regional": regional,
    }
    if "roles" in download:
        fields["download_roles"] = frozenset(_str_list(download, "roles", "download"))
    try:
        return RuleSet(**fields)
    except InconsistentRules as exc:
        path, message = exc.problems[0]
        raise RulesError(path, message) from None


def _country(code: str, body: Any) -> CountryRule:
    base = f"countries.{code}"
    if not _COUNTRY.match(code):
        raise RulesError(base, "a country key is an ISO 3166 alpha-2 code such as 'MA'")
    if not isinstance(body, Mapping):
        raise RulesError(base, "expected a table")
    _no_extra(body, _COUNTRY_KEYS, base)
    conditions_raw = body.get("conditions", [])
    if not isinstance(conditions_raw, list):
        raise RulesError(f"{base}.conditions", "expected a list of lists of condition names")
    alternatives: list[tuple[str, ...]] = []
    for i, alt in enumerate(conditions_raw):
        where = f"{base}.conditions[{i}]"
        if not isinstance(alt, list) or not alt or not all(isinstance(c, str) for c in alt):
            raise RulesError(where, "each alternative is a non-empty list of condition names, "
                             "e.g. [\"express_consent\"] or [\"a\", \"b\"] when both are needed")
        alternatives.append(tuple(alt))
    sensitive = body.get("sensitive_transfer")
    if sensitive is not None and (
        not isinstance(sensitive, list) or not sensitive
        or not all(isinstance(c, str) for c in sensitive)
    ):
        raise RulesError(f"{base}.sensitive_transfer",
                         "expected a non-empty list of condition names that must all hold")
    adequate = _str_list(body, "adequate_destinations", base, required=False)
    for i, dest in enumerate(adequate):
        if not _COUNTRY.match(dest):
            raise RulesError(f"{base}.adequate_destinations[{i}]",
                             f"{dest!r} is not an ISO 3166 alpha-2 code such as 'ZA'")
    return CountryRule(
        code=code,
        regulator=_str(body, "regulator", base),
        law=_str(body, "law", base),
        transfer_default=_enum(
            TransferDefault, body.get("transfer_default", "conditional"),
            f"{base}.transfer_default"),
        conditions=tuple(alternatives),
        strict_local_classes=frozenset(
            _str_list(body, "strict_local_classes", base, required=False)),
        strict_local_mode=_enum(
            StrictLocalMode, body.get("strict_local_mode", "process_in_country"),
            f"{base}.strict_local_mode"),
        prior_authorisation_classes=frozenset(
            _str_list(body, "prior_authorisation_classes", base, required=False)),
        authorisation_condition=_str(body, "authorisation_condition", base, required=False),
        prior_authorisation_unless_adequate=_bool(
            body, "prior_authorisation_unless_adequate", base, False),
        sensitive_transfer=None if sensitive is None else tuple(sensitive),
        adequate_destinations=frozenset(adequate),
    )


def _no_extra(table: Mapping[str, Any], allowed: set[str], base: str) -> None:
    for key in table:
        if key not in allowed:
            path = f"{base}.{key}" if base else key
            raise RulesError(path, f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _table(raw: Mapping[str, Any], key: str, base: str, *, required: bool = True
           ) -> Mapping[str, Any]:
    path = f"{base}.{key}" if base else key
    value = raw.get(key)
    if value is None:
        if required:
            raise RulesError(path, "missing table")
        return {}
    if not isinstance(value, Mapping):
        raise RulesError(path, "expected a table")
    return value


def _str(raw: Mapping[str, Any], key: str, base: str, *, required: bool = True) -> Any:
    path = f"{base}.{key}" if base else key
    value = raw.get(key)
    if value is None:
        if required:
            raise RulesError(path, "missing; expected a string")
        return None
    if not isinstance(value, str) or not value:
        raise RulesError(path, f"expected a non-empty string, got {value!r}")
    return value


def _str_list(raw: Mapping[str, Any], key: str, base: str, *, required: bool = True
              ) -> list[str]:
    path = f"{base}.{key}" if base else key
    value = raw.get(key)
    if value is None:
        if required:
            raise RulesError(path, "missing; expected a list of strings")
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RulesError(path, f"expected a list of non-empty strings, got {value!r}")
    return list(value)


def _bool(raw: Mapping[str, Any], key: str, base: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise RulesError(f"{base}.{key}", f"expected true or false, got {value!r}")
    return value


_E = TypeVar("_E", TransferDefault, StrictLocalMode, ConditionKind)


def _enum(enum: type[_E], value: Any, path: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum)
        raise RulesError(path, f"{value!r} is not one of {choices}") from None
