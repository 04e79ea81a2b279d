"""Allocation, reviewer and statement pages over plain HTTP (no browser).

A researcher requests GPU-time, a reviewer decides step by step, an operator
awards; balances, burn-down, money and statements follow; bad values are
shown next to their field in the user's language; another tenant sees none of
it (404, as for a page that does not exist); every POST needs its CSRF token.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from masnaa.accounting.balance import BurnDownPoint
from masnaa.accounting.instants import at
from masnaa.portal.charts_alloc import burn_down_chart
from masnaa.portal.i18n import Lang
from masnaa.portal.routes_alloc import ERRORS, decimal_of
from masnaa.store import accounting as t

from .alloc_world import ensure_world
from .conftest import Factory
from .test_portal_http import csrf_of


@pytest.fixture
def world(factory: Factory) -> Factory:
    return ensure_world(factory)


@contextmanager
def signed_in(factory: Factory, who: str, lang: str = "en") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=factory.url, timeout=30) as c:
        page = c.get(f"/login?lang={lang}")
        r = c.post("/login", data={"token": factory.tokens[who],
                                   "csrf_token": csrf_of(page.text), "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def text(r: httpx.Response) -> str:
    return html.unescape(r.text)


def field_error(page: str, name: str) -> str:
    found = re.search(rf'id="a-{name}-error"[^>]*>([^<]*)<', page)
    assert found, f"no error element for {name}"
    return html.unescape(found.group(1))


def request_form(c: httpx.Client, **values: str) -> httpx.Response:
    token = csrf_of(c.get("/allocations/new").text)
    form = {"project": "nlp", "tier": "innovator", "site": "ma-1", "gpu_type": "h100-sxm-80gb",
            "hours": "100", "credits": "0", "start": "", "duration_days": "90",
            "justification": "Fine-tuning a Darija speech model.", "supplement_of": "",
            "csrf_token": token}
    form.update(values)
    return c.post("/allocations/new", data=form)


def requested(c: httpx.Client, **values: str) -> str:
    r = request_form(c, **values)
    assert r.status_code == 303, r.text
    found = re.match(r"/allocations/(alloc-[0-9a-f]+)\?done=requested$", r.headers["location"])
    assert found, r.headers["location"]
    return found.group(1)


def review_form(c: httpx.Client, alloc_id: str, **values: str) -> httpx.Response:
    token = csrf_of(c.get(f"/review/{alloc_id}").text)
    return c.post(f"/review/{alloc_id}", data={"csrf_token": token, **values})


def allocations_count(factory: Factory) -> int:
    with factory.state.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(t.AllocationRow)) or 0)


def approved_and_awarded(factory: Factory, hours: str = "100") -> str:
    """A request by salma, approved at every step and awarded through the pages."""
    with signed_in(factory, "salma") as salma:
        alloc_id = requested(salma, hours=hours)
    with signed_in(factory, "nadia") as nadia:
        r = review_form(nadia, alloc_id, decision="approve", comment="complete")
        assert r.status_code == 303, r.text
    with signed_in(factory, "karim") as karim:
        # The last step, by an operator: approve with the amount to award.
        r = review_form(karim, alloc_id, decision="approve", comment="sound plan",
                        site_0="ma-1", gpu_type_0="h100-sxm-80gb", hours_0=hours, credits="0")
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/review/{alloc_id}?done=awarded"
    return alloc_id


# --- reading numbers, drawing the burn-down (no server) ------------------------------------


@pytest.mark.parametrize(
    ("typed", "value"),
    [("250", "250"), ("12,5", "12.5"), ("1\u202f234,5", "1234.5"), ("1.234,5", "1234.5"),
     ("1,234.5", "1234.5"), ("", "0"), ("  7 ", "7"), ("lots", None), ("nan", None),
     ("inf", None), ("-3", "-3")],
)
def test_numbers_typed_in_any_of_the_languages(typed: str, value: str | None) -> None:
    assert decimal_of(typed) == (None if value is None else Decimal(value))


def test_the_burn_down_chart_starts_full_and_projects_to_exhaustion() -> None:
    start = date(2026, 11, 1)
    hour = 3600
    points = [BurnDownPoint(start + timedelta(days=d), (d + 1) * 10 * hour,
                            (100 - (d + 1) * 10) * hour) for d in range(3)]
    svg = str(burn_down_chart(
        points, title="t", remaining_label="left", projected_label="projected",
        projected_until=start + timedelta(days=10), burn_hours_per_day=10.0,
        fmt_day=lambda x: str(int(x)), fmt_hours=lambda y: f"{y:.0f}"))
    assert svg.count("<polyline") == 2
    assert ">100</text>" in svg  # the axis reaches the full released amount
    # Nothing to draw before the allocation starts.
    assert str(burn_down_chart(
        [], title="t", remaining_label="l", projected_label="p", projected_until=None,
        burn_hours_per_day=0.0, fmt_day=str, fmt_hours=str)) == ""


# --- the researcher ----------------------------------------------------------------------


def test_a_researcher_requests_an_allocation_and_finds_it(world: Factory) -> None:
    with signed_in(world, "salma") as c:
        form = c.get("/allocations/new")
        assert form.status_code == 200
        assert 'name="csrf_token"' in form.text and 'id="a-justification"' in form.text
        alloc_id = requested(c)
        page = text(c.get(f"/allocations/{alloc_id}?done=requested"))
        assert "Your request is filed" in page
        assert "uca/nlp" in page and "innovator" in page
        assert "requested" in page
        listing = text(c.get("/allocations"))
        assert f'id="alloc-{alloc_id}"' in listing
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, alloc_id)
        assert row is not None
        assert (row.tenant, row.project, row.state) == ("uca", "uca/nlp", "requested")
        assert row.doc["members"] == {"salma": "pi"}
        assert row.doc["requested"]["gpu_hours"] == [["ma-1", "h100-sxm-80gb", "100"]]


@pytest.mark.parametrize(
    ("lang", "values", "field", "code", "extra"),
    [
        ("fr", {"hours": "beaucoup"}, "hours", "not-a-number", {}),
        ("ar", {"duration_days": "trois"}, "duration_days", "not-a-whole-number", {}),
        ("fr", {"start": "31/12/2026"}, "start", "bad-date", {}),
        ("en", {"site": ""}, "site", "pool-incomplete", {}),
        # Refusals of the core, shown next to the field they concern:
        ("fr", {"hours": "200000"}, "hours", "over-tier-limit", {"cap": 150_000}),
        ("ar", {"duration_days": "400"}, "duration_days", "bad-duration", {"most": 183}),
        ("fr", {"justification": "   "}, "justification", "no-justification", {}),
        ("en", {"hours": "0", "credits": "0"}, "hours", "empty-request", {}),
        ("fr", {"hours": "-5"}, "hours", "negative-hours", {}),
    ],
)
def test_a_bad_value_is_shown_next_to_its_field_and_nothing_is_lost(
    world: Factory, lang: str, values: dict[str, str], field: str, code: str,
    extra: dict[str, int],
) -> None:
    say = Lang(lang)
    before = allocations_count(world)
    with signed_in(world, "salma", lang) as c:
        justification = values.get("justification", f"Speech corpus ({lang}) — «quoted»")
        r = request_form(c, **{**values, "justification": justification})
        assert r.status_code == 422
        page = text(r)
        formatted = {k: say.number(v) for k, v in extra.items()}
        assert field_error(r.text, field) == say.gettext(ERRORS[code], **formatted)
        assert re.search(rf'id="a-{field}"[^>]*aria-invalid="true"', r.text)
        # What was typed is still there.
        assert justification.strip() == "" or justification in page
        for name, value in values.items():
            if name not in ("justification", "site"):
                assert f'value="{value}"' in page
    assert allocations_count(world) == before


def test_a_request_without_the_csrf_token_changes_nothing(world: Factory) -> None:
    before = allocations_count(world)
    with signed_in(world, "salma") as c:
        r = c.post("/allocations/new", data={
            "project": "nlp", "tier": "innovator", "site": "ma-1",
            "gpu_type": "h100-sxm-80gb", "hours": "10", "duration_days": "30",
            "justification": "forged", "csrf_token": "forged"})
        assert r.status_code == 403
    assert allocations_count(world) == before


# --- reviewers ----------------------------------------------------------------------------


def test_review_posts_without_the_csrf_token_change_nothing(world: Factory) -> None:
    with signed_in(world, "salma") as salma:
        alloc_id = requested(salma, hours="4")
    with signed_in(world, "karim") as karim:
        for path in (f"/review/{alloc_id}", f"/review/{alloc_id}/award",
                     f"/review/{alloc_id}/supplement"):
            r = karim.post(path, data={"csrf_token": "forged", "decision": "reject",
                                       "comment": "forged", "hours_0": "1"})
            assert r.status_code == 403, path
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, alloc_id)
        assert row is not None and row.state == "requested" and row.doc["reviews"] == []


def test_reviewers_decide_step_by_step_and_an_operator_awards(world: Factory) -> None:
    with signed_in(world, "salma") as salma:
        alloc_id = requested(salma, hours="40")
    with signed_in(world, "nadia", "fr") as nadia:
        queue = text(nadia.get("/review"))
        assert f'id="req-{alloc_id}"' in queue
        # Rejecting needs a reason; nothing is recorded without one.
        r = review_form(nadia, alloc_id, decision="reject", comment="")
        assert r.status_code == 422
        assert Lang("fr").gettext(
            "Give the reason for the rejection; it is kept with the review."
        ) in text(r)
        r = review_form(nadia, alloc_id, decision="approve", comment="dossier complet")
        assert r.status_code == 303
        page = text(nadia.get(r.headers["location"]))
        assert "dossier complet" in page and "admin-check" in page
        r = review_form(nadia, alloc_id, decision="approve", comment="faisable")
        assert r.status_code == 303
        page = nadia.get(f"/review/{alloc_id}").text
        # Approved at every step: a non-operator reviewer cannot award.
        assert 'id="award-form"' not in page and 'id="review-form"' not in page
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, alloc_id)
        assert row is not None and row.state == "approved"
    with signed_in(world, "karim") as karim:
        page = karim.get(f"/review/{alloc_id}").text
        assert 'id="award-form"' in page
        token = csrf_of(page)
        bad = karim.post(f"/review/{alloc_id}/award", data={
            "csrf_token": token, "site_0": "ma-1", "gpu_type_0": "h100-sxm-80gb",
            "hours_0": "lots", "credits": "0"})
        assert bad.status_code == 422
        assert ERRORS["not-a-number"] in text(bad) and 'value="lots"' in bad.text
        ok = karim.post(f"/review/{alloc_id}/award", data={
            "csrf_token": token, "site_0": "ma-1", "gpu_type_0": "h100-sxm-80gb",
            "hours_0": "30", "credits": "0"})
        assert ok.status_code == 303
    with signed_in(world, "salma") as salma:
        page = text(salma.get(f"/allocations/{alloc_id}"))
        assert "30.0 GPU-hours" in page
        assert '<svg class="chart"' in page
        # Applicants see the state, not the reviewers' comments.
        assert "faisable" not in page


def test_a_rejection_ends_the_request_and_is_in_the_history(world: Factory) -> None:
    with signed_in(world, "salma") as salma:
        alloc_id = requested(salma, hours="10")
    with signed_in(world, "nadia") as nadia:
        r = review_form(nadia, alloc_id, decision="reject", comment="out of scope")
        assert r.status_code == 303
        queue = text(nadia.get("/review"))
        waiting, _, decided = queue.partition('id="h-decided"')
        assert alloc_id not in waiting and alloc_id in decided
        assert "out of scope" in text(nadia.get(f"/review/{alloc_id}"))
    with signed_in(world, "salma") as salma:
        assert "rejected" in text(salma.get(f"/allocations/{alloc_id}"))


def test_a_member_may_not_review_their_own_request(world: Factory) -> None:
    with signed_in(world, "karim") as karim:
        # An operator requests for a project: the PI may not review it.
        alloc_id = requested(karim, project="uca/nlp", hours="5")
        page = karim.get(f"/review/{alloc_id}")
        assert 'id="review-form"' not in page.text
        assert "may not review it" in text(page)
        r = karim.post(f"/review/{alloc_id}", data={
            "csrf_token": csrf_of(page.text), "decision": "approve", "comment": "mine"})
        assert r.status_code == 422
        assert "may not review it" in text(r)
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, alloc_id)
        assert row is not None and row.state == "requested"


def test_more_gpu_time_is_a_linked_request_or_an_operators_supplement(world: Factory) -> None:
    alloc_id = approved_and_awarded(world, hours="20")
    with signed_in(world, "salma") as salma:
        page = salma.get(f"/allocations/{alloc_id}").text
        assert f'href="/allocations/new?supplement_of={alloc_id}"' in page
        form = salma.get(f"/allocations/new?supplement_of={alloc_id}").text
        assert f'value="{alloc_id}"' in form and 'value="nlp"' in form
        more = requested(salma, supplement_of=alloc_id, hours="8", project="ignored")
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, more)  # a supplement request (test_portal_supplement.py)
        assert row is not None and row.doc["supplement_of"] == alloc_id
        assert row.project == "uca/nlp"
    with signed_in(world, "karim") as karim:
        assert f"supplement to {alloc_id}" in text(karim.get("/review"))
        page = karim.get(f"/review/{alloc_id}").text
        assert 'id="supplement-form"' in page
        r = karim.post(f"/review/{alloc_id}/supplement", data={
            "csrf_token": csrf_of(page), "site_0": "ma-1", "gpu_type_0": "h100-sxm-80gb",
            "hours_0": "50", "credits": "0"})
        # More than half the award: the core refuses, the page says so.
        assert r.status_code == 422 and "share of the award" in text(r)
        r = karim.post(f"/review/{alloc_id}/supplement", data={
            "csrf_token": csrf_of(page), "site_0": "ma-1", "gpu_type_0": "h100-sxm-80gb",
            "hours_0": "10", "credits": "0"})
        assert r.status_code == 303
    with signed_in(world, "salma") as salma:
        assert "30.0 GPU-hours" in text(salma.get(f"/allocations/{alloc_id}"))


# --- isolation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/allocations/{id}", "/allocations/new?supplement_of={id}", "/review", "/review/{id}",
     "/statements?tenant=uca", "/statements.csv?tenant=uca"],
)
def test_another_tenant_sees_none_of_it(world: Factory, path: str) -> None:
    with signed_in(world, "salma") as salma:
        alloc_id = requested(salma, hours="3", justification="secret-uca-plan")
    with signed_in(world, "tunde") as c:
        r = c.get(path.format(id=alloc_id))
        assert r.status_code == 404
        assert "secret-uca-plan" not in r.text and "uca/nlp" not in r.text
        assert alloc_id not in c.get("/allocations").text
        token = csrf_of(c.get("/allocations").text)
        for post in (f"/review/{alloc_id}", f"/review/{alloc_id}/award"):
            r = c.post(post, data={"csrf_token": token, "decision": "approve"})
            assert r.status_code == 404
        r = c.post("/allocations/new", data={
            "csrf_token": token, "project": "uca/nlp", "tier": "gateway", "site": "ma-1",
            "gpu_type": "h100-sxm-80gb", "hours": "1", "duration_days": "10",
            "justification": "borrowing theirs", "supplement_of": ""})
        assert r.status_code == 422
        assert field_error(r.text, "project") == ERRORS["unknown-project"]


def test_navigation_follows_the_role(world: Factory) -> None:
    def links(who: str) -> set[str]:
        with signed_in(world, who) as c:
            nav = c.get("/").text.split("</nav>")[0]
            return set(re.findall(r'<a href="(/[a-z/]*)"', nav))

    assert {"/allocations", "/statements"} <= links("salma")
    assert "/review" not in links("salma")
    assert "/review" in links("nadia")
    assert "/review" in links("ops")


# --- money --------------------------------------------------------------------------------


def test_paid_gpu_time_shows_money_in_the_locale(world: Factory) -> None:
    with signed_in(world, "yassine") as c:
        # A start-up's form offers the tier in which GPU-time is bought.
        assert '<option value="purchase" selected>' in c.get("/allocations/new").text
        alloc_id = requested(c, project="vision", tier="purchase", hours="50",
                             justification="Training a retail vision model.")
    expected = {"en": "MAD1,500.00", "fr": "1\u202f500,00\xa0MAD"}
    for lang, money in expected.items():
        with signed_in(world, "yassine", lang) as c:
            page = text(c.get("/allocations"))
            assert money in page, (lang, page)
            assert f'id="alloc-{alloc_id}"' in page
    with signed_in(world, "yassine", "ar") as c:
        page = text(c.get(f"/allocations/{alloc_id}"))
        assert '<html lang="ar" dir="rtl">' in page
        assert Lang("ar").money(1500, "MAD") in page


def test_statement_rates_a_finished_job_and_downloads_as_csv(world: Factory) -> None:
    with signed_in(world, "yassine") as c:  # GPU-time bought for this test's own job
        requested(c, project="vision", tier="purchase", hours="50",
                  justification="Training a retail vision model.")
    job_id = world.submit("yassine", project="vision", command=["sleep", "2"],
                          gpus_per_task=2, gpu_types=["h100-sxm-80gb"], sites=["ma-1"])
    world.wait_state(job_id, {"succeeded"}, timeout=30)
    period = time.strftime("%Y-%m", time.gmtime())
    with signed_in(world, "yassine") as c:
        deadline = time.monotonic() + 20
        while True:  # the loop meters a run in the pass after it ends
            csv = c.get(f"/statements.csv?period={period}")
            assert csv.status_code == 200
            if job_id in csv.text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert csv.headers["content-type"].startswith("text/csv")
        assert f'filename="masnaa-statement-atlas-{period}.csv"' in csv.headers[
            "content-disposition"]
        line = next(x for x in csv.text.splitlines() if x.startswith(job_id))
        # Charged to the start-up's purchased allocation, in the site's currency.
        pattern = r"^j-[0-9a-z]+,atlas/vision,alloc-[0-9a-f]+,ma-1,h100-sxm-80gb,"
        assert re.search(pattern, line), line
        assert "MAD" in line
        assert "# total," in csv.text
        page = text(c.get(f"/statements?period={period}"))
        assert f'href="/jobs/{job_id}"' in page
        assert "Total" in page and "MAD" in page
        assert f"Statement of atlas for {time.strftime('%B %Y', time.gmtime())}" in page
        # The purchased allocation shows what was charged to it, in money.
        allocations = c.get("/allocations").text
        alloc_id = re.findall(r",(alloc-[0-9a-f]+),", line)[0]
        charged = text(c.get(f"/allocations/{alloc_id}"))
        found = re.search(r'id="charged">([^<]*)<', charged)
        assert found and "MAD" in found.group(1) and found.group(1) != "MAD0.00"
        assert alloc_id in allocations
        bad = c.get("/statements?period=novembre")
        assert bad.status_code == 422
        assert "Enter a month as YYYY-MM" in text(bad)


def test_statement_without_a_rate_shows_a_dash_and_names_the_rate(world: Factory) -> None:
    # A month of its own (the factory is shared): usage at both sites, a MAD rate only.
    lo = at(date(2030, 3, 1))
    rows = [
        t.UsageRecordRow(job_id=f"j-fx-{site}", attempt=0, start=lo, end=lo + 7200, gpus=1,
                         gpu_type=gpu, site=site, tenant="atlas", project="atlas/vision")
        for site, gpu in (("ma-1", "h100-sxm-80gb"), ("ke-1", "a100-80gb"))
    ]
    rate = t.ExchangeRateRow(day=date(2030, 1, 1), currency="MAD", per_usd="10")
    with world.state.db.write() as s:
        s.add_all([*rows, rate])
    try:
        for lang, note in (("en", "No KES/USD exchange rate on or before 2030-03-31"),
                           ("fr", "Aucun taux de change KES/USD au 2030-03-31 ou avant"),
                           ("ar", "لا يوجد سعر صرف KES/USD في 2030-03-31")):
            with signed_in(world, "yassine", lang) as c:
                r = c.get("/statements?period=2030-03")
                assert r.status_code == 200, r.text
                page = text(r)
                assert note in page, (lang, page)
                assert page.count(note) == 1  # said on the KES statement, not the MAD one
                assert "<dd>—</dd>" in page
        with signed_in(world, "yassine") as c:
            got = c.get("/statements.csv?period=2030-03").text
            assert "# missing_exchange_rate,KES,2030-03-31," in got
            assert "# total_usd,—,USD" in got
    finally:
        with world.state.db.write() as s:
            for row in (*rows, rate):
                s.delete(s.merge(row))


def test_a_start_in_the_past_is_shown_next_to_the_start_field(world: Factory) -> None:
    earliest = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    for lang, words in (("en", f"Start on {earliest} or later"),
                        ("fr", f"Commencez le {earliest} ou plus tard"),
                        ("ar", f"ابدأ في {earliest} أو بعده")):
        with signed_in(world, "salma", lang) as c:
            r = request_form(c, start="2020-01-01")
            assert r.status_code == 422, r.text
            assert words in field_error(text(r), "start"), lang
