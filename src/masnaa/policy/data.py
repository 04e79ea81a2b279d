"""What residency reasons about: data descriptors, transfer grounds and site views.

Owns: ``Dataset`` (a registered dataset or a job's output artifact: same
shape), ``TransferGround``, ``SiteView`` and lineage (``derive_artifact``).

Invariants:
- a dataset has at least one jurisdiction and one class; every ground it holds
  is under one of its jurisdictions;
- an authorisation ground carries the regulator's reference and an expiry;
- all datetimes are timezone-aware (compared with the caller's ``now``);
- ``version`` changes whenever class, jurisdictions, grounds or serving copies
  change: caches key on ``(id, version)``.

Terms: a *jurisdiction* is a country whose law governs the data (ISO 3166
alpha-2); a *ground* is a recorded legal basis for a transfer out of one
jurisdiction, naming the rules' condition it satisfies; a *serving copy* is a
copy kept in a country while the data is processed elsewhere (Kenya's mode).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from masnaa.domain import Site
from masnaa.policy.rules import ConditionKind

GroundKind = ConditionKind
"""The evidence a ground is: consent, authorisation, contract, safeguards, necessity, adequacy."""


class SiteState(StrEnum):
    UP = "up"
    DRAINED = "drained"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class SiteView:
    """What residency needs of a site: its name, country and state."""

    name: str
    country: str
    state: SiteState = SiteState.UP

    @staticmethod
    def of(site: Site, state: SiteState = SiteState.UP) -> SiteView:
        return SiteView(site.name, site.country, state)


def utc_instant(value: datetime) -> str:
    """``2026-11-28T15:25:00Z``: a timezone-aware time as the UTC instant it is."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _aware(value: datetime | None, what: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, e.g. datetime(..., tzinfo=UTC)")


@dataclass(frozen=True, slots=True)
class TransferGround:
    """A recorded legal basis for moving data out of ``country``.

    ``condition`` is the rules' condition it satisfies (``express_consent``);
    ``destinations`` limits the countries it covers (``None``: any).
    The ground holds while ``now < expires`` (``None``: no expiry).
    """

    country: str
    condition: str
    kind: GroundKind
    reference: str | None = None
    expires: datetime | None = None
    destinations: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _aware(self.expires, f"ground {self.condition!r}: expires")
        if self.kind is GroundKind.AUTHORISATION and (not self.reference or not self.expires):
            raise ValueError(
                f"ground {self.condition!r}: a regulator's authorisation needs its reference "
                "and its expiry"
            )

    def valid_at(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires

    def covers(self, destination: str) -> bool:
        return self.destinations is None or destination in self.destinations

    def describe(self) -> str:
        """The legal basis in words, e.g. ``authorisation CNDP-42 valid until
        2027-03-31T15:25:00Z``: the expiry to the second in UTC (fractions when it has
        them), so a placement on the expiry day can be told before or after it."""
        if self.kind is GroundKind.AUTHORISATION:
            text = f"authorisation {self.reference}"
        else:
            text = f"{self.kind.value} on record"
            if self.reference:
                text += f" ({self.reference})"
        if self.expires is not None:
            text += f" valid until {utc_instant(self.expires)}"
        return f"{self.condition}: {text}"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset or an artifact (a job's output); artifacts have ``derived_from``.

    ``classes`` holds one class for a registered dataset and every input class
    for an artifact (the rules check all of them, so the strictest governs).
    """

    id: str
    home_site: str
    jurisdictions: frozenset[str]
    classes: frozenset[str]
    owner: str
    grounds: tuple[TransferGround, ...] = ()
    serving_copy_countries: frozenset[str] = frozenset()
    version: int = 1
    derived_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.jurisdictions:
            raise ValueError(f"dataset {self.id!r}: name at least one jurisdiction (country)")
        if not self.classes:
            raise ValueError(f"dataset {self.id!r}: name its data class (e.g. 'personal')")
        for g in self.grounds:
            if g.country not in self.jurisdictions:
                raise ValueError(
                    f"dataset {self.id!r}: ground {g.condition!r} is under {g.country}, "
                    f"which is not one of its jurisdictions {sorted(self.jurisdictions)}"
                )

    @property
    def is_artifact(self) -> bool:
        return bool(self.derived_from)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.version)


Artifact = Dataset
"""An artifact is a dataset with lineage (``derived_from``)."""


def dataset(
    id: str,
    *,
    jurisdiction: str,
    data_class: str,
    home_site: str,
    owner: str = "owner",
    grounds: Iterable[TransferGround] = (),
    serving_copy_countries: Iterable[str] = (),
    version: int = 1,
) -> Dataset:
    """A registered dataset: one jurisdiction, one class."""
    return Dataset(
        id=id,
        home_site=home_site,
        jurisdictions=frozenset({jurisdiction}),
        classes=frozenset({data_class}),
        owner=owner,
        grounds=tuple(grounds),
        serving_copy_countries=frozenset(serving_copy_countries),
        version=version,
    )


def derive_artifact(
    id: str,
    inputs: Iterable[Dataset],
    *,
    home_site: str,
    owner: str,
    grounds: Iterable[TransferGround] = (),
    version: int = 1,
) -> Dataset:
    """The artifact of a job that read ``inputs``: every class and jurisdiction they had.

    Grounds and serving copies are NOT inherited: consent or a licence to move
    the inputs is not one to move what was made of them; record new ones.
    """
    ins = tuple(inputs)
    if not ins:
        raise ValueError(f"artifact {id!r}: name the datasets it was derived from")
    return Dataset(
        id=id,
        home_site=home_site,
        jurisdictions=frozenset().union(*(d.jurisdictions for d in ins)),
        classes=frozenset().union(*(d.classes for d in ins)),
        owner=owner,
        grounds=tuple(grounds),
        version=version,
        derived_from=tuple(d.id for d in ins),
    )


def dataset_key(datasets: Iterable[Dataset]) -> frozenset[tuple[str, int]]:
    """The cache key of a set of datasets: their ``(id, version)`` pairs."""
    return frozenset(d.key for d in datasets)
