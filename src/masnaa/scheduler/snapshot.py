"""``Snapshot``: everything one scheduling pass reads, bundled by the driver.

The snapshot holds references to the driver's live state objects
(``ClusterState``, ``UsageLedger``); ``decide()`` only reads them. Tenants
missing from ``tenants`` count with share 1.0; jobs naming a priority class
missing from ``priority_classes`` count with value 0, preemptible, unable to
preempt.

Allocation balances (``balances``): project → pool (site, GPU type) → remaining
allocation in GPU-seconds, as the driver knows it at the start of the pass. ``None``
turns enforcement off; a project absent from the mapping is not enforced; a pool
absent from a project's mapping has nothing left. Within a pass a job starts only
in a pool where ``balance(pool) − Σ gpus × time_limit of the jobs of that project
already started there in this pass > 0``; where none of the pools it may use
qualifies it waits with ``WaitCode.ALLOCATION_EXHAUSTED`` (``admit``). Running
jobs are charged by the driver as they run, so a pool's balance can go negative by
at most the time-limit worth of the jobs running there when it reached zero; the
driver decides whether to stop them.

Oracle (``oracle``): job id → true remaining runtime in seconds, for pending
and running jobs. Only policies with ``oracle = True`` ever see it:
``decide()`` replaces it with ``None`` for every other policy.

Site prices (``site_prices``): plain numbers in ONE unit for every site (the
live service converts each site's rate card to US dollars at the day's
exchange rate, ``accounting.comparison``); only their order matters.
Tenants' ``preferred_sites`` come with ``tenants``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES, PriorityClass, Quota, Tenant
from masnaa.scheduler.state import ClusterState
from masnaa.scheduler.usage import UsageLedger

DEFAULT_CLASSES: Mapping[str, PriorityClass] = MappingProxyType(
    {p.name: p for p in DEFAULT_PRIORITY_CLASSES}
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a pass reads (see the module docstring for the balance and oracle rules)."""

    state: ClusterState
    usage: UsageLedger
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    quotas: tuple[Quota, ...] = ()
    priority_classes: Mapping[str, PriorityClass] = field(default_factory=lambda: DEFAULT_CLASSES)
    balances: Mapping[str, Mapping[tuple[str, str], float]] | None = None
    oracle: Mapping[str, float] | None = None
    site_prices: Mapping[tuple[str, str], float] | None = None
    """(site, GPU type) → price of one GPU-hour in one comparison unit, for choosing
    among sites (``place.SiteChoice``); a pair without a price ranks after priced ones."""
    reserved_for: str | None = None
    """The job that held the EASY reservation in the last decision the driver applied
    (``Decision.reserved_for`` keeps it from pass to pass); read only with
    ``SchedulerConfig.hold_reservation``."""
