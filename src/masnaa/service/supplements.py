"""Supplement requests and awards in the live service, over the store.

The core (``accounting.supplements``) decides; this module loads, checks
visibility, applies and saves in the caller's transaction:

- ``request_supplement``: a member of a visible live allocation asks for more
  GPU-time. The request is a new ``allocations`` row (``supplement_of`` in its
  ``doc``) of the same tenant and project, so the reviewers' queue, the review
  endpoint, visibility and isolation are those of every request.
- ``award``: an operator's award of an approved request. For a supplement
  request it is the grant: the GPU-time is added to the allocation it names
  and the request ends ``granted``, both rows compare-and-set in the same
  transaction (a concurrent change of either is ``allocation-changed``).

Another tenant's allocation is a 404, as everywhere in accounting. History
lines go into each allocation's own history, as reviews and awards do.
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from masnaa.accounting import allocations as core
from masnaa.accounting import supplements as sup
from masnaa.accounting.allocation import Allocation, Amount
from masnaa.accounting.errors import AccountingError
from masnaa.service import accounting as svc
from masnaa.service.tenancy import Caller
from masnaa.store import accounting as t


def request_supplement(
    s: Session, caller: Caller, base_id: str, *, amount: Amount, justification: str, now: float
) -> Allocation:
    row, base = svc.get(s, caller, base_id)
    svc.check_pools(s, amount.gpu_hours)
    policy = svc.load_policy(s)
    try:
        req = sup.request_supplement(
            base,
            policy,
            id=f"alloc-{secrets.token_hex(4)}",
            by=caller.user,
            amount=amount,
            justification=justification,
            at_=int(now),
        )
    except AccountingError as exc:
        raise svc.http_error(exc) from exc
    svc.save(s, req, tenant=row.tenant, now=now, old_seq=None)
    return req


def award(
    s: Session, caller: Caller, alloc_id: str, *, amount: Amount | None, now: float
) -> Allocation:
    """Award an approved request; grant it to its allocation if it is a supplement request.
    ``None``: what it asked for."""
    row, a = svc.get(s, caller, alloc_id)
    if amount is not None:
        svc.check_pools(s, amount.gpu_hours)
    if a.supplement_of is None:
        return svc.command(
            s,
            caller,
            alloc_id,
            lambda a, p: core.award(a, p, by=caller.user, amount=amount, at_=int(now)),
            now=now,
        )
    base_row = s.get(t.AllocationRow, a.supplement_of)
    if base_row is None:  # rows are never deleted; a broken link is a store fault
        raise svc.not_found("allocation", a.supplement_of)
    policy = svc.load_policy(s)
    try:
        granted, base = sup.grant_supplement(
            a, svc.from_doc(base_row.doc), policy, by=caller.user, amount=amount, at_=int(now)
        )
    except AccountingError as exc:
        raise svc.http_error(exc) from exc
    base_seq, req_seq = base_row.seq, row.seq
    svc.save(s, base, tenant=base_row.tenant, now=now, old_seq=base_seq)
    svc.save(s, granted, tenant=row.tenant, now=now, old_seq=req_seq)
    return granted
