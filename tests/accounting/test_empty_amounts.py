"""Awards and supplements of nothing: an award with no amount gives what was asked, and
an explicit zero (no pool, pools of zero hours, no credits) is refused, since awarding or
supplementing spends something that cannot be given back (the request's state, the
tier's supplements)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from acct_builders import T0, policy
from test_allocations import MA_H100, MA_L40S, awarded, open_call, reviewed
from test_supplement_requests import approved, ask, innovator_base

from masnaa.accounting import allocations as al
from masnaa.accounting.allocation import Amount, State
from masnaa.accounting.errors import AccountingError
from masnaa.accounting.instants import DAY, HOUR
from masnaa.accounting.supplements import grant_supplement

NOTHING = [
    Amount(),
    Amount({MA_H100: Decimal(0)}),
    Amount({MA_H100: Decimal(0), MA_L40S: Decimal("0.0")}, Decimal(0)),
]


def test_an_award_without_an_amount_gives_what_was_asked() -> None:
    a = al.award(reviewed(open_call(100_000)), policy(), by="olu", amount=None, at_=T0)
    assert a.state is State.AWARDED
    assert a.awarded == {MA_H100: 100_000 * HOUR}


def test_a_supplement_request_granted_without_an_amount_adds_what_it_asked() -> None:
    base = innovator_base()
    granted, new_base = grant_supplement(approved(ask(base, h=200)), base, policy(), by="olu",
                                         amount=None, at_=T0 + 3 * DAY)  # fmt: skip
    assert granted.state is State.GRANTED
    assert new_base.supplemented == {MA_H100: 200 * HOUR}


@pytest.mark.parametrize("nothing", NOTHING)
@pytest.mark.parametrize(
    ("act", "code"),
    [
        (lambda n: al.award(reviewed(open_call()), policy(), by="olu", amount=n, at_=T0),
         "empty-award"),
        (lambda n: al.supplement(awarded(), policy(), by="olu", amount=n, at_=T0),
         "empty-supplement"),
        (lambda n: grant_supplement(approved(ask(innovator_base())), innovator_base(), policy(),
                                    by="olu", amount=n, at_=T0 + 3 * DAY),
         "empty-supplement"),
        (lambda n: al.request(policy(), id="x", project="p1", pi="pia", tier="gateway",
                              amount=n, start=open_call().start, duration_days=30,
                              justification="x", at_=T0),
         "empty-request"),
    ],
)  # fmt: skip
def test_an_explicit_nothing_is_refused(
    act: Callable[[Amount], object], code: str, nothing: Amount
) -> None:
    with pytest.raises(AccountingError) as err:
        act(nothing)
    assert err.value.code == code
    assert "more than zero" in err.value.message
