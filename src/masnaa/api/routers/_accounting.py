"""What the accounting routers (``allocations``, ``prices``, ``reports``) share: the
operators-only check, with the ``forbidden`` refusal all three give.
"""

from __future__ import annotations

from masnaa.service.tenancy import Caller, forbidden


def require_operator(caller: Caller, doing: str) -> None:
    if not caller.is_operator:
        raise forbidden(f"only operators {doing}")
