"""Supplement requests and rejection reasons in the portal, over plain HTTP.

A member asks for more GPU-time on a live allocation; reviewers see the request marked as
a supplement, decide step by step, and an operator's approval at the last step grants it
onto the same allocation. An applicant reads the reason of a rejection on their own page,
never the notes of approvals, and another tenant sees none of it (404). An expired
allocation offers a renewal (a new linked request) instead of a supplement.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from masnaa.accounting.allocation import State
from masnaa.portal.i18n import Lang
from masnaa.portal.routes_alloc import ERRORS
from masnaa.service import accounting as svc
from masnaa.store import accounting as t

from .alloc_world import ensure_world
from .conftest import Factory
from .test_portal_alloc import (
    allocations_count,
    approved_and_awarded,
    field_error,
    request_form,
    requested,
    review_form,
    signed_in,
    text,
)
from .test_portal_http import csrf_of


@pytest.fixture
def world(factory: Factory) -> Factory:
    return ensure_world(factory)


def test_a_member_asks_for_a_supplement_and_the_grant_adds_to_the_same_allocation(
    world: Factory,
) -> None:
    base = approved_and_awarded(world, hours="20")
    with signed_in(world, "salma") as salma:
        form = text(salma.get(f"/allocations/new?supplement_of={base}"))
        assert f"Request a supplement to {base}" in form
        assert 'id="a-duration_days"' not in form  # the allocation's period is kept
        req = requested(salma, supplement_of=base, hours="6",
                        justification="A second run for the ablations.")  # fmt: skip
        page = text(salma.get(f"/allocations/{req}?done=requested"))
        assert "Your request is filed" in page
        assert f'href="/allocations/{base}"' in page and "Supplement to" in page
        assert f'href="/allocations/{req}"' in salma.get(f"/allocations/{base}").text
    with signed_in(world, "nadia") as nadia:
        queue = text(nadia.get("/review"))
        row = queue.split(f'id="req-{req}"')[1].split("</tr>")[0]
        assert f"supplement to {base}" in row
        assert 'id="supplement-note"' in nadia.get(f"/review/{req}").text
        assert review_form(nadia, req, decision="approve", comment="ok").status_code == 303
    with signed_in(world, "karim") as karim:
        page = karim.get(f"/review/{req}").text
        assert f"Amount to add to {base} when approving" in page
        # The operator's approval at the last step grants 5 of the 6 GPU-hours asked.
        r = review_form(karim, req, decision="approve", comment="fine", site_0="ma-1",
                        gpu_type_0="h100-sxm-80gb", hours_0="5", credits="0")  # fmt: skip
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/review/{req}?done=supplemented"
        assert "granted" in text(karim.get(r.headers["location"]))
    with world.state.db.read() as s:
        got = s.get(t.AllocationRow, req)
        was = s.get(t.AllocationRow, base)
        assert got is not None and was is not None
        assert got.state == "granted" and got.doc["awarded"] == []
        assert was.doc["supplements"] == 1
        assert was.doc["supplemented"] == [["ma-1", "h100-sxm-80gb", str(5 * 3600)]]
    with signed_in(world, "salma") as salma:
        assert "25.0 GPU-hours" in text(salma.get(f"/allocations/{base}"))


def test_a_supplement_the_tier_cannot_grant_is_refused_next_to_its_field(world: Factory) -> None:
    base = approved_and_awarded(world, hours="20")
    before = allocations_count(world)
    with signed_in(world, "salma", "fr") as salma:
        r = request_form(salma, supplement_of=base, hours="11", justification="plus")
        assert r.status_code == 422
        assert field_error(r.text, "hours") == Lang("fr").gettext(ERRORS["supplement-too-large"])
        assert 'value="11"' in r.text and f"{base}" in text(r)  # nothing typed is lost
    with signed_in(world, "karim") as karim:
        # An operator sees the allocation but is not its member: grant it directly instead.
        r = request_form(karim, supplement_of=base, hours="1", justification="x")
        assert r.status_code == 422
        assert field_error(r.text, "justification") == ERRORS["not-allowed"]
    with signed_in(world, "tunde") as tunde:
        assert tunde.get(f"/allocations/new?supplement_of={base}").status_code == 404
        r = request_form(tunde, supplement_of=base, hours="1", justification="theirs")
        assert r.status_code == 404
    assert allocations_count(world) == before


def test_the_applicant_reads_why_it_was_rejected_and_no_one_else_does(world: Factory) -> None:
    with signed_in(world, "salma") as salma:
        alloc_id = requested(salma, hours="7", justification="a plan")
        assert 'id="rejection"' not in salma.get(f"/allocations/{alloc_id}").text
    with signed_in(world, "nadia", "fr") as nadia:
        page = nadia.get(f"/review/{alloc_id}").text
        assert Lang("fr").gettext(
            "When you reject, the applicant reads this reason. A comment on an approval stays "
            "with the reviewers and operators.") in text(nadia.get(f"/review/{alloc_id}"))
        assert 'aria-describedby="r-comment-help r-comment-error"' in page
        r = review_form(nadia, alloc_id, decision="approve", comment="note-entre-nous")
        assert r.status_code == 303
        r = review_form(nadia, alloc_id, decision="reject",
                        comment="Le plan de calcul ne justifie pas 7 heures.")  # fmt: skip
        assert r.status_code == 303
    for lang in ("en", "ar"):
        with signed_in(world, "salma", lang) as salma:
            page = text(salma.get(f"/allocations/{alloc_id}"))
            found = re.search(r'id="rejection">(.*?)</section>', page, re.S)
            assert found, page
            assert "Le plan de calcul ne justifie pas 7 heures." in found.group(1)
            assert "technical" in found.group(1)
            assert Lang(lang).gettext("Why it was rejected") in found.group(1)
            assert "note-entre-nous" not in page
    with signed_in(world, "tunde") as tunde:
        r = tunde.get(f"/allocations/{alloc_id}")
        assert r.status_code == 404 and "ne justifie pas" not in text(r)
        assert "ne justifie pas" not in text(tunde.get("/allocations"))
        token = csrf_of(tunde.get("/allocations").text)
        r = tunde.post(f"/review/{alloc_id}/award", data={"csrf_token": token, "hours_0": "1"})
        assert r.status_code == 404


def test_an_expired_allocation_offers_a_renewal_instead(world: Factory) -> None:
    base = approved_and_awarded(world, hours="4")
    with world.state.db.write() as s:  # expire it, as the control loop does at its expiry
        row = s.get(t.AllocationRow, base)
        assert row is not None
        a = svc.from_doc(row.doc)
        svc.save(s, replace(a, state=State.EXPIRED), tenant=row.tenant, now=time.time(),
                 old_seq=row.seq)  # fmt: skip
    with signed_in(world, "salma") as salma:
        page = salma.get(f"/allocations/{base}").text
        assert f'href="/allocations/new?renewal_of={base}"' in page
        assert f"supplement_of={base}" not in page
        # Asking for a supplement now is refused, next to the justification.
        r = request_form(salma, supplement_of=base, hours="1", justification="more")
        assert r.status_code == 422
        assert field_error(r.text, "justification") == ERRORS["bad-state"]
        assert f"Request more GPU-time for {base}" in text(
            salma.get(f"/allocations/new?renewal_of={base}"))
        renewal = requested(salma, renewal_of=base, hours="4", justification="next year")
    with world.state.db.read() as s:
        got = s.get(t.AllocationRow, renewal)
        assert got is not None and got.project == "uca/nlp"
        assert got.doc["renewal_of"] == base and got.doc["supplement_of"] is None
