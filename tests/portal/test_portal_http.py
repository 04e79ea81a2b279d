"""The portal over plain HTTP (no browser): sign-in, CSRF, isolation, languages, caching."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from masnaa.portal.i18n import Lang
from masnaa.portal.session import PRE_SESSION_COOKIE, SESSION_COOKIE

from .conftest import Factory


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@contextmanager
def signed_in(factory: Factory, who: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=factory.url, timeout=30) as c:
        page = c.get("/login")
        r = c.post("/login", data={"token": factory.tokens[who],
                                   "csrf_token": csrf_of(page.text), "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def test_pages_need_sign_in_and_keep_where_you_were_going(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        r = c.get("/jobs?state=pending")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Dpending"


def test_session_cookie_is_httponly_lax_and_not_secure_on_http(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        page = c.get("/login")
        assert PRE_SESSION_COOKIE in page.cookies
        r = c.post("/login", data={"token": factory.tokens["amina"],
                                   "csrf_token": csrf_of(page.text), "next": "/jobs"})
        assert r.status_code == 303 and r.headers["location"] == "/jobs"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_login_refuses_a_bad_token_and_a_missing_csrf(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        page = c.get("/login?lang=fr")
        bad = c.post("/login", data={"token": "msn_nope", "csrf_token": csrf_of(page.text)})
        assert bad.status_code == 401
        assert "Ce jeton n'est pas valide" in bad.text.replace("&#39;", "'")
        no_csrf = c.post("/login", data={"token": factory.tokens["amina"]})
        assert no_csrf.status_code == 403
        assert SESSION_COOKIE not in no_csrf.cookies


def test_an_offsite_next_is_ignored(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        page = c.get("/login")
        r = c.post("/login", data={"token": factory.tokens["amina"],
                                   "csrf_token": csrf_of(page.text), "next": "//evil.example/x"})
        assert r.headers["location"] == "/"


def test_posts_without_the_csrf_token_change_nothing(factory: Factory) -> None:
    job_id = factory.submit("amina", command=["sleep", "30"], time_limit=60)
    with signed_in(factory, "amina") as c:
        r = c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": "forged"})
        assert r.status_code == 403
        assert factory.job(job_id).cancel_requested is False
        assert factory.job(job_id).state != "cancelled"
        token = csrf_of(c.get(f"/jobs/{job_id}").text)
        ok = c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
        assert ok.status_code == 303
    job = factory.job(job_id)
    assert job.state == "cancelled" or job.cancel_requested


def test_a_post_from_another_origin_is_refused(factory: Factory) -> None:
    with signed_in(factory, "ops") as c:
        token = csrf_of(c.get("/ops/nodes").text)
        r = c.post("/ops/nodes/ke-n0/drain", data={"csrf_token": token, "reason": "x"},
                   headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
    assert factory_node_state(factory, "ke-n0") == "up"


def factory_node_state(factory: Factory, name: str) -> str:
    from sqlalchemy import select

    from masnaa.store import models as m

    with factory.state.db.read() as s:
        return str(s.scalars(select(m.Node.state).where(m.Node.name == name)).one())


@pytest.mark.parametrize(
    "path", ["/jobs/{job}", "/jobs/{job}/logs.json", "/jobs/{job}/state.json"]
)
def test_another_tenants_job_is_not_found(factory: Factory, path: str) -> None:
    job_id = factory.submit("wanjiru", project="llm")
    with signed_in(factory, "amina") as c:
        r = c.get(path.format(job=job_id))
        assert r.status_code == 404
        assert job_id not in r.text
    with signed_in(factory, "wanjiru") as c:
        assert c.get(path.format(job=job_id)).status_code == 200


def test_operator_pages_are_not_found_for_members(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        for path in ("/ops/map", "/ops/queue", "/ops/nodes"):
            assert c.get(path).status_code == 404, path
        token = csrf_of(c.get("/").text)
        assert c.post("/ops/nodes/ma-n0/drain", data={"csrf_token": token}).status_code == 404
    assert factory_node_state(factory, "ma-n0") == "up"


@pytest.mark.parametrize(
    ("header", "query", "lang", "direction"),
    [
        ("ar-MA,ar;q=0.9", "", "ar", "rtl"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "", "fr", "ltr"),
        ("de-DE", "", "en", "ltr"),
        ("fr-FR", "?lang=ar", "ar", "rtl"),
    ],
)
def test_language_from_query_then_header(
    factory: Factory, header: str, query: str, lang: str, direction: str
) -> None:
    with httpx.Client(base_url=factory.url, headers={"Accept-Language": header}) as c:
        html = c.get("/login" + query).text
        assert f'<html lang="{lang}" dir="{direction}">' in html


def test_the_language_choice_sticks_in_a_cookie(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        c.get("/login?lang=fr")
        assert '<html lang="fr"' in c.get("/login").text


def test_static_files_are_versioned_and_revalidate(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        html = c.get("/login").text
        css = re.search(r'href="(/static/portal\.css\?v=[0-9a-f]{12})"', html)
        assert css
        first = c.get(css.group(1))
        assert first.status_code == 200
        assert "immutable" in first.headers["cache-control"]
        again = c.get(css.group(1), headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert c.get("/static/../app.py").status_code == 404


def test_pages_forbid_framing_and_inline_script(factory: Factory) -> None:
    with httpx.Client(base_url=factory.url) as c:
        r = c.get("/login")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"


def test_user_text_is_escaped(factory: Factory) -> None:
    job_id = factory.submit("amina", name="<script>alert(1)</script>", command=["true"])
    with signed_in(factory, "amina") as c:
        html = c.get(f"/jobs/{job_id}").text
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_usage_csv(factory: Factory) -> None:
    job_id = factory.submit("amina", command=["sleep", "0.3"])
    factory.wait_state(job_id, {"succeeded"})
    with signed_in(factory, "amina") as c:
        r = c.get("/usage.csv?days=1")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        lines = r.text.splitlines()
        assert lines[0] == "tenant,project,jobs,gpu_hours,running_gpus"
        rows = [line.split(",") for line in lines[1:]]
        assert rows and all(row[0] == "um6p" for row in rows)  # never another tenant's
        assert float(rows[0][3]) > 0


def test_the_map_colours_each_gpu_by_the_tenant_holding_it(factory: Factory) -> None:
    job_id = factory.submit("amina", command=["sleep", "5"], tasks=1, gpus_per_task=3,
                            gpu_types=["h100-sxm-80gb"])
    job = factory.wait_state(job_id, {"running"})
    assert job.placement is not None
    node = job.placement[0]["node"]
    with signed_in(factory, "ops") as c:
        html = c.get("/ops/map").text
        held = re.findall(rf'title="GPU (\d+) · um6p · {job_id}"', html)
        assert sorted(int(i) for i in held) == sorted(job.placement[0]["gpus"])
        assert node in html
        one = c.get("/ops/map?site=ke-1").text
        assert "ke-n0" in one and "ma-n0" not in one
        assert c.get("/ops/map?site=nowhere").status_code == 404
    with signed_in(factory, "amina") as c:
        token = csrf_of(c.get(f"/jobs/{job_id}").text)
        c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})


def test_validation_answers_errors_per_field_and_needs_the_csrf_header(factory: Factory) -> None:
    form = {"command": "python train.py", "tasks": "1", "gpus_per_task": "1",
            "time_limit": "60", "gpu_type": "tpu-v9", "project": "llm"}
    with signed_in(factory, "amina") as c:
        token = csrf_of(c.get("/jobs/new").text)
        assert c.post("/jobs/validate", data=form).status_code == 403
        r = c.post("/jobs/validate?lang=fr", data=form, headers={"X-CSRF-Token": token})
        assert r.status_code == 200
        assert r.json() == {"errors": {
            "gpu_type": "Choisissez parmi : a100-80gb, h100-sxm-80gb."
        }}
        bad = {**form, "gpu_type": "", "tasks": "two", "time_limit": "0", "command": "'open"}
        errors = c.post("/jobs/validate", data=bad, headers={"X-CSRF-Token": token}).json()
        assert set(errors["errors"]) == {"tasks", "time_limit", "command"}
        good = {**form, "gpu_type": "a100-80gb"}
        assert c.post("/jobs/validate", data=good,
                      headers={"X-CSRF-Token": token}).json() == {"errors": {}}
        # Too many tasks for one site, and a task too large for any node, are told apart.
        h100 = {**form, "gpu_type": "h100-sxm-80gb"}
        for shape, said in [
            ({"tasks": "3", "gpus_per_task": "8"}, "at most 16 GPUs fit at one site"),
            ({"tasks": "1", "gpus_per_task": "9"}, "the largest has 8 GPUs"),
        ]:
            errors = c.post("/jobs/validate", data={**h100, **shape},
                            headers={"X-CSRF-Token": token}).json()["errors"]
            assert said in errors["gpus_per_task"], errors


def test_a_project_of_another_tenant_is_refused_on_submit(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        token = csrf_of(c.get("/jobs/new").text)
        r = c.post("/jobs/new", data={"csrf_token": token, "command": "true", "tasks": "1",
                                      "gpus_per_task": "1", "time_limit": "5",
                                      "project": "uon/llm"})
        assert r.status_code == 422
        assert "Choose one of your projects." in r.text


def test_twin_checks_its_numbers(factory: Factory) -> None:
    with signed_in(factory, "ops") as c:
        r = c.get("/ops/twin?run=1&jobs=lots&load=7&replays=9")
        assert r.status_code == 422
        assert "Enter a number from 100 to 5,000." in r.text
        assert "Enter a number from 0.1 to 2.0." in r.text
        assert "Enter a number from 1 to 3." in r.text
        # Each replay costs a whole comparison again: jobs × replays is bounded.
        r = c.get("/ops/twin?run=1&jobs=4000&replays=3")
        assert r.status_code == 422
        assert "With 4,000 jobs, at most 2 replays: fewer jobs allow more." in r.text
        assert 'id="twin-policies"' not in r.text  # nothing was run
        # A policy repeated by hand in the URL is compared once, not refused with a 500.
        r = c.get("/ops/twin?run=1&jobs=100&policy=fifo&policy=fifo")
        assert r.status_code == 200
        # Every box unticked is an error, not the default policies run behind the reader's back.
        r = c.get("/ops/twin?run=1&jobs=100")
        assert r.status_code == 422 and "Choose at least one policy." in r.text
        assert 'id="twin-policies"' not in r.text
        # A seed too long for any number is the form's own error, not the API's JSON.
        r = c.get("/ops/twin?run=1&jobs=100&policy=fifo&seed=12345678901234567")
        assert r.status_code == 422 and "Enter a number from 0 to 2,147,483,648." in r.text
    with signed_in(factory, "amina") as c:
        assert c.get("/ops/twin?run=1").status_code == 404


def test_the_language_links_keep_the_page_and_its_query(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        page = html.unescape(c.get("/jobs?state=succeeded").text)
        assert 'href="?state=succeeded&lang=fr"' in page
        assert 'href="?state=succeeded&lang=ar"' in page
        # Switching twice keeps one lang, the latest.
        page = html.unescape(c.get("/jobs?state=succeeded&lang=fr").text)
        assert 'href="?state=succeeded&lang=ar"' in page


def test_bad_values_in_an_address_get_a_page_in_the_readers_language(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        # The usage box: the page again, the value kept, the error next to it.
        r = c.get("/usage?days=abc&lang=fr")
        assert r.status_code == 200
        body = html.unescape(r.text)
        assert 'value="abc"' in body and 'aria-invalid="true"' in body
        assert Lang("fr").gettext("Showing the last 30 days.") in body
        # A value FastAPI's own checks refuse: a translated page, not JSON.
        r = c.get("/jobs?state=" + "x" * 40 + "&lang=fr")
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
        assert Lang("fr").gettext("Cannot read this address") in html.unescape(r.text)


def test_a_jobs_gpus_agree_with_their_number(factory: Factory) -> None:
    one = factory.submit("amina", command=["true"], project="llm", gpus_per_task=1)
    two = factory.submit("amina", command=["true"], project="llm", gpus_per_task=2)
    with signed_in(factory, "amina") as c:
        assert "1 × 1 GPU ·" in html.unescape(c.get(f"/jobs/{one}").text)
        assert "1 × 2 GPUs ·" in html.unescape(c.get(f"/jobs/{two}").text)


def test_cancelling_a_job_that_already_ended_shows_the_job(factory: Factory) -> None:
    job_id = factory.submit("amina", command=["true"], project="llm")
    factory.wait_state(job_id, {"succeeded"})
    with signed_in(factory, "amina") as c:
        token = csrf_of(c.get(f"/jobs/{job_id}").text)
        r = c.post(f"/jobs/{job_id}/cancel", data={"csrf_token": token})
        assert r.status_code == 303 and r.headers["location"] == f"/jobs/{job_id}"


def test_twin_shows_each_tenant_under_each_policy(factory: Factory) -> None:
    from masnaa.portal.i18n import Lang
    from masnaa.portal.routes_twin import TwinForm, run_twin

    with signed_in(factory, "ops") as c:
        r = c.get("/ops/twin?run=1&jobs=300&tenants=3&load=0.9&seed=4"
                  "&policy=fifo&policy=masnaa")
        assert r.status_code == 200
    # The same comparison, run here: the page's table must hold its per-tenant figures.
    doc = run_twin(TwinForm(300, 4, 3, 0.9, ("fifo", "masnaa")))
    html = r.text[r.text.index("Per tenant: mean JCT"):]
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', html, re.S)
    cells = {name: re.findall(r'<td class="num">([^<]*)</td>', rest) for name, rest in rows}
    en = Lang("en")
    by_policy = [{t["tenant"]: t for t in p["fairness"]["tenants"]} for p in doc["policies"]]
    served = [name for name, t in by_policy[0].items() if t["jobs"]]
    assert sorted(cells) == sorted(served) and len(served) == 3
    for name in served:
        fifo, masnaa = by_policy[0][name], by_policy[1][name]
        assert cells[name][0] == en.number(fifo["jobs"])
        assert cells[name][1] == (
            f"{en.number(fifo['jct']['mean'] / 3600, 2)} ({en.percent(fifo['fair_ratio'])})"
        )
        assert cells[name][2].startswith(en.number(masnaa["jct"]["mean"] / 3600, 2) + " (")
    # Most jobs first.
    jobs = [by_policy[0][name]["jobs"] for name, _ in rows]
    assert jobs == sorted(jobs, reverse=True)


def test_twin_replays_give_each_policy_a_range(factory: Factory) -> None:
    from masnaa.portal.i18n import Lang
    from masnaa.portal.routes_twin import TwinForm, run_twin

    query = "/ops/twin?run=1&jobs=300&tenants=3&load=0.9&seed=4&policy=fifo&policy=masnaa"
    with signed_in(factory, "ops") as c:
        one = c.get(query)
        two = c.get(query + "&replays=2")
    assert one.status_code == two.status_code == 200
    assert 'id="twin-spread"' not in one.text  # one replay: no range to show
    # The form's fields and the result's tables share the page: no id twice.
    ids = re.findall(r'\sid="([^"]+)"', two.text)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    doc = run_twin(TwinForm(300, 4, 3, 0.9, ("fifo", "masnaa"), 2))
    html = two.text[two.text.index('id="twin-spread"'):]
    assert "Over 2 replays" in html
    rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', html, re.S))
    en = Lang("en")
    hours = lambda v: en.number(v / 3600, 2)  # noqa: E731
    for label, figures in doc["spread"]["policies"].items():
        cells = [c.strip() for c in re.findall(r'<td class="num">([^<]*)</td>', rows[label])]
        jct, wait, util = figures["jct_mean"], figures["queueing_p99"], figures["utilisation"]
        assert cells[0] == f"{hours(jct['mean'])} ({hours(jct['min'])} – {hours(jct['max'])})"
        assert cells[1] == f"{hours(wait['mean'])} ({hours(wait['min'])} – {hours(wait['max'])})"
        assert cells[2] == (
            f"{en.percent(util['mean'])} ({en.percent(util['min'])} – {en.percent(util['max'])})"
        )
        assert jct["runs"][0] == next(p for p in doc["policies"] if p["label"] == label)[
            "jct"]["mean"]
    # The jittered copy replays differently: the range is not a point.
    assert any(f["jct_mean"]["min"] < f["jct_mean"]["max"]
               for f in doc["spread"]["policies"].values())
    # Per tenant, too: each cell is its mean JCT over the replays, their range, and its
    # mean fair ratio.
    tenants_html = two.text[two.text.index('id="twin-tenants"'):two.text.index('id="twin-spread"')]
    assert "Per tenant over 2 replays" in tenants_html
    tenant_rows = dict(re.findall(r'<tr><th scope="row">([^<]+)</th>(.*?)</tr>', tenants_html,
                                  re.S))
    assert tenant_rows
    for name, rest in tenant_rows.items():
        cells = [c.strip() for c in re.findall(r'<td class="num">([^<]*)</td>', rest)][1:]
        for p, cell in zip(doc["policies"], cells, strict=True):
            r = doc["spread"]["tenants"][p["label"]][name]
            jct = r["jct_mean"]
            assert cell == (f"{hours(jct['mean'])} ({hours(jct['min'])} – {hours(jct['max'])}), "
                            f"{en.percent(r['fair_ratio']['mean'])}")


def test_cookies_are_secure_behind_an_https_proxy(factory: Factory) -> None:
    # uvicorn trusts X-Forwarded-Proto from loopback: what a TLS proxy in front sends.
    with httpx.Client(base_url=factory.url, headers={"X-Forwarded-Proto": "https"}) as c:
        page = c.get("/login")
        pre = next(h for h in page.headers.get_list("set-cookie") if h.startswith("masnaa_csrf"))
        assert "Secure" in pre and "SameSite=strict" in pre
        # A Secure cookie is not sent back over plain http: hand it over as the browser
        # behind the proxy would.
        value = pre.split(";")[0].split("=", 1)[1]
        r = c.post("/login", data={"token": factory.tokens["amina"],
                                   "csrf_token": csrf_of(page.text)},
                   headers={"Cookie": f"masnaa_csrf={value}"})
        assert r.status_code == 303
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_the_whole_map_links_each_site(factory: Factory) -> None:
    with signed_in(factory, "ops") as c:
        html = c.get("/ops/map").text
        assert '<a href="/ops/map?site=ma-1">ma-1</a>' in html
        assert 'href="/ops/map">' not in html  # no "all sites" link on the whole map
        assert "nvl1 · h100-sxm-80gb" in html  # the node's NVLink domain under its leaf


HTML_PAGES = ("/", "/jobs", "/jobs/new", "/usage", "/allocations", "/allocations/new", "/data",
              "/data/new", "/review", "/statements", "/ops/map", "/ops/queue", "/ops/nodes",
              "/ops/sites", "/ops/util", "/ops/audit", "/ops/report",
              "/ops/twin?run=1&jobs=100&replays=2")


@pytest.mark.parametrize("who", ["ops", "amina"])
def test_no_page_gives_one_id_twice(factory: Factory, who: str) -> None:
    # A label, an aria-describedby or a test finds the first element with an id: a
    # second one is unreachable.
    job_id = factory.submit(who, name="ids", **({"project": "um6p/llm"} if who == "ops" else {}))
    seen = 0
    with signed_in(factory, who) as c:
        for path in (*HTML_PAGES, f"/jobs/{job_id}"):
            r = c.get(path)
            if r.status_code != 200 or "text/html" not in r.headers["content-type"]:
                continue  # an operators' page for a researcher: 404, as a missing page
            seen += 1
            ids = re.findall(r'\sid="([^"]+)"', r.text)
            assert len(ids) == len(set(ids)), (path, sorted({i for i in ids if ids.count(i) > 1}))
    assert seen >= (18 if who == "ops" else 8)


def test_a_jobs_history_reads_in_the_pages_language(factory: Factory) -> None:
    job_id = factory.submit("amina", project="llm", command=["sh", "-c", "exit 3"])
    factory.wait_state(job_id, {"failed"})
    said = {
        "en": ["submitted by amina", "run 1 started", "exited with code 3"],
        "fr": ["soumis par amina", "exécution 1 démarrée", "terminé avec le code 3",
               "exécution 1 placée sur "],
        # Arabic isolates each left-to-right value (FSI … PDI).
        "ar": ["أرسلها \u2068amina\u2069", "بدأ التشغيل \u20681\u2069",
               "انتهت برمز الخروج \u20683\u2069"],
    }
    with signed_in(factory, "amina") as c:
        for lang, phrases in said.items():
            page = c.get(f"/jobs/{job_id}?lang={lang}").text
            assert all(p in page for p in phrases), (lang, [p for p in phrases if p not in page])
            # The state's reason in the list of jobs too, not only in the history.
            assert phrases[2] in c.get(f"/?lang={lang}").text
        assert "exited with code 3" not in c.get(f"/jobs/{job_id}?lang=fr").text


def test_why_a_job_waits_reads_in_the_pages_language(factory: Factory) -> None:
    spec = {"project": "llm", "command": ["sleep", "60"], "gpus_per_task": 4,
            "gpu_types": ["a100-80gb"], "sites": ["ke-1"]}
    first, second = factory.submit("wanjiru", **spec), factory.submit("wanjiru", **spec)
    try:
        deadline = time.monotonic() + 20
        while not (waiting := factory.job(second)).wait_phrases:
            assert time.monotonic() < deadline, "the loop wrote no wait for the second job"
            time.sleep(0.05)
        assert waiting.state == "pending" and waiting.wait_message
        with signed_in(factory, "wanjiru") as c:
            for lang in ("fr", "ar"):
                for _ in range(50):  # the loop may rewrite the wait between two reads
                    before = factory.job(second).wait_phrases
                    page = html.unescape(c.get(f"/jobs/{second}?lang={lang}").text)
                    waiting = factory.job(second)
                    if waiting.wait_phrases == before:
                        break
                said = Lang(lang).reason(waiting.wait_phrases, "")
                assert said and said != waiting.wait_message
                assert said in page and (waiting.wait_message or "") not in page, lang
    finally:
        with factory.client("wanjiru") as c:
            for job_id in (first, second):
                c.post(f"/api/v1/jobs/{job_id}/cancel")


def test_the_form_offers_only_the_priority_classes_open_to_the_tenant(factory: Factory) -> None:
    from sqlalchemy import select

    from masnaa.service.jobs import invalidate_caches
    from masnaa.store import models as m

    def open_high_to(tenants: list[str]) -> None:
        with factory.state.db.write() as s:
            row = s.scalars(select(m.PriorityClass).where(m.PriorityClass.name == "high")).one()
            row.tenants = tenants
        invalidate_caches()

    open_high_to(["um6p"])
    try:
        with signed_in(factory, "wanjiru") as c:
            page = c.get("/jobs/new").text
            assert "<option>low</option>" in page and ">high</option>" not in page
            r = c.post("/jobs/new", data={"csrf_token": csrf_of(page), "command": "true",
                                          "tasks": "1", "gpus_per_task": "1", "time_limit": "5",
                                          "project": "llm", "priority_class": "high"})
            assert r.status_code == 422
            assert "This priority class is not open to the project&#39;s tenant" in r.text
            r = c.post("/jobs/new", data={"csrf_token": csrf_of(page), "command": "true",
                                          "tasks": "1", "gpus_per_task": "1", "time_limit": "5",
                                          "project": "llm", "priority_class": "urgent"})
            assert r.status_code == 422 and "Choose one of: low, normal." in r.text
        with signed_in(factory, "amina") as c:
            assert "<option>high</option>" in c.get("/jobs/new").text
    finally:
        open_high_to([])


def test_a_job_page_does_not_name_another_tenants_preemptor(factory: Factory) -> None:
    from masnaa.domain.reasons import Phrase
    from masnaa.store import models as m
    from masnaa.store.events import transition

    theirs = factory.submit("amina", project="llm")
    victim = factory.submit("wanjiru", project="llm")
    factory.wait_state(victim, {"succeeded", "failed"})
    with factory.state.db.write() as s:  # as the loop writes a victim's event
        job = s.get(m.Job, victim)
        assert job is not None
        transition(s, job, job.state, at=time.time(), code="preempting", reason=(
            Phrase("victim-priority", {"job": theirs, "class": "high", "victim_class": "normal"}),
        ))
    with signed_in(factory, "wanjiru") as c:
        page = c.get(f"/jobs/{victim}?lang=fr").text
        assert "priorité : un job d&#39;un autre locataire (high) passe avant normal" in page
        assert theirs not in page
    with signed_in(factory, "ops") as c:
        assert theirs in c.get(f"/jobs/{victim}").text
