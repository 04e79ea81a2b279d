"""Who uses the factory: tenants, projects, quotas and priority classes.

A tenant's ``share`` is its fair-share weight: the fraction of the factory it
is entitled to when everyone wants more than they get (shares are normalised
over tenants with demand, so they need not sum to one). Its
``preferred_sites`` rank the eligible sites a job of it could start at.

A quota is per tenant × site × GPU type (Kueue's ClusterQueue resource group,
in our words): ``nominal`` GPUs are guaranteed; up to ``borrowing_limit`` more
may be borrowed from idle capacity (``None``: no limit); at most
``lending_limit`` of the nominal GPUs may be lent to others while idle
(``None``: all). Borrowed GPUs are reclaimable by preemption when the lender
wants them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TenantKind(StrEnum):
    UNIVERSITY = "university"
    RESEARCH_INSTITUTE = "research-institute"
    STARTUP = "startup"
    ENTERPRISE = "enterprise"
    PUBLIC_BODY = "public-body"
    NGO = "ngo"


MAX_SHARE = 1_000_000.0
"""The largest share a tenant may have. Shares are weights relative to each other, so
a million to one is more range than any site needs; a bound keeps their sum finite."""


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    kind: TenantKind = TenantKind.UNIVERSITY
    country: str = "MA"
    share: float = 1.0
    preferred_sites: tuple[str, ...] = ()
    """Sites this tenant's jobs should run at when several could take them, most
    preferred first; sites not listed come after, equally (docs/scheduler.md, "Site
    choice"). A preference only ranks eligible sites: it never makes one eligible."""

    def __post_init__(self) -> None:
        if not 0 <= self.share <= MAX_SHARE:
            raise ValueError(
                f"tenant {self.name!r}: share must be between 0 and {MAX_SHARE:g}, "
                f"got {self.share}"
            )
        if len(set(self.preferred_sites)) != len(self.preferred_sites):
            raise ValueError(
                f"tenant {self.name!r}: preferred_sites lists a site twice "
                f"({', '.join(self.preferred_sites)}); name each site once, best first"
            )


@dataclass(frozen=True, slots=True)
class Project:
    name: str
    tenant: str


@dataclass(frozen=True, slots=True)
class Quota:
    tenant: str
    site: str
    gpu_type: str
    nominal: int
    borrowing_limit: int | None = None
    lending_limit: int | None = None

    def __post_init__(self) -> None:
        for label, value in (
            ("nominal", self.nominal),
            ("borrowing_limit", self.borrowing_limit),
            ("lending_limit", self.lending_limit),
        ):
            if value is not None and value < 0:
                raise ValueError(f"quota of {self.tenant!r}: {label} must be ≥ 0, got {value}")


@dataclass(frozen=True, slots=True)
class PriorityClass:
    """A named priority. Higher ``value`` runs first.

    ``preemptible``: jobs of this class may be preempted.
    ``can_preempt``: jobs of this class may cause preemption of lower ones.
    ``grace_seconds``: checkpoint window given to a preempted job of this class.
    """

    name: str
    value: int
    preemptible: bool = True
    can_preempt: bool = True
    grace_seconds: float = 120.0


DEFAULT_PRIORITY_CLASSES: tuple[PriorityClass, ...] = (
    PriorityClass("low", 0, preemptible=True, can_preempt=False),
    PriorityClass("normal", 100),
    PriorityClass("high", 200, preemptible=False),
)
