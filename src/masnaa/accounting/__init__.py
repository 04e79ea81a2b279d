"""Accounting: allocations, metering, rating and statements. PURE.

No IO, no clock (instants and dates are arguments), no globals. The service
stores what these functions return; the scheduler reads ``project_balances``.

Modules, bottom up: ``errors`` · ``instants`` · ``money`` · ``prices`` (price
lists, discounts, exchange rates) · ``metering`` (segments → usage records,
the preempted-time rule) · ``rating`` (records → line items) ·
``allocation`` (an allocation and its parts: states, roles, tiers, policy) ·
``allocations`` (the lifecycle state machine) · ``supplements`` (members'
supplement requests, granted onto the allocation) · ``balance`` (remaining
GPU-seconds, ``Snapshot.balances``, wait reasons) · ``statements`` (statements,
operator and funders' reports) · ``comparison`` (every site's price in one unit, for
the scheduler's site choice). See docs/accounting.md.
"""

from masnaa.accounting.errors import AccountingError, CurrencyMismatch
from masnaa.accounting.money import Money

__all__ = ["AccountingError", "CurrencyMismatch", "Money"]
