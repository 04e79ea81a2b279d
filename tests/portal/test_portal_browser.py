"""The portal in a real browser (Debian's chromium through Playwright).

Flows with screenshots under ``test-artifacts/portal/``: a researcher signs
in, meets a field error while typing, submits, finds the job on the dashboard
and follows it to success with its live output; an operator drains and
undrains a node — each in English, French and Arabic (right to left). Then
tenant isolation, page weight and an axe-core accessibility check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from masnaa.portal.i18n import Lang
from masnaa.portal.labels import JOB_STATES, NODE_STATES, SUBMIT_ERRORS
from masnaa.portal.session import SESSION_COOKIE

from .browser_checks import page_weights, print_weights, serious_violations
from .conftest import Factory

pytestmark = pytest.mark.browser

LANGS = ["en", "fr", "ar"]


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


def sign_in(page: Any, factory: Factory, who: str, lang: str) -> None:
    page.goto(f"{factory.url}/login?lang={lang}")
    assert page.locator("html").get_attribute("lang") == lang
    page.fill("#token", factory.tokens[who])
    page.locator("form[action='/login'] button[type=submit]").click()
    page.wait_for_url(f"{factory.url}/")


def html_dir(page: Any) -> str:
    return str(page.locator("html").get_attribute("dir"))


@pytest.mark.parametrize("lang", LANGS)
def test_researcher_submits_and_follows_a_job(
    factory: Factory, context: Any, artifacts: Path, lang: str
) -> None:
    say = Lang(lang)
    page = context.new_page()
    sign_in(page, factory, "amina", lang)
    assert html_dir(page) == ("rtl" if lang == "ar" else "ltr")
    page.screenshot(path=str(artifacts / f"{lang}-1-dashboard.png"), full_page=True)

    page.goto(f"{factory.url}/jobs/new")
    page.fill("#f-name", f"hello-{lang}")
    page.fill("#f-command", "sh -c 'echo hello from masnaa; sleep 1; echo done'")
    page.select_option("#f-gpu_type", "h100-sxm-80gb")
    # A bad value is reported next to its field while typing, in the user's language.
    page.fill("#f-gpus_per_task", "64")
    expected = say.gettext(SUBMIT_ERRORS["too-many-gpus-per-task"], most=say.number(8))
    error = page.locator("#f-gpus_per_task-error")
    error.filter(has_text=expected).wait_for()
    assert page.locator("#f-gpus_per_task").get_attribute("aria-invalid") == "true"
    page.screenshot(path=str(artifacts / f"{lang}-2-field-error.png"), full_page=True)

    # Submitting anyway: the server says the same, and nothing typed is lost.
    page.locator("#job-form button[type=submit]").click()
    page.wait_for_load_state()
    assert page.locator("#f-gpus_per_task-error").inner_text() == expected
    assert page.input_value("#f-command") == "sh -c 'echo hello from masnaa; sleep 1; echo done'"
    assert page.input_value("#f-name") == f"hello-{lang}"

    page.fill("#f-gpus_per_task", "2")
    error.filter(has_text=re.compile("^$")).wait_for(state="attached")
    page.locator("#job-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/jobs/j-[0-9a-z]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    job = factory.job(job_id)
    assert (job.name, job.gpus_per_task, job.gpu_types) == (f"hello-{lang}", 2, ["h100-sxm-80gb"])

    # The dashboard (in a second tab: the job page reloads itself) lists it.
    dashboard = context.new_page()
    dashboard.goto(f"{factory.url}/")
    dashboard.locator(f"a[href='/jobs/{job_id}']").first.wait_for()
    dashboard.screenshot(path=str(artifacts / f"{lang}-3-dashboard-with-job.png"), full_page=True)
    dashboard.close()

    # Its page follows the output live and shows the end. One wait for both lines: the
    # page reloads itself when the job ends, and a new page fills its log a moment later.
    page.locator("#log-stdout").filter(
        has_text=re.compile(r"hello from masnaa\s+done")).wait_for(timeout=20_000)
    succeeded = say.gettext(JOB_STATES["succeeded"])
    page.locator(".facts .state").filter(has_text=succeeded).wait_for(timeout=20_000)
    history = page.inner_text("table")
    assert "submitted" in history and "succeeded" in history
    page.screenshot(path=str(artifacts / f"{lang}-4-job-detail.png"), full_page=True)


@pytest.mark.parametrize("lang", LANGS)
def test_operator_drains_and_undrains_a_node(
    factory: Factory, context: Any, artifacts: Path, lang: str
) -> None:
    say = Lang(lang)
    page = context.new_page()
    sign_in(page, factory, "ops", lang)
    page.goto(f"{factory.url}/ops/map")
    assert html_dir(page) == ("rtl" if lang == "ar" else "ltr")
    assert page.locator(".node").count() == 3
    page.screenshot(path=str(artifacts / f"{lang}-5-factory-map.png"), full_page=True)

    page.goto(f"{factory.url}/ops/nodes")
    row = page.locator("#node-ma-n1")
    row.locator("input[name=reason]").fill(f"cooling check ({lang})")
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/ops/nodes\?done=drained"))
    notice = say.gettext("Node %(node)s is drained: no new job starts on it.", node="ma-n1")
    assert page.inner_text(".notice") == notice
    assert say.gettext(NODE_STATES["drained"]) in page.inner_text("#node-ma-n1")
    with factory.state.db.read() as s:
        from sqlalchemy import select

        from masnaa.store import models as m

        node = s.scalars(select(m.Node).where(m.Node.name == "ma-n1")).one()
        assert (node.state, node.reason) == ("drained", f"cooling check ({lang})")
    page.screenshot(path=str(artifacts / f"{lang}-6-node-drained.png"), full_page=True)

    page.locator("#node-ma-n1 form[action$='/undrain'] button").click()
    page.wait_for_url(re.compile(r"/ops/nodes\?done=undrained"))
    assert say.gettext(NODE_STATES["up"]) in page.inner_text("#node-ma-n1")


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_operator_compares_policies_in_the_twin(
    factory: Factory, context: Any, artifacts: Path, lang: str
) -> None:
    page = context.new_page()
    sign_in(page, factory, "ops", lang)
    page.goto(f"{factory.url}/ops/twin")
    page.fill("#t-jobs", "300")
    page.fill("#t-replays", "2")
    page.check("input[name=policy][value=fifo]")
    page.locator("form[action='/ops/twin'] button[type=submit]").click()
    page.wait_for_url(re.compile(r"/ops/twin\?run=1"))
    rows = page.locator("#twin-policies tbody tr")
    assert sorted(rows.nth(i).locator("th").inner_text() for i in range(rows.count())) == [
        "fifo", "fifo-backfill", "las", "masnaa"
    ]
    # Beside it, one row per tenant: its jobs, then a cell per policy.
    tenants = page.locator("#twin-tenants tbody tr")
    assert tenants.count() >= 2
    assert all(tenants.nth(i).locator("td").count() == 5 for i in range(tenants.count()))
    # Two replays: each policy's key figures as a range, a cell per figure.
    spread = page.locator("#twin-spread tbody tr")
    assert spread.count() == 4
    assert all(spread.nth(i).locator("td").count() == 4 for i in range(4))
    assert page.locator("svg.chart polyline").count() == 8  # 2 charts × 4 policies
    page.screenshot(path=str(artifacts / f"{lang}-8-twin.png"), full_page=True)


def test_a_researcher_cannot_open_another_tenants_job(
    factory: Factory, context: Any, artifacts: Path
) -> None:
    theirs = factory.submit("wanjiru", name="kenyan-secret", project="llm")
    page = context.new_page()
    sign_in(page, factory, "amina", "en")
    response = page.goto(f"{factory.url}/jobs/{theirs}")
    assert response is not None and response.status == 404
    assert "kenyan-secret" not in page.content()
    page.goto(f"{factory.url}/jobs")
    assert theirs not in page.content()
    page.screenshot(path=str(artifacts / "en-7-isolation-404.png"), full_page=True)


def test_a_job_whose_output_was_deleted_says_so_and_stops_asking(
    factory: Factory, context: Any
) -> None:
    job_id = factory.submit("amina", project="llm", command=["echo", "soon deleted"],
                            gpu_types=["h100-sxm-80gb"])
    job = factory.wait_state(job_id, {"succeeded"})
    assert job.stdout_path is not None
    Path(job.stdout_path).unlink()
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "logs.json?stream=stdout" in r.url
            else None)
    sign_in(page, factory, "amina", "en")
    page.goto(f"{factory.url}/jobs/{job_id}")
    page.locator("#log-stdout").filter(has_text="This output is gone").wait_for()
    seen = len(asked)
    page.wait_for_timeout(4500)  # two more ticks of the page's poll
    assert len(asked) == seen, f"the page keeps asking for a file that is gone: {asked}"


# --- page weight -------------------------------------------------------------------


def _pages(factory: Factory) -> list[str]:
    job_id = factory.submit("ops", project="um6p/llm", command=["echo", "weight"])
    return ["/login", "/", "/jobs", "/jobs/new", f"/jobs/{job_id}", "/usage",
            "/ops/map", "/ops/queue", "/ops/nodes", "/ops/twin?run=1&jobs=100"]


def test_every_page_is_light(factory: Factory, browser: Any, capsys: Any) -> None:
    paths = _pages(factory)
    rows = page_weights(browser, factory.url, None, [p for p in paths if p == "/login"])
    rows += page_weights(browser, factory.url, factory.tokens["ops"],
                         [p for p in paths if p != "/login"])
    print_weights(capsys, "page weight", rows)


# --- accessibility -------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_no_serious_accessibility_violations(
    factory: Factory, browser: Any, lang: str
) -> None:
    # The pages forbid inline script (CSP); axe is injected by the test only.
    ctx = browser.new_context(bypass_csp=True)
    ctx.add_cookies([
        {"name": SESSION_COOKIE, "value": factory.tokens["ops"], "url": factory.url},
        {"name": "masnaa_lang", "value": lang, "url": factory.url},
    ])
    page = ctx.new_page()
    found = {}
    try:
        for path in _pages(factory):
            if path == "/login":
                continue
            page.goto(factory.url + path)
            bad = serious_violations(page)
            if bad:
                found[path] = bad
        # The form with errors shown, and the sign-in page, too.
        page.goto(factory.url + "/jobs/new")
        page.fill("#f-tasks", "zero")
        page.locator("#job-form button[type=submit]").click()
        page.wait_for_load_state()
        if bad := serious_violations(page):
            found["/jobs/new (errors)"] = bad
    finally:
        ctx.close()
    assert not found, found
