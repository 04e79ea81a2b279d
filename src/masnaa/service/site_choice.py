"""What the scheduler needs from the store to choose among sites: prices and preferences.

The core ranks a job's eligible sites by the tenant's preference, then price
(docs/scheduler.md "Site choice"). This module reads both for the control loop:

- **preferences**: the factory file declares ``preferred_sites`` per tenant;
  ``factory.apply`` keeps them in one ``service_state`` row
  (``PREFERENCES_KEY``: tenant → sites, best first). ``with_preferences`` puts
  them on the ``Tenant`` values the snapshot carries.
- **prices**: the accounting store's rate cards and exchange rates (the very
  ones rating uses), in one comparison unit at the current instant
  (``accounting.comparison``). ``SitePrices`` re-reads them at most every
  ``interval`` seconds and whenever the UTC day changes (prices are dated per
  day), so a pass costs nothing and a new rate card counts within minutes.

Invariants: a broken price list never stops scheduling (it is logged, and
sites then rank without prices); a preference naming an unknown site is
harmless (it ranks nothing).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session

from masnaa import domain
from masnaa.accounting.comparison import ComparisonPrices, comparison_prices
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, to_second
from masnaa.factory.apply import PREFERENCES_KEY
from masnaa.service.terms import exchange_rates, price_book
from masnaa.store import models as m

log = logging.getLogger(__name__)


def load_preferences(session: Session) -> dict[str, tuple[str, ...]]:
    """Tenant → preferred sites, best first (as the factory file declared them)."""
    row = session.get(m.ServiceState, PREFERENCES_KEY)
    value = row.value if row is not None else {}
    return {t: tuple(str(s) for s in sites) for t, sites in value.items() if sites}


def with_preferences(
    tenants: Mapping[str, domain.Tenant], preferences: Mapping[str, tuple[str, ...]]
) -> dict[str, domain.Tenant]:
    """``tenants`` with their ``preferred_sites`` set (tenants without one keep ``()``)."""
    return {
        name: dataclasses.replace(t, preferred_sites=preferences.get(name, ()))
        for name, t in tenants.items()
    }


def load_prices(session: Session, now: float) -> ComparisonPrices:
    """Every (site, GPU type)'s price in force at ``now``, in one unit."""
    t = to_second(now)
    return comparison_prices(price_book(session), exchange_rates(session), t)


class SitePrices:
    """The loop's comparison prices, re-read every ``interval`` s and at each new UTC day."""

    def __init__(self, interval: float = 300.0) -> None:
        self.interval = interval
        self.current: ComparisonPrices | None = None
        self._read_at: float | None = None

    def due(self, now: float) -> bool:
        last = self._read_at
        return last is None or now - last >= self.interval or now // DAY != last // DAY

    def refresh(self, session: Session, now: float) -> None:
        """Re-read the prices if ``due``."""
        if not self.due(now):
            return
        self._read_at = now
        try:
            self.current = load_prices(session, now)
        except AccountingError as exc:
            log.warning("site prices unusable, sites rank without them: %s", exc)
            self.current = None
        if self.current is not None and self.current.left_out:
            log.warning(
                "no %s exchange rate for the prices of %s: they rank after priced sites",
                self.current.unit,
                ", ".join(f"{t} at {s}" for s, t in self.current.left_out),
            )

    @property
    def value(self) -> Mapping[tuple[str, str], float] | None:
        """For ``Snapshot.site_prices`` (``None``: no price known)."""
        if self.current is None or not self.current.prices:
            return None
        return self.current.prices
