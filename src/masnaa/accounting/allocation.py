"""An allocation and its parts: the value types of the lifecycle.

An **allocation** is a grant (research) or purchase (start-ups) of GPU-time
for one project, in pools of (site, GPU type), from a start date to an expiry
date. This module holds what an allocation is — its ``State`` (``LIVE``: the
award exists and may still change), its members' ``Role``, the ``Amount``
asked, awarded or added, the request ``Tier`` and the operator's
``AllocationPolicy``, its reviews, progress reports and history — and what it
holds now (``Allocation.released``, ``credits_available``). The commands that
move it through its life are in ``accounting.allocations``.

A **supplement request** (``accounting.supplements``) is an ``Allocation``
with ``supplement_of`` set: it is reviewed like a request and, once an
operator grants it, its GPU-time is added to the allocation it names, and it
ends ``granted`` (it never holds GPU-time itself, so it is never usable).

**Credits**: an award may be in credits; the PI or an allocation manager
exchanges released credits for GPU-time in a pool at the operator's rate
(``AllocationPolicy.credit_rates``: credits per GPU-hour; an H100-hour costs
more credits than an L40S-hour).

Roles: ``pi`` (one, owns the request), ``co-pi``, ``allocation-manager``,
``member``. The PI and co-PIs file reports and requests; the PI and managers
manage members and exchange credits; members only run jobs against it.

All amounts inside are integer GPU-seconds (hours × 3600, exact for amounts
given to the second) or ``Decimal`` credits. Times are arguments; nothing
reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import HOUR, Instant, at
from masnaa.accounting.money import to_decimal

Pool = tuple[str, str]
"""(site, GPU type)."""


class Role(StrEnum):
    PI = "pi"
    CO_PI = "co-pi"
    MANAGER = "allocation-manager"
    MEMBER = "member"


class State(StrEnum):
    REQUESTED = "requested"
    IN_REVIEW = "in-review"
    APPROVED = "approved"
    REJECTED = "rejected"
    AWARDED = "awarded"
    ACTIVE = "active"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    CLOSED = "closed"
    GRANTED = "granted"
    """A supplement request whose GPU-time was added to the allocation it names."""


LIVE = frozenset({State.AWARDED, State.ACTIVE, State.EXHAUSTED})
"""States in which the award exists and may still change (tranches, supplements)."""

RENEWABLE = LIVE | {State.EXPIRED}
"""States an allocation may be renewed from: its award exists (a request still in
review, or rejected, has no record a reviewer could credit the renewal with)."""


def hours_to_seconds(hours: Decimal | int | str, what: str) -> int:
    h = to_decimal(hours)
    if h < 0:
        raise AccountingError(
            "negative-hours", f"{what}: {h} GPU-hours is negative; amounts must be ≥ 0"
        )
    return int((h * HOUR).to_integral_value(ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class Amount:
    """GPU-hours per pool and/or credits: what is asked, awarded or added."""

    gpu_hours: Mapping[Pool, Decimal] = field(default_factory=dict)
    credits: Decimal = Decimal(0)

    def seconds(self, what: str) -> dict[Pool, int]:
        if to_decimal(self.credits) < 0:
            raise AccountingError(
                "negative-hours", f"{what}: {self.credits} credits is negative; use ≥ 0"
            )
        return {
            p: hours_to_seconds(h, f"{what} for {p[1]} at {p[0]}")
            for p, h in self.gpu_hours.items()
        }

    def total_hours(self) -> Decimal:
        return sum((to_decimal(h) for h in self.gpu_hours.values()), Decimal(0))


@dataclass(frozen=True, slots=True)
class Tier:
    """A request tier: caps, review steps and release rules (operator data)."""

    name: str
    max_gpu_hours: Decimal | None = None
    max_credits: Decimal | None = None
    auto_approve: bool = False
    review_steps: tuple[str, ...] = ("admin-check", "technical", "merit")
    tranches: tuple[Decimal, ...] = (Decimal(1),)
    tranche_needs_report: bool = True
    max_supplements: int = 1
    max_supplement_fraction: Decimal = Decimal("0.5")
    max_duration_days: int = 366
    max_extension_days: int = 90
    programme: str = "default"
    report_after_days: tuple[int, ...] = ()
    """Progress reports fall due this many days after the start; when any are
    set, a final report falls due at expiry too."""

    def __post_init__(self) -> None:
        if not self.tranches or sum(self.tranches) != 1 or any(f <= 0 for f in self.tranches):
            raise AccountingError(
                "bad-tier",
                f"tier {self.name!r}: tranches {self.tranches} must be positive fractions "
                "summing to 1",
            )
        if not self.auto_approve and not self.review_steps:
            raise AccountingError(
                "bad-tier", f"tier {self.name!r} is reviewed but has no review steps"
            )


DEFAULT_TIERS: tuple[Tier, ...] = (
    # Credit tiers after NSF ACCESS (Explore 400k, Discover 1.5M, Accelerate
    # 3M credits, Maximize panel-reviewed; half up front, half after a progress
    # report; one supplement of up to 50 %). Review steps after EuroHPC
    # (admin check → technical → peer review). GPU-hour tiers after the UK AIRR
    # (Gateway ≤ 10k GPU-hours in 3 months; Innovator 50–150k in 6 months;
    # open call ≤ 1.4M). Source: shared/reference/README.md, "Allocation
    # programmes". All operator settings.
    Tier(
        "explore",
        max_credits=Decimal(400_000),
        auto_approve=True,
        review_steps=(),
        programme="research",
    ),
    Tier(
        "discover",
        max_credits=Decimal(1_500_000),
        review_steps=("admin-check", "technical"),
        programme="research",
    ),
    Tier(
        "accelerate",
        max_credits=Decimal(3_000_000),
        tranches=(Decimal("0.5"), Decimal("0.5")),
        programme="research",
    ),
    Tier("maximize", tranches=(Decimal("0.5"), Decimal("0.5")), programme="research"),
    Tier(
        "gateway",
        max_gpu_hours=Decimal(10_000),
        auto_approve=True,
        review_steps=(),
        max_duration_days=92,
        programme="research",
    ),
    Tier(
        "innovator",
        max_gpu_hours=Decimal(150_000),
        review_steps=("admin-check", "technical"),
        max_duration_days=183,
        programme="innovation",
    ),
    Tier(
        "open-call",
        max_gpu_hours=Decimal(1_400_000),
        tranches=(Decimal("0.5"), Decimal("0.5")),
        programme="research",
        # Reports at 1, 3 and 9 months, then a final one, after the NAIRR
        # pilot (shared/reference/README.md).
        report_after_days=(30, 91, 274),
    ),
    Tier(
        "purchase",
        auto_approve=True,
        review_steps=(),
        max_supplements=1_000_000,
        max_supplement_fraction=Decimal(1_000_000),
        programme="commercial",
    ),
)

DEFAULT_CREDIT_RATES: Mapping[str, Decimal] = {
    # Credits per GPU-hour by GPU type (operator setting; the ratio follows the
    # list prices in prices.REFERENCE_USD_PER_GPU_HOUR).
    "b200": Decimal(160),
    "h200": Decimal(120),
    "h100-sxm-80gb": Decimal(100),
    "a100-80gb": Decimal(60),
    "l40s": Decimal(35),
}


@dataclass(frozen=True, slots=True)
class AllocationPolicy:
    tiers: Mapping[str, Tier]
    reviewers: Mapping[str, frozenset[str]]
    """review step → users who may review it."""
    operators: frozenset[str]
    credit_rates: Mapping[Pool, Decimal] = field(default_factory=dict)
    """credits per GPU-hour per pool; a missing pool falls back to
    ``type_credit_rates`` for its GPU type."""
    type_credit_rates: Mapping[str, Decimal] = field(
        default_factory=lambda: dict(DEFAULT_CREDIT_RATES)
    )

    @staticmethod
    def default(
        reviewers: Mapping[str, frozenset[str]], operators: frozenset[str]
    ) -> AllocationPolicy:
        return AllocationPolicy({t.name: t for t in DEFAULT_TIERS}, reviewers, operators)

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise AccountingError(
                "unknown-tier", f"no tier {name!r}; choose one of {sorted(self.tiers)}"
            ) from None

    def credits_per_hour(self, pool: Pool) -> Decimal:
        rate = self.credit_rates.get(pool) or self.type_credit_rates.get(pool[1])
        if rate is None or rate <= 0:
            raise AccountingError(
                "no-credit-rate",
                f"no credit exchange rate for {pool[1]} at {pool[0]}; the operator must set one",
            )
        return rate


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    step: str
    reviewer: str
    approve: bool
    comment: str
    at: Instant


@dataclass(frozen=True, slots=True)
class ProgressReport:
    by: str
    text: str
    products: tuple[str, ...]
    """DOIs, papers, models, software."""
    at: Instant


@dataclass(frozen=True, slots=True)
class Event:
    at: Instant
    by: str
    what: str


@dataclass(frozen=True, slots=True)
class Allocation:
    id: str
    project: str
    tier: str
    state: State
    members: Mapping[str, Role]
    requested: Amount
    start: date
    expires: date
    justification: str
    reviews: tuple[ReviewRecord, ...] = ()
    awarded: Mapping[Pool, int] = field(default_factory=dict)
    """GPU-seconds awarded directly (released in tranches)."""
    awarded_credits: Decimal = Decimal(0)
    tranches: tuple[Decimal, ...] = (Decimal(1),)
    released_tranches: int = 0
    supplemented: Mapping[Pool, int] = field(default_factory=dict)
    supplemented_credits: Decimal = Decimal(0)
    supplements: int = 0
    exchanged: Mapping[Pool, int] = field(default_factory=dict)
    exchanged_credits: Decimal = Decimal(0)
    reports: tuple[ProgressReport, ...] = ()
    last_release_at: Instant | None = None
    lapsed_gpu_seconds: int = 0
    renewal_of: str | None = None
    first_expires: date | None = None
    """The expiry before any extension (extensions are capped against it)."""
    history: tuple[Event, ...] = ()
    supplement_of: str | None = None
    """Set on a supplement request: the allocation its GPU-time is added to."""

    @property
    def pi(self) -> str:
        return next(u for u, r in self.members.items() if r is Role.PI)

    @property
    def released_fraction(self) -> Decimal:
        return sum(self.tranches[: self.released_tranches], Decimal(0))

    def released(self) -> dict[Pool, int]:
        """GPU-seconds usable now, per pool: released tranches of the direct
        award, plus supplements and exchanged credits (released in full)."""
        frac = self.released_fraction
        out: dict[Pool, int] = {}
        for p, s in self.awarded.items():
            out[p] = s if frac == 1 else int((s * frac).to_integral_value(ROUND_FLOOR))
        for src in (self.supplemented, self.exchanged):
            for p, s in src.items():
                out[p] = out.get(p, 0) + s
        return out

    def awarded_total_seconds(self) -> int:
        """All GPU-seconds awarded, released or not, including supplements and
        exchanged credits (for funders)."""
        return (
            sum(self.awarded.values())
            + sum(self.supplemented.values())
            + sum(self.exchanged.values())
        )

    @property
    def credits_available(self) -> Decimal:
        """Released credits not yet exchanged."""
        return (
            self.awarded_credits * self.released_fraction
            + self.supplemented_credits
            - self.exchanged_credits
        )

    def role_of(self, user: str) -> Role | None:
        return self.members.get(user)

    @property
    def starts_at(self) -> Instant:
        return at(self.start)

    @property
    def expires_at(self) -> Instant:
        return at(self.expires)
