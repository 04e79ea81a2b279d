"""Operators' proof and capacity pages over HTTP: the audit log and its chain check, the
regulator's report and its downloads, utilisation over time, and site states.

The world is ``conftest``'s real factory. Records come from real registrations
and placements; the broken-chain case really removes a record from the
database (and puts the same bytes back), so the page shows what
``verify_chain`` finds, not a flag.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from masnaa.audit.chain import AuditRecord, verify
from masnaa.portal.i18n import Lang
from masnaa.service import history
from masnaa.store import models as m
from masnaa.store.residency import AuditRow

from .conftest import Factory
from .test_portal_data import data_id_of, register, unique
from .test_portal_http import csrf_of, signed_in


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def placed_job(factory: Factory, data_class: str = "personal") -> tuple[str, str]:
    """A dataset of amina's at ma-1 and a job that read it and ran (so its placement is
    audited)."""
    with signed_in(factory, "amina") as c:
        data_id = data_id_of(register(c, name=unique("survey"), home_site="ma-1",
                                      data_class=data_class))
    job_id = factory.submit("amina", project="llm", command=["true"], datasets=[data_id],
                            gpu_types=["h100-sxm-80gb"])
    factory.wait_state(job_id, {"succeeded"}, timeout=30)
    return data_id, job_id


def test_the_audit_log_shows_records_filters_and_pages(factory: Factory) -> None:
    data_id, job_id = placed_job(factory)
    with signed_in(factory, "ops") as c:
        page = c.get("/ops/audit")
        assert page.status_code == 200
        assert 'id="chain-status" data-ok="yes"' in page.text
        assert f'href="/data/{data_id}"' in page.text and f'href="/jobs/{job_id}"' in page.text

        only = c.get("/ops/audit?action=placement&site=ma-1").text
        kinds = re.findall(
            r'<tr id="rec-(\d+)">\s*<th[^>]*>\d+</th>\s*<td>[^<]*</td>\s*<td>([^<·]*)', only)
        assert kinds and {k.strip() for _, k in kinds} == {"placement"}
        assert f'href="/jobs/{job_id}"' in only
        registrations = c.get("/ops/audit?action=data-registration").text
        assert f'href="/jobs/{job_id}"' not in registrations
        assert f'href="/data/{data_id}"' in registrations

        # Paging: ``before`` shows strictly older records, newest first.
        seqs = [int(s) for s in re.findall(r'<tr id="rec-(\d+)">', page.text)]
        assert seqs == sorted(seqs, reverse=True)
        older = c.get(f"/ops/audit?before={seqs[1]}").text
        older_seqs = [int(s) for s in re.findall(r'<tr id="rec-(\d+)">', older)]
        assert older_seqs and max(older_seqs) < seqs[1]
    with factory.state.db.read() as s:
        first = history.audit_page(s, limit=2)
        second = history.audit_page(s, limit=2, before=first.next_before)
    assert len(first.records) == 2 and first.next_before == first.records[-1].seq
    assert first.next_before is not None
    expected = [seq for seq in (first.next_before - 1, first.next_before - 2) if seq >= 0]
    assert [r.seq for r in second.records] == expected
    assert (second.next_before is None) == (first.next_before - 2 <= 0)


def test_the_chain_download_verifies_offline(factory: Factory) -> None:
    placed_job(factory)
    with signed_in(factory, "ops") as c:
        r = c.get("/ops/audit.jsonl")
        assert r.status_code == 200
        assert "attachment" in r.headers["content-disposition"]
    records = [AuditRecord.from_json(json.loads(line)) for line in r.text.splitlines()]
    assert records and verify(records).ok
    with factory.client("ops") as api:
        assert api.get("/api/v1/audit/export").text.startswith(r.text.splitlines()[0])


def test_a_broken_chain_is_shown_and_blocks_the_report(factory: Factory) -> None:
    placed_job(factory)
    with factory.state.db.write() as s:
        victim = s.get(AuditRow, 1)
        assert victim is not None
        saved = {c.name: getattr(victim, c.name) for c in AuditRow.__table__.columns}
        s.execute(delete(AuditRow).where(AuditRow.seq == 1))
    try:
        with signed_in(factory, "ops") as c:
            page = c.get("/ops/audit")
            assert 'id="chain-status" data-ok="no"' in page.text
            assert "broken at record" in page.text
            report = c.get(f"/ops/report?country=MA&since={today()}&until={today()}")
            assert report.status_code == 409
            assert "the audit chain is broken" in report.text
    finally:
        with factory.state.db.write() as s:
            s.add(AuditRow(**saved))
    with signed_in(factory, "ops") as c:
        assert 'data-ok="yes"' in c.get("/ops/audit").text


def test_the_regulators_report_and_its_downloads(factory: Factory) -> None:
    data_id, job_id = placed_job(factory, "health")
    period = f"country=MA&since={today()}&until={today()}"
    with signed_in(factory, "ops") as c:
        page = c.get(f"/ops/report?{period}")
        assert page.status_code == 200
        rows = page.text[page.text.index('id="report-rows"'):]
        assert f'href="/jobs/{job_id}"' in rows and f'href="/data/{data_id}"' in rows
        assert "CNDP" in page.text  # the regulator named by the rules
        as_csv = c.get(f"/ops/report.csv?{period}")
        as_json = c.get(f"/ops/report.json?{period}")
    assert as_csv.status_code == as_json.status_code == 200
    assert "attachment" in as_csv.headers["content-disposition"]
    lines = list(csv.DictReader(io.StringIO(as_csv.text)))
    mine = [r for r in lines if r["job_id"] == job_id]
    assert [(r["data_id"], r["site"], r["site_country"], r["in_country"]) for r in mine] == [
        (data_id, "ma-1", "MA", "True")
    ]
    doc = json.loads(as_json.text)
    assert doc["country"] == "MA" and doc["regulator"] == "CNDP"
    assert any(r["job_id"] == job_id for r in doc["rows"])
    # The same report as the API's (the period is the same two UTC midnights).
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    with factory.client("ops") as api:
        r = api.get("/api/v1/regulator-report", params={
            "country": "MA", "since": start.isoformat(), "until": end.isoformat(),
            "format": "csv"})
    theirs = [row for row in csv.DictReader(io.StringIO(r.text)) if row["job_id"] == job_id]
    assert theirs == mine
    # Another country's report does not hold Moroccan data.
    with signed_in(factory, "ops") as c:
        kenya = c.get(f"/ops/report.csv?country=KE&since={today()}&until={today()}").text
    assert data_id not in kenya


def test_report_errors_are_shown_next_to_their_fields(factory: Factory) -> None:
    say = Lang("fr")
    with signed_in(factory, "ops") as c:
        r = c.get("/ops/report?lang=fr&country=XX&since=2026-13-01&until=2026-11-02")
        assert r.status_code == 422
        html = r.text.replace("&#39;", "'")

        def error_of(field: str) -> str:
            found = re.search(rf'id="r-{field}-error"[^>]*>([^<]*)</p>', html)
            assert found, field
            return found.group(1)

        assert error_of("country") == say.gettext(
            "Choose one of: %(choices)s.", choices="EG, KE, MA, NG, ZA")
        assert error_of("since") == say.gettext(
            "Give a day as YYYY-MM-DD, for example 2026-11-01.")
        assert 'value="2026-13-01"' in html  # kept as typed
        r = c.get("/ops/report?lang=en&country=MA&since=2026-11-05&until=2026-11-01")
        assert r.status_code == 422
        assert "The last day comes on or after the first day." in r.text
        # A download with a bad period is the form again, not a file.
        bad = c.get("/ops/report.csv?country=MA&since=nope&until=2026-11-01")
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
        # The calendar's last day has no day after it to end the window.
        r = c.get("/ops/report?lang=en&country=MA&since=2026-11-01&until=9999-12-31")
        assert r.status_code == 422 and "Give a day as YYYY-MM-DD" in r.text


def test_utilisation_over_time_counts_the_runs(factory: Factory) -> None:
    job_id = factory.submit("amina", project="llm", command=["sleep", "2"],
                            gpus_per_task=8, gpu_types=["h100-sxm-80gb"])
    factory.wait_state(job_id, {"succeeded"}, timeout=30)
    with signed_in(factory, "ops") as c:
        page = c.get("/ops/util?window=hour")
        assert page.status_code == 200
        chart = page.text[page.text.index('id="util-chart"'):]
        assert chart.count("<polyline") == 3  # the factory and its two sites
        sites = page.text[page.text.index('id="util-sites"'):]
        peak = re.search(r'<th scope="row">ma-1</th><td class="num">16</td>'
                         r'<td class="num">[^<]*</td><td class="num">(\d+)', sites)
        assert peak and int(peak.group(1)) > 0, sites[:600]
        tenants = page.text[page.text.index('id="util-tenants"'):]
        assert '<th scope="row">um6p</th>' in tenants
        assert c.get("/ops/util?window=fortnight").status_code == 422
        assert c.get("/ops/util?window=month&lang=ar").status_code == 200


def test_an_operator_drains_a_site_and_brings_it_back(factory: Factory) -> None:
    with signed_in(factory, "ops") as c:
        token = csrf_of(c.get("/ops/sites").text)
        refused = c.post("/ops/sites/ke-1/state", data={"csrf_token": "x", "state": "drained"})
        assert refused.status_code == 403
        try:
            r = c.post("/ops/sites/ke-1/state", data={"csrf_token": token, "state": "drained",
                                                      "reason": "power work", "evacuate": "1"})
            assert r.status_code == 303
            # The notice says whether runs were moved (none may be running there now).
            assert re.fullmatch(r"/ops/sites\?done=drained(-finish)?&site=ke-1#site-ke-1",
                                r.headers["location"])
            with factory.state.db.read() as s:
                site = s.scalars(select(m.Site).where(m.Site.name == "ke-1")).one()
                assert (site.state, site.reason) == ("drained", "power work")
            page = c.get(r.headers["location"])
            assert 'id="site-ke-1" data-state="drained"' in page.text
            assert "Site ke-1 is drained" in page.text
            bad = c.post("/ops/sites/ke-1/state", data={"csrf_token": token, "state": "gone"})
            assert bad.status_code == 422
            odd = c.post("/ops/sites/ke-1/state", data={"csrf_token": token, "state": "drained",
                                                        "evacuate": "yes"})
            assert odd.status_code == 422  # the box sends 1 or nothing
            # Unticked "move its jobs": the runs there go on (a let-finish drain).
            kept = c.post("/ops/sites/ke-1/state", data={"csrf_token": token, "state": "drained"})
            assert kept.headers["location"] == "/ops/sites?done=drained-finish&site=ke-1#site-ke-1"
            assert "its runs go on" in c.get(kept.headers["location"]).text
            missing = c.post("/ops/sites/xx-9/state", data={"csrf_token": token, "state": "up"})
            assert missing.status_code == 404
            # The audit log tells the changes apart: the site, from what to what, and why.
            log = c.get("/ops/audit?action=site-state").text.replace("&gt;", ">")
            assert "ke-1</span> <span class=\"mono\">up → drained</span>" in log
            assert "(power work)" in log
        finally:
            c.post("/ops/sites/ke-1/state", data={"csrf_token": token, "state": "up"})
        with factory.state.db.read() as s:
            assert s.scalars(select(m.Site.state).where(m.Site.name == "ke-1")).one() == "up"
