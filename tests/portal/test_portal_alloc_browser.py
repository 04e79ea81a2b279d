"""Allocations end to end in a real browser (Debian's chromium through Playwright).

The flow, in English, French and Arabic (right to left), with screenshots under
``test-artifacts/portal/``: a researcher requests an allocation (meeting a field
error first); a reviewer who is also an operator approves it step by step, the
last time with the amount to award; the researcher submits a job, watches it
run to its end, sees the balance and burn-down, and downloads the month's
statement as CSV. Then page weight and an axe-core check of the new pages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masnaa.portal.i18n import Lang
from masnaa.portal.labels import JOB_STATES
from masnaa.portal.routes_alloc import ERRORS, STATES
from masnaa.portal.session import SESSION_COOKIE
from masnaa.store import accounting as t

from .alloc_world import ensure_world
from .browser_checks import page_weights, print_weights, serious_violations
from .conftest import Factory
from .test_portal_browser import html_dir, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def world(factory: Factory) -> Factory:
    return ensure_world(factory)


@pytest.fixture
def contexts(browser: Any) -> Iterator[Any]:
    made: list[Any] = []

    def new() -> Any:
        ctx = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        ctx.set_default_timeout(15_000)
        made.append(ctx)
        return ctx

    try:
        yield new
    finally:
        for ctx in made:
            ctx.close()


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
def test_request_review_run_and_statement(
    world: Factory, contexts: Any, artifacts: Path, lang: str
) -> None:
    say = Lang(lang)
    shot = lambda page, name: page.screenshot(  # noqa: E731
        path=str(artifacts / f"{lang}-alloc-{name}.png"), full_page=True
    )

    # 1. The researcher asks for GPU-time; a bad value is shown next to its field.
    researcher = contexts().new_page()
    sign_in(researcher, world, "salma", lang)
    researcher.goto(f"{world.url}/allocations")
    assert html_dir(researcher) == ("rtl" if lang == "ar" else "ltr")
    researcher.locator("a[href='/allocations/new']").first.click()
    researcher.wait_for_url(re.compile(r"/allocations/new$"))
    project = f"speech-{lang}"
    researcher.select_option("#a-project", project)
    researcher.select_option("#a-tier", "innovator")
    researcher.select_option("#a-site", "ma-1")
    researcher.select_option("#a-gpu_type", "h100-sxm-80gb")
    researcher.fill("#a-hours", "deux cents")
    justification = f"Darija speech recognition, {lang}: 3 epochs on 4 GPUs."
    researcher.fill("#a-justification", justification)
    researcher.locator("#alloc-form button[type=submit]").click()
    researcher.wait_for_load_state()
    assert researcher.inner_text("#a-hours-error") == say.gettext(ERRORS["not-a-number"])
    assert researcher.get_attribute("#a-hours", "aria-invalid") == "true"
    assert researcher.input_value("#a-justification") == justification
    shot(researcher, "1-request-error")
    researcher.fill("#a-hours", "200")
    researcher.locator("#alloc-form button[type=submit]").click()
    researcher.wait_for_url(re.compile(r"/allocations/alloc-[0-9a-f]+\?done=requested$"))
    alloc_id = re.findall(r"alloc-[0-9a-f]+", researcher.url)[0]
    assert researcher.locator(".notice").count() == 1
    shot(researcher, "2-requested")

    # 2. A reviewer (an operator too) approves each step; the last with the amount.
    reviewer = contexts().new_page()
    sign_in(reviewer, world, "karim", lang)
    reviewer.goto(f"{world.url}/review")
    reviewer.locator(f"#req-{alloc_id} a").click()
    reviewer.wait_for_url(f"{world.url}/review/{alloc_id}")
    for step in ("admin-check", "technical"):
        reviewer.check("input[name=decision][value=approve]")
        reviewer.fill("#r-comment", f"{step} ok")
        if step == "technical":
            shot(reviewer, "3-review-form")
            assert reviewer.input_value("#rv-hours_0") == "200"
            reviewer.fill("#rv-hours_0", "150")
        reviewer.locator("#review-form button[type=submit]").click()
        reviewer.wait_for_url(re.compile(rf"/review/{alloc_id}\?done=(approved|awarded)$"))
    assert reviewer.url.endswith("done=awarded")
    assert say.gettext(STATES["awarded"]) in reviewer.inner_text(".facts")
    shot(reviewer, "4-awarded")
    with world.state.db.read() as s:
        row = s.get(t.AllocationRow, alloc_id)
        assert row is not None and row.state in ("awarded", "active")
        assert row.doc["awarded"] == [["ma-1", "h100-sxm-80gb", str(150 * 3600)]]

    # 3. The researcher runs a job on it and watches it to its end.
    researcher.goto(f"{world.url}/jobs/new")
    researcher.fill("#f-name", f"alloc-run-{lang}")
    researcher.select_option("#f-project", project)
    researcher.fill("#f-command", "sh -c 'echo training; sleep 2; echo done'")
    researcher.select_option("#f-gpu_type", "h100-sxm-80gb")
    researcher.select_option("#f-site", "ma-1")
    researcher.fill("#f-gpus_per_task", "4")
    researcher.locator("#job-form button[type=submit]").click()
    researcher.wait_for_url(re.compile(r"/jobs/j-[0-9a-z]+$"))
    job_id = researcher.url.rsplit("/", 1)[1]
    researcher.locator("#log-stdout").filter(has_text="done").wait_for(timeout=30_000)
    succeeded = say.gettext(JOB_STATES["succeeded"])
    researcher.locator(".facts .state").filter(has_text=succeeded).wait_for(timeout=30_000)
    shot(researcher, "5-job-done")

    # 4. The month's statement with money, as CSV; the balance and burn-down.
    deadline = time.monotonic() + 30
    while True:  # the control loop meters a run in the pass after it ends
        researcher.goto(f"{world.url}/statements")
        if researcher.locator(f"a[href='/jobs/{job_id}']").count() or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    row = researcher.locator("tr", has=researcher.locator(f"a[href='/jobs/{job_id}']"))
    assert "ma-1" in row.inner_text()
    assert say.gettext("Total") in researcher.inner_text(".totals")
    shot(researcher, "6-statement")
    with researcher.expect_download() as info:
        researcher.click("#statement-csv")
    download = info.value
    saved = artifacts / f"{lang}-alloc-statement.csv"
    download.save_as(str(saved))
    text = saved.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith(job_id))
    # Charged to the allocation just awarded, in the site's currency.
    assert f",uca/{project},{alloc_id},ma-1,h100-sxm-80gb," in line and ",MAD," in line
    assert "# total," in text

    researcher.goto(f"{world.url}/allocations/{alloc_id}")
    assert researcher.locator("svg.chart polyline").count() >= 1
    # The chart reads left to right in every language; its caption follows the page.
    assert researcher.locator("figure.figure > div[dir=ltr] svg.chart").count() == 1
    used = researcher.locator("#pools tbody tr td").nth(4).inner_text()
    assert used != "—", "the job's GPU-time is not counted in the allocation"
    shot(researcher, "7-allocation")


def test_another_tenant_meets_not_found(world: Factory, contexts: Any, artifacts: Path) -> None:
    with world.client("salma") as c:
        r = c.post("/api/v1/allocations", json={
            "project": "nlp", "tier": "gateway", "start": time.strftime("%Y-%m-%d"),
            "duration_days": 30, "justification": "uca-only plan",
            "gpu_hours": [{"site": "ma-1", "gpu_type": "h100-sxm-80gb", "hours": "5"}]})
        assert r.status_code == 201, r.text
        alloc_id = r.json()["id"]
    page = contexts().new_page()
    sign_in(page, world, "tunde", "en")
    for path in (f"/allocations/{alloc_id}", "/review", f"/review/{alloc_id}",
                 "/statements?tenant=uca"):
        response = page.goto(world.url + path)
        assert response is not None and response.status == 404, path
        assert "uca-only plan" not in page.content()
    page.goto(f"{world.url}/allocations")
    assert alloc_id not in page.content()
    page.screenshot(path=str(artifacts / "en-alloc-isolation-404.png"), full_page=True)


# --- weight and accessibility of the new pages --------------------------------------------


def _new_pages(world: Factory) -> list[str]:
    with world.client("yassine") as c:
        r = c.post("/api/v1/allocations", json={
            "project": "vision", "tier": "purchase", "start": time.strftime("%Y-%m-%d"),
            "duration_days": 60, "justification": "weighed",
            "gpu_hours": [{"site": "ma-1", "gpu_type": "h100-sxm-80gb", "hours": "20"}]})
        assert r.status_code == 201, r.text
        alloc_id = r.json()["id"]
    return ["/allocations", f"/allocations/{alloc_id}", "/allocations/new", "/review",
            f"/review/{alloc_id}", f"/statements?tenant=atlas&period={time.strftime('%Y-%m')}"]


def test_the_allocation_pages_are_light(world: Factory, browser: Any, capsys: Any) -> None:
    rows = page_weights(browser, world.url, world.tokens["karim"], _new_pages(world))
    print_weights(capsys, "allocation pages' weight", rows,
                  label=lambda p: re.sub(r"alloc-[0-9a-f]+", "{id}", p), width=36)


@pytest.mark.parametrize("lang", ["en", "ar"])  # French lays out as English does
def test_the_allocation_pages_have_no_serious_accessibility_violations(
    world: Factory, browser: Any, lang: str
) -> None:
    # The pages forbid inline script (CSP); axe is injected by the test only.
    ctx = browser.new_context(bypass_csp=True)
    ctx.add_cookies([
        {"name": SESSION_COOKIE, "value": world.tokens["karim"], "url": world.url},
        {"name": "masnaa_lang", "value": lang, "url": world.url},
    ])
    page = ctx.new_page()
    found = {}

    def check(label: str) -> None:
        if bad := serious_violations(page):
            found[label] = bad

    try:
        for path in _new_pages(world):
            page.goto(world.url + path)
            assert html_dir(page) == ("rtl" if lang == "ar" else "ltr")
            check(path)
        # The request form with errors shown.
        page.goto(world.url + "/allocations/new")
        page.fill("#a-hours", "many")
        page.fill("#a-start", "soon")
        page.locator("#alloc-form button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("[aria-invalid=true]").count() == 2
        check("/allocations/new (errors)")
    finally:
        ctx.close()
    assert not found, found
