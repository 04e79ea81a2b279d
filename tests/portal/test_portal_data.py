"""The data pages over HTTP: my datasets and artifacts, registering one, lineage, isolation.

Everything runs against the real factory of ``conftest`` (uvicorn, SQLite, the
control loop): a dataset registered through the form is the service's row,
audited; an artifact's lineage comes from a job that really read the data.
"""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
from sqlalchemy import select

from masnaa.portal.i18n import Lang
from masnaa.portal.routes_data import DATA_ERRORS
from masnaa.store.residency import AuditRow, DatasetRow

from .conftest import Factory
from .test_portal_http import csrf_of, signed_in


def register(c: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf_of(c.get("/data/new").text)
    return c.post("/data/new", data={"csrf_token": token, **fields})


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def data_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/data/(d-[0-9a-f]+)\?done=registered", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def row(factory: Factory, data_id: str) -> DatasetRow:
    with factory.state.db.read() as s:
        found = s.get(DatasetRow, data_id)
        assert found is not None
        return found


def test_a_researcher_registers_a_dataset_and_sees_it_with_its_law(factory: Factory) -> None:
    name = unique("cohort")
    with signed_in(factory, "amina") as c:
        r = register(c, name=name, home_site="ma-1", data_class="health", owner="Dr Amina")
        data_id = data_id_of(r)
        stored = row(factory, data_id)
        assert (stored.home_site, stored.jurisdictions, stored.classes, stored.owner) == (
            "ma-1", ["MA"], ["health"], "Dr Amina"
        )
        with factory.state.db.read() as s:
            audited = s.scalars(select(AuditRow).where(
                AuditRow.action == "data-registration")).all()
        assert any(data_id in a.data_ids for a in audited)

        detail = c.get(r.headers["location"])
        assert detail.status_code == 200
        assert "The dataset is registered." in detail.text
        facts = detail.text[detail.text.index('class="facts"'):]
        assert "ma-1" in facts and "MA" in facts and "health" in facts

        listing = c.get("/data")
        assert listing.status_code == 200
        line = re.search(rf'<tr id="data-{data_id}">(.*?)</tr>', listing.text, re.S)
        assert line, "the dataset is not listed"
        cells = line.group(1)
        assert name in cells and "ma-1" in cells and "<td>MA</td>" in cells and "health" in cells
        # Filtered by kind: a dataset is not an artifact.
        assert data_id not in c.get("/data?kind=artifact").text
        assert data_id in c.get("/data?kind=dataset").text


def test_a_jurisdiction_other_than_the_home_country_and_an_unknown_class(
    factory: Factory,
) -> None:
    with signed_in(factory, "amina") as c:
        r = register(c, name=unique("mixed"), home_site="ma-1", jurisdiction="ke",
                     data_class="folklore")
        data_id = data_id_of(r)
        assert row(factory, data_id).jurisdictions == ["KE"]
        page = c.get(f"/data/{data_id}?lang=fr")
        # The rules do not know "folklore": it is treated as their unknown class.
        say = Lang("fr")
        expected = say.gettext(
            "The rules do not know this class: it is treated as %(cls)s.", cls="sensitive"
        )
        assert expected.replace("'", "&#39;") in page.text


@pytest.mark.parametrize("lang", ["en", "fr", "ar"])
def test_errors_are_shown_next_to_their_fields_and_nothing_is_lost(
    factory: Factory, lang: str
) -> None:
    say = Lang(lang)
    with signed_in(factory, "amina") as c:
        c.get(f"/data?lang={lang}")
        before = len(c.get("/data").text)
        r = register(c, name="", home_site="ma-1", jurisdiction="MOROCCO",
                     data_class="personal", owner="kept owner", uri="s3://kept/uri")
        assert r.status_code == 422
        html = r.text

        def error_of(field: str) -> str:
            found = re.search(rf'id="d-{field}-error"[^>]*>([^<]*)</p>', html)
            assert found, field
            return found.group(1).replace("&#39;", "'")

        assert error_of("name") == say.gettext(DATA_ERRORS["required"])
        assert error_of("jurisdiction") == say.gettext(DATA_ERRORS["country"])
        assert error_of("data_class") == ""
        assert 'id="d-name"' in html and 'aria-invalid="true"' in html
        # What was typed is all there again.
        assert 'value="kept owner"' in html and 'value="s3://kept/uri"' in html
        assert 'value="MOROCCO"' in html and 'value="personal"' in html

        # A site that is not one of the factory's (a forged select) is named as such.
        r = register(c, name="x", home_site="atlantis-1", data_class="public")
        assert r.status_code == 422
        html = r.text
        assert error_of("home_site") == say.gettext(DATA_ERRORS["choose"], choices="ke-1, ma-1")
        assert len(c.get("/data").text) == before  # nothing was registered


def test_registering_needs_the_csrf_token(factory: Factory) -> None:
    name = unique("forged")
    with signed_in(factory, "amina") as c:
        r = c.post("/data/new", data={"name": name, "home_site": "ma-1", "data_class": "public",
                                      "csrf_token": "forged"})
        assert r.status_code == 403
    with factory.state.db.read() as s:
        assert s.scalars(select(DatasetRow).where(DatasetRow.name == name)).first() is None


def test_another_tenants_data_is_not_found(factory: Factory) -> None:
    with signed_in(factory, "wanjiru") as c:
        theirs = data_id_of(register(c, name=unique("kenyan-secret"), home_site="ke-1",
                                     data_class="personal"))
    with signed_in(factory, "amina") as c:
        r = c.get(f"/data/{theirs}")
        assert r.status_code == 404
        assert "kenyan-secret" not in r.text
        listing = c.get("/data").text
        assert theirs not in listing and "kenyan-secret" not in listing
        assert c.get("/data/d-doesnotexist").status_code == 404
    with signed_in(factory, "ops") as c:
        # Operators see every tenant's data, with the tenant named.
        r = c.get(f"/data/{theirs}")
        assert r.status_code == 200 and "uon" in r.text


def test_an_operator_names_the_tenant(factory: Factory) -> None:
    with signed_in(factory, "ops") as c:
        r = register(c, name=unique("ops-data"), home_site="ke-1", data_class="public")
        assert r.status_code == 422
        assert "Choose the tenant the data belongs to." in r.text
        data_id = data_id_of(register(c, name=unique("ops-data"), home_site="ke-1",
                                      data_class="public", tenant="uon"))
    with factory.state.db.read() as s:
        from masnaa.store import models as m

        uon = s.scalars(select(m.Tenant).where(m.Tenant.name == "uon")).one()
    assert row(factory, data_id).tenant_id == uon.id


def test_an_artifact_shows_its_lineage(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        data_id = data_id_of(register(c, name=unique("scans"), home_site="ma-1",
                                      data_class="health"))
    job_id = factory.submit("amina", project="llm", command=["true"], datasets=[data_id],
                            gpu_types=["h100-sxm-80gb"])
    factory.wait_state(job_id, {"succeeded"}, timeout=30)
    with factory.client("amina") as api:
        r = api.post(f"/api/v1/jobs/{job_id}/artifacts", json={"name": "weights"})
        assert r.status_code == 201, r.text
        artifact = r.json()["id"]
    with signed_in(factory, "amina") as c:
        page = c.get(f"/data/{artifact}")
        assert page.status_code == 200
        lineage = page.text[page.text.index('id="h-lineage"'):]
        assert f'href="/data/{data_id}"' in lineage and f'href="/jobs/{job_id}"' in lineage
        facts = page.text[page.text.index('class="facts"'):page.text.index("</dl>")]
        assert "MA" in facts and "health" in facts  # inherited from what the job read
        parent = c.get(f"/data/{data_id}").text
        assert f'href="/data/{artifact}"' in parent
        assert artifact in c.get("/data?kind=artifact").text
    with signed_in(factory, "wanjiru") as c:
        assert c.get(f"/data/{artifact}").status_code == 404


@pytest.mark.parametrize(
    "path", ["/ops/audit", "/ops/audit.jsonl", "/ops/report", "/ops/report.csv?country=MA",
             "/ops/util", "/ops/sites"],
)
def test_a_member_cannot_open_operator_pages(factory: Factory, path: str) -> None:
    with signed_in(factory, "amina") as c:
        r = c.get(path)
        assert r.status_code == 404
        assert "There is no such page" in r.text


def test_a_member_cannot_change_a_site(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        token = csrf_of(c.get("/data/new").text)
        r = c.post("/ops/sites/ma-1/state", data={"csrf_token": token, "state": "drained"})
        assert r.status_code == 404
    with factory.state.db.read() as s:
        from masnaa.store import models as m

        assert s.scalars(select(m.Site.state).where(m.Site.name == "ma-1")).one() == "up"


def test_the_list_is_paged_newest_first(factory: Factory, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    from masnaa.portal import routes_data

    with signed_in(factory, "amina") as c:
        made = [data_id_of(register(c, name=unique("paged"), home_site="ma-1",
                                    data_class="public")) for _ in range(3)]
        monkeypatch.setattr(routes_data, "PAGE_SIZE", 2)  # the server runs in this process
        first = c.get("/data?kind=dataset").text
        ids = re.findall(r'<tr id="data-(d-[0-9a-f]+)">', first)
        assert ids == [made[2], made[1]]
        assert 'href="/data?kind=dataset&amp;skip=2"' in first
        older = c.get("/data?kind=dataset&skip=2").text
        second = re.findall(r'<tr id="data-(d-[0-9a-f]+)">', older)
        assert second[0] == made[0]


def test_a_dataset_registered_with_a_transfer_ground(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        r = register(c, name=unique("consented"), home_site="ma-1", data_class="personal",
                     ground_condition="express_consent", ground_kind="consent",
                     ground_reference="form-2026-11", ground_expires="2027-03-31")
        data_id = data_id_of(r)
        page = c.get(f"/data/{data_id}").text
    grounds = page[page.index('id="h-grounds"'):]
    assert "express_consent" in grounds and "form-2026-11" in grounds
    with factory.state.db.read() as s:
        from masnaa.store.residency import TransferGroundRow

        stored = s.scalars(select(TransferGroundRow)
                           .where(TransferGroundRow.dataset_id == data_id)).one()
        granted = s.scalars(select(AuditRow).where(AuditRow.action == "ground-grant")).all()
    assert (stored.country, stored.condition, stored.kind, stored.reference) == (
        "MA", "express_consent", "consent", "form-2026-11")
    assert stored.expires == 1806451200.0  # 2027-03-31T00:00:00Z
    assert any(data_id in g.data_ids for g in granted)


def test_ground_errors_are_shown_next_to_their_fields(factory: Factory) -> None:
    with signed_in(factory, "amina") as c:
        # A regulator's authorisation needs its reference and expiry (the policy's rule).
        r = register(c, name=unique("authorised"), home_site="ma-1", data_class="health",
                     ground_condition="cndp_transfer_authorisation",
                     ground_kind="authorisation")
        assert r.status_code == 422
        found = re.search(r'id="d-ground_reference-error"[^>]*>([^<]+)</p>', r.text)
        assert found and "reference" in found.group(1)
        assert 'value="cndp_transfer_authorisation"' in r.text
        r = register(c, name=unique("authorised"), home_site="ma-1", data_class="health",
                     ground_condition="express_consent", ground_expires="31/03/2027")
        assert r.status_code == 422
        found = re.search(r'id="d-ground_expires-error"[^>]*>([^<]+)</p>', r.text)
        assert found and found.group(1) == DATA_ERRORS["day"]
