"""Supplement requests: members ask for more GPU-time on a live allocation.

A **supplement request** is an ``Allocation`` with ``supplement_of`` naming
the live allocation (the *base*) it would add to. Its life:

    requested ─► in-review ─► approved ─► granted
        └───────────┴─► rejected          (closed: withdrawn by the PI or an operator)

- Any member of the base (PI, co-PI, allocation manager, member) may ask,
  with an amount (GPU-hours per pool and/or credits) and a justification,
  while the base is live (awarded, active or exhausted). What the base's
  tier could never grant is refused at once, with the same codes as a direct
  supplement (``too-many-supplements``, ``supplement-too-large``).
- It runs the base tier's review steps (``allocations.review`` unchanged);
  the base's members are its members, so none of them may review it
  (``conflict-of-interest``). In a tier without review steps it is approved
  at once and waits for an operator, like every supplement.
- An operator **grants** an approved request, with the amount asked or
  another one: ``allocations.supplement`` adds it to the base (the tier's
  caps are checked again, since other supplements may have come meanwhile)
  and the request ends ``granted``. Its GPU-time lives on the base only, so
  balances, statements and reports never count it twice.
- ``allocations.award`` refuses a supplement request (``supplement-request``).

Pure: times are arguments; each command returns new values.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from masnaa.accounting.allocation import (
    LIVE,
    Allocation,
    AllocationPolicy,
    Amount,
    Event,
    State,
)
from masnaa.accounting.allocations import check_supplement, supplement
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import Instant


def request_supplement(
    base: Allocation,
    policy: AllocationPolicy,
    *,
    id: str,
    by: str,
    amount: Amount,
    justification: str,
    at_: Instant,
) -> Allocation:
    """A member's request for more GPU-time on ``base``, to be reviewed."""
    if base.state not in LIVE:
        raise AccountingError(
            "bad-state",
            f"allocation {base.id!r} is {base.state}; a supplement can be asked for only "
            "while it is awarded, active or exhausted (after expiry, request a renewal)",
        )
    if by not in base.members:
        raise AccountingError(
            "not-allowed",
            f"{by!r} is not a member of allocation {base.id!r}; only its members may ask "
            "for a supplement to it",
        )
    seconds = amount.seconds("supplement request")
    if not any(seconds.values()) and amount.credits == Decimal(0):
        raise AccountingError(
            "empty-request", "a supplement request must ask for GPU-hours in a pool or credits"
        )
    if not justification.strip():
        raise AccountingError(
            "no-justification", "a supplement request needs a justification; say why"
        )
    check_supplement(base, policy, amount)
    steps = policy.tier(base.tier).review_steps
    return Allocation(
        id=id,
        project=base.project,
        tier=base.tier,
        state=State.REQUESTED if steps else State.APPROVED,
        members=dict(base.members),
        requested=amount,
        start=base.start,
        expires=base.expires,
        justification=justification,
        supplement_of=base.id,
        history=(Event(at_, by, f"requested a supplement to {base.id}"),),
    )


def grant_supplement(
    request: Allocation,
    base: Allocation,
    policy: AllocationPolicy,
    *,
    by: str,
    amount: Amount | None,
    at_: Instant,
) -> tuple[Allocation, Allocation]:
    """An operator grants an approved supplement request: (request, base) after it.
    ``None`` grants what it asked for."""
    if request.supplement_of != base.id:
        raise AccountingError(
            "not-a-supplement-request",
            f"{request.id!r} is not a supplement request for {base.id!r}",
        )
    if request.state is not State.APPROVED:
        raise AccountingError(
            "bad-state",
            f"supplement request {request.id!r} is {request.state}; only an approved one "
            "may be granted",
        )
    if amount is None:
        amount = request.requested
    new_base = supplement(base, policy, by=by, amount=amount, at_=at_, requested_in=request.id)
    hours = amount.total_hours()
    credits = f" and {amount.credits} credits" if amount.credits else ""
    granted = replace(
        request,
        state=State.GRANTED,
        history=(
            *request.history,
            Event(
                at_,
                by,
                f"granted: {hours} GPU-hours{credits} added to {base.id} as its "
                f"supplement {new_base.supplements}",
            ),
        ),
    )
    return granted, new_base
