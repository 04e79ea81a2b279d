"""Members of an allocation: who may give which role, and the PI's role stays.

The PI ``pia`` adds co-PIs and managers; managers add members. Changing a member's
role takes the right to give both the old and the new role, and nobody changes the
PI's role through ``add_member``: an allocation keeps its one PI.
"""

from __future__ import annotations

import pytest
from acct_builders import T0, gateway

from masnaa.accounting import allocations as al
from masnaa.accounting.allocation import Allocation, Role
from masnaa.accounting.errors import AccountingError

PI, CO, MGR, MEM = Role.PI, Role.CO_PI, Role.MANAGER, Role.MEMBER


def team() -> Allocation:
    """pia (PI), cole (co-PI), mo (manager), sam (member)."""
    a = gateway()
    a = al.add_member(a, by="pia", user="cole", role=CO, at_=T0)
    a = al.add_member(a, by="pia", user="mo", role=MGR, at_=T0)
    return al.add_member(a, by="mo", user="sam", role=MEM, at_=T0)


@pytest.mark.parametrize(
    ("by", "user", "role", "outcome"),
    [
        # The audit's case: a manager "adds" the PI as a member.
        ("mo", "pia", MEM, "pi-role"),
        ("pia", "pia", MEM, "pi-role"),  # the PI cannot demote himself either
        ("cole", "pia", CO, "pi-role"),
        ("mo", "new", PI, "one-pi"),
        ("pia", "sam", PI, "one-pi"),
        # Demoting or promoting takes the right to give both roles.
        ("mo", "cole", MEM, "not-allowed"),
        ("mo", "sam", MGR, "not-allowed"),
        ("sam", "new", MEM, "not-allowed"),
        ("pia", "cole", MEM, MEM),
        ("pia", "sam", MGR, MGR),
        ("mo", "new", MEM, MEM),
        ("pia", "new", CO, CO),
        ("mo", "sam", MEM, MEM),  # already so: unchanged
    ],
)
def test_who_may_give_which_role(by: str, user: str, role: Role, outcome: str | Role) -> None:
    a = team()
    if isinstance(outcome, Role):
        b = al.add_member(a, by=by, user=user, role=role, at_=T0 + 1)
        assert b.members[user] is outcome
        assert b.members["pia"] is PI and list(b.members.values()).count(PI) == 1
        if a.members.get(user) == role:
            assert b is a  # nothing written, no history line
        else:
            assert b.history[-1].by == by and user in b.history[-1].what
        return
    with pytest.raises(AccountingError) as err:
        al.add_member(a, by=by, user=user, role=role, at_=T0 + 1)
    assert err.value.code == outcome
    if outcome == "pi-role":
        assert "cannot be changed" in err.value.message


def test_a_changed_role_is_in_the_history() -> None:
    b = al.add_member(team(), by="pia", user="cole", role=MGR, at_=T0 + 5)
    assert b.history[-1].what == "made cole allocation-manager (was co-pi)"
