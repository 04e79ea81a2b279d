"""An allocation as one caller may see it: the view the API returns and the portal shows.

``allocation_view`` settles the allocation at ``now`` (without saving: the
control loop stores states) and adds its balance, burn rate and projected
exhaustion from the usage records charged to it. GPU-time is given in whole
GPU-seconds (``*_gpu_seconds``) and in GPU-hours as decimal strings.

What each caller sees (the caller may already see the allocation: ``get``):
- ``reviews``: every review, with reviewer and comment, for operators and
  reviewers only; ``None`` for anyone else;
- ``rejection``: for everyone who sees the allocation, the review that
  rejected it: its step, date and comment (the **reason**). Never the
  comments of approving reviews, which are notes among reviewers
  (``accounting.allocations.rejection``). Who reviewed each step is in the
  ``history``, as it always was;
- ``supplement_of``: set on a supplement request (``accounting.supplements``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from masnaa.accounting import allocations as core
from masnaa.accounting.allocation import LIVE, Allocation, AllocationPolicy
from masnaa.accounting.balance import burn_down, remaining, usable
from masnaa.accounting.statements import funders_report
from masnaa.service import accounting as svc
from masnaa.service.tenancy import Caller
from masnaa.store import accounting as t

HOUR = Decimal(3600)


def hours(seconds: int) -> str:
    """GPU-seconds as GPU-hours, a decimal string with 4 places."""
    return str((Decimal(seconds) / HOUR).quantize(Decimal("0.0001")))


def pools(values: Any) -> list[dict[str, Any]]:
    return [
        {"site": s, "gpu_type": g, "gpu_seconds": v, "gpu_hours": hours(v)}
        for (s, g), v in sorted(values.items())
    ]


def allocation_view(
    s: Session, caller: Caller, a: Allocation, policy: AllocationPolicy, now: float
) -> dict[str, Any]:
    """An allocation as ``caller`` may see it, settled at ``now``, with its balance."""
    n = int(now)
    records = svc.load_records(s, where=[t.UsageRecordRow.allocation_id == a.id])
    windows = svc.windows_for(s, records)
    used = svc.used_of(s, [a.id]).get(a.id, {})
    a = core.settle(a, n, used) if a.state in LIVE else a
    left = remaining(a, used) if usable(a, n) else {}
    rows = funders_report([a], policy, policy.tier(a.tier).programme, records, windows, n)
    row = rows[0] if rows else None
    shown = svc.sees_all(s, caller)
    reviews = core.visible_reviews(a, policy, caller.user) if shown else None
    rejected = core.rejection(a)
    return {
        "id": a.id,
        "project": a.project,
        "tier": a.tier,
        "state": a.state.value,
        "members": dict(a.members),
        "start": a.start.isoformat(),
        "expires": a.expires.isoformat(),
        "justification": a.justification,
        "requested": {
            "gpu_hours": [
                {"site": p[0], "gpu_type": p[1], "hours": str(h)}
                for p, h in sorted(a.requested.gpu_hours.items())
            ],
            "credits": str(a.requested.credits),
        },
        "awarded": pools(a.awarded),
        "awarded_credits": str(a.awarded_credits),
        "tranches": {"released": a.released_tranches, "total": len(a.tranches)},
        "released": pools(a.released()),
        "used": pools(used),
        "remaining": pools(left),
        "balance_gpu_seconds": sum(max(0, v) for v in left.values()),
        "balance_gpu_hours": hours(sum(max(0, v) for v in left.values())),
        "credits_available": str(a.credits_available),
        "supplements": a.supplements,
        "lapsed_gpu_seconds": a.lapsed_gpu_seconds,
        "burn_gpu_hours_per_day": (
            hours(int(row.burn_gpu_seconds_per_day)) if row is not None else "0.0000"
        ),
        "projected_exhaustion": (
            row.projected_exhaustion.isoformat()
            if row is not None and row.projected_exhaustion
            else None
        ),
        "reports": [
            {"by": r.by, "text": r.text, "products": list(r.products), "at": r.at}
            for r in a.reports
        ],
        "reports_due": [d.isoformat() for d in core.reports_due(a, policy, n)],
        "reviews": None
        if reviews is None
        else [
            {
                "step": r.step,
                "reviewer": r.reviewer,
                "approve": r.approve,
                "comment": r.comment,
                "at": r.at,
            }
            for r in reviews
        ],
        "rejection": None
        if rejected is None
        else {"step": rejected.step, "reason": rejected.comment, "at": rejected.at},
        "history": [{"at": e.at, "by": e.by, "what": e.what} for e in a.history],
        "renewal_of": a.renewal_of,
        "supplement_of": a.supplement_of,
    }


def show(s: Session, caller: Caller, a: Allocation, now: float) -> dict[str, Any]:
    """``allocation_view`` with the policy loaded."""
    return allocation_view(s, caller, a, svc.load_policy(s), now)


def burn_down_rows(s: Session, a: Allocation, now: float) -> list[dict[str, Any]]:
    """The daily burn-down of ``a`` (``accounting.balance.burn_down``) as plain rows."""
    records = svc.load_records(s, where=[t.UsageRecordRow.allocation_id == a.id])
    return [
        {
            "day": p.day.isoformat(),
            "used_gpu_seconds": p.used_gpu_seconds,
            "remaining_gpu_seconds": p.remaining_gpu_seconds,
        }
        for p in burn_down(a, records, svc.windows_for(s, records), int(now))
    ]
