"""Data, proof and drain pages in a real browser (Debian's chromium through Playwright).

Flows with screenshots under ``test-artifacts/portal/`` (``ops-*`` and
``data-*``), each in English, French and Arabic (right to left):

- an operator drains the node a job runs on ("move its jobs" ticked, the
  default): the control loop stops the run with its grace to checkpoint,
  requeues it, and it runs again on another node; its history names the drain
  and who asked; the operator then undrains the node;
- a researcher registers a dataset through the form, meets an error next to
  a field, and finds the dataset in the list with its jurisdiction and class.

Then tenant isolation of data in the browser, page weight and axe-core checks
of the new pages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masnaa.domain import reasons
from masnaa.domain.reasons import Phrase
from masnaa.portal.i18n import Lang
from masnaa.portal.labels import JOB_STATES, NODE_STATES
from masnaa.portal.routes_data import DATA_ERRORS
from masnaa.portal.session import SESSION_COOKIE

from .browser_checks import page_weights, print_weights, serious_violations
from .conftest import Factory
from .test_portal_browser import LANGS, html_dir, sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("lang", LANGS)
def test_operator_drains_and_the_job_moves(
    factory: Factory, context: Any, artifacts: Path, lang: str
) -> None:
    say = Lang(lang)
    # A job that may run on any node's GPUs, long enough to be moved.
    job_id = factory.submit(
        "amina", project="llm", name=f"movable-{lang}", command=["sleep", "120"],
        gpus_per_task=2, gpu_types=["h100-sxm-80gb", "a100-80gb"], time_limit=300,
    )
    job = factory.wait_state(job_id, {"running"}, timeout=30)
    first_attempt = job.attempt
    first_node = str((job.placement or [{}])[0]["node"])
    page = context.new_page()
    sign_in(page, factory, "ops", lang)
    try:
        # 1. Drain the node it runs on, with "move its jobs" ticked (the default).
        page.goto(f"{factory.url}/ops/nodes")
        assert html_dir(page) == ("rtl" if lang == "ar" else "ltr")
        row = page.locator(f"#node-{first_node}")
        assert job_id in row.locator(".jobs").inner_text()
        assert row.locator("input[name=evacuate]").is_checked()
        row.locator("input[name=reason]").fill(f"fan failure ({lang})")
        row.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(r"/ops/nodes\?done=drained&"))
        assert say.gettext(NODE_STATES["drained"]) in page.inner_text(f"#node-{first_node}")
        assert page.inner_text(".notice") == say.gettext(
            "Node %(node)s is drained: its running jobs are being moved elsewhere."
        ) % {"node": first_node}
        page.screenshot(path=str(artifacts / f"{lang}-ops-1-node-drained.png"), full_page=True)

        # 2. The run is stopped (SIGTERM, its grace to checkpoint), requeued, and runs again
        #    on another node: a new run, the attempt number moved on.
        moved = wait_for(
            lambda: (j := factory.job(job_id)).state == "running"
            and j.attempt > first_attempt and j,
            timeout=30, what=f"{job_id} to run again off {first_node}",
        )
        new_node = str((moved.placement or [{}])[0]["node"])
        assert new_node != first_node
        page.reload()
        page.locator(f"#node-{new_node} .jobs a[href='/jobs/{job_id}']").wait_for()
        assert job_id not in page.locator(f"#node-{first_node} .jobs").inner_text()
        page.screenshot(path=str(artifacts / f"{lang}-ops-2-job-moved.png"), full_page=True)

        # 3. Its history names the drain and who asked.
        page.goto(f"{factory.url}/jobs/{job_id}")
        history = page.inner_text("table")
        assert "preempting" in history and "preempted" in history
        drained = (Phrase("evacuated-node", {"node": first_node, "user": "ops"}),
                   Phrase("note", {"detail": f"fan failure ({lang})"}))
        assert say.reason(reasons.to_json(drained), "") in history  # in the page's language
        running = say.gettext(JOB_STATES["running"])
        assert running in page.inner_text(".facts .state")
        page.screenshot(path=str(artifacts / f"{lang}-ops-3-job-history.png"), full_page=True)

        # Both runs are in the utilisation chart (a line per site, and the factory's).
        page.goto(f"{factory.url}/ops/util?window=hour")
        assert page.locator("#util-chart svg polyline").count() == 3
        page.screenshot(path=str(artifacts / f"{lang}-ops-4-utilisation.png"), full_page=True)

        # 4. Sites offer the same choice; then undrain the node from its page.
        page.goto(f"{factory.url}/ops/sites")
        site_row = page.locator(f"#site-{moved.site}")
        assert job_id in site_row.locator(".jobs").inner_text()
        assert site_row.locator("input[name=evacuate]").is_checked()
        page.screenshot(path=str(artifacts / f"{lang}-ops-5-sites.png"), full_page=True)
        page.goto(f"{factory.url}/ops/nodes")
        page.locator(f"#node-{first_node} form[action$='/undrain'] button").click()
        page.wait_for_url(re.compile(r"/ops/nodes\?done=undrained"))
        assert say.gettext(NODE_STATES["up"]) in page.inner_text(f"#node-{first_node}")
    finally:
        with factory.client("ops") as api:
            api.post(f"/api/v1/nodes/{first_node}/undrain", json={"reason": ""})
            api.post(f"/api/v1/jobs/{job_id}/cancel")
        factory.wait_state(job_id, {"cancelled", "succeeded", "failed"}, timeout=30)


@pytest.mark.parametrize("lang", LANGS)
def test_researcher_registers_a_dataset(
    factory: Factory, context: Any, artifacts: Path, lang: str
) -> None:
    say = Lang(lang)
    page = context.new_page()
    sign_in(page, factory, "amina", lang)
    page.goto(f"{factory.url}/data/new")
    assert html_dir(page) == ("rtl" if lang == "ar" else "ltr")
    name = f"clinical-notes-{lang}-{time.monotonic_ns() % 100000}"
    page.fill("#d-name", name)
    page.select_option("#d-home_site", "ma-1")
    page.fill("#d-jurisdiction", "Morocco")
    page.fill("#d-data_class", "health")
    page.fill("#d-owner", "Dr Amina")
    page.locator("#data-form button[type=submit]").click()
    page.wait_for_load_state()
    # The error is next to its field, in the user's language; nothing typed is lost.
    assert page.inner_text("#d-jurisdiction-error") == say.gettext(DATA_ERRORS["country"])
    assert page.locator("#d-jurisdiction").get_attribute("aria-invalid") == "true"
    assert page.input_value("#d-name") == name
    assert page.input_value("#d-owner") == "Dr Amina"
    page.screenshot(path=str(artifacts / f"{lang}-data-1-form-error.png"), full_page=True)

    page.fill("#d-jurisdiction", "")
    page.locator("#data-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/data/d-[0-9a-f]+\?done=registered$"))
    data_id = page.url.split("/data/")[1].split("?")[0]
    facts = page.inner_text(".facts")
    assert "ma-1" in facts and "MA" in facts and "health" in facts
    page.screenshot(path=str(artifacts / f"{lang}-data-2-detail.png"), full_page=True)

    page.goto(f"{factory.url}/data")
    row = page.locator(f"#data-{data_id}")
    assert name in row.inner_text() and "MA" in row.inner_text()
    page.screenshot(path=str(artifacts / f"{lang}-data-3-list.png"), full_page=True)


def test_a_researcher_cannot_open_another_tenants_dataset(
    factory: Factory, context: Any, artifacts: Path
) -> None:
    with factory.client("wanjiru") as api:
        r = api.post("/api/v1/datasets", json={"name": "kenyan-census", "home_site": "ke-1",
                                               "data_class": "personal"})
        assert r.status_code == 201, r.text
        theirs = r.json()["id"]
    page = context.new_page()
    sign_in(page, factory, "amina", "en")
    response = page.goto(f"{factory.url}/data/{theirs}")
    assert response is not None and response.status == 404
    assert "kenyan-census" not in page.content()
    page.goto(f"{factory.url}/data")
    assert theirs not in page.content()
    response = page.goto(f"{factory.url}/ops/audit")
    assert response is not None and response.status == 404
    page.screenshot(path=str(artifacts / "en-data-4-isolation-404.png"), full_page=True)


# --- page weight and accessibility of the new pages ----------------------------------


def _new_pages(factory: Factory) -> list[str]:
    with factory.client("amina") as api:
        r = api.post("/api/v1/datasets", json={"name": "weights-check", "home_site": "ma-1",
                                               "data_class": "personal"})
        assert r.status_code == 201, r.text
        data_id = r.json()["id"]
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return ["/data", "/data/new", f"/data/{data_id}", "/ops/util", "/ops/util?window=month",
            "/ops/sites", "/ops/audit", f"/ops/report?country=MA&since={day}&until={day}"]


def test_the_new_pages_are_light(factory: Factory, browser: Any, capsys: Any) -> None:
    rows = page_weights(browser, factory.url, factory.tokens["ops"], _new_pages(factory))
    print_weights(capsys, "page weight of the data, audit and site pages", rows, width=48)


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_no_serious_accessibility_violations_on_the_new_pages(
    factory: Factory, browser: Any, lang: str
) -> None:
    ctx = browser.new_context(bypass_csp=True)  # axe is injected by the test only
    ctx.add_cookies([
        {"name": SESSION_COOKIE, "value": factory.tokens["ops"], "url": factory.url},
        {"name": "masnaa_lang", "value": lang, "url": factory.url},
    ])
    page = ctx.new_page()
    found = {}
    try:
        for path in _new_pages(factory):
            if "window=" in path:
                continue  # the same template as /ops/util
            page.goto(factory.url + path)
            bad = serious_violations(page)
            if bad:
                found[path] = bad
        # The forms with their errors shown.
        page.goto(factory.url + "/data/new")
        page.fill("#d-jurisdiction", "nowhere")
        page.locator("#data-form button[type=submit]").click()
        page.wait_for_load_state()
        if bad := serious_violations(page):
            found["/data/new (errors)"] = bad
        page.goto(factory.url + "/ops/report?country=XX&since=never&until=2026-11-01")
        if bad := serious_violations(page):
            found["/ops/report (errors)"] = bad
    finally:
        ctx.close()
    assert not found, found
