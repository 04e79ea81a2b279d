"""Residency over the live API: refusals that name the law, lawful placement by a real
control loop, lineage and downloads, the audit chain in the database, site states,
isolation between tenants and the regulator's report."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from api.conftest import World
from masnaa.cli.main import app as cli
from masnaa.service.loop import ControlLoop

from .conftest import drive, job, register

FORBIDDEN_NAMED_SITE = [
    # (tenant user, dataset, named site, rule, words of the law, regulator)
    ("um6p-alice", {"name": "grid", "home_site": "ma-1",
                    "data_class": "government_sensitive"},
     "ke-1", "MA.strict-local", "09-08", "CNDP"),
    ("um6p-alice", {"name": "scans", "home_site": "ma-1", "data_class": "health"},
     "ke-1", "MA.", "09-08", "CNDP"),
    ("uon-alice", {"name": "clinic", "home_site": "ke-1", "data_class": "health_care"},
     "ma-1", "KE.strict-local", "2019", "ODPC"),
]


@pytest.mark.parametrize(("who", "data", "site", "rule", "law", "regulator"),
                         FORBIDDEN_NAMED_SITE)
def test_naming_a_site_the_data_may_not_go_to_is_refused_with_rule_law_and_remedy(
    world: World, who: str, data: dict[str, str], site: str, rule: str, law: str,
    regulator: str,
) -> None:
    c = world[who].client
    d = register(c, **data)
    r = c.post("/api/v1/jobs", json={"command": ["true"], "project": "llm",
                                     "datasets": [d["id"]], "sites": [site]})
    assert r.status_code == 422, r.text
    e = r.json()["error"]
    assert e["code"] == "residency-violation"
    assert e["rule"].startswith(rule)
    assert law in e["law"] and e["regulator"] == regulator
    assert e["remedy"] and site in e["message"]
    assert e["field"] == "sites"
    # Nothing was queued.
    assert c.get("/api/v1/jobs").json()["jobs"] == []


def test_an_unnamed_job_gets_its_lawful_sites_waits_while_drained_and_runs_only_there(
    world: World, loop: ControlLoop,
) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    d = register(alice, name="scans", home_site="ma-1", data_class="health")
    assert ops.post("/api/v1/sites/ma-1/state",
                    json={"state": "drained", "reason": "maintenance"}).status_code == 200
    bound = world.submit("um6p-alice", project="llm", datasets=[d["id"]])
    free = world.submit("um6p-alice", project="llm")
    assert bound["sites"] == ["ma-1"]  # Moroccan health data: Morocco only, by the rules
    assert free["sites"] is None
    drive(loop, lambda: job(alice, free["id"])["state"] == "succeeded")
    waiting = job(alice, bound["id"])
    assert waiting["state"] == "pending" and waiting["wait_code"]
    assert job(alice, free["id"])["site"] == "ke-1"  # the only site up
    # explain: per site, why it is or is not eligible
    x = alice.get(f"/api/v1/jobs/{bound['id']}/residency").json()
    by_site = {s["site"]: s for s in x["sites"]}
    assert by_site["ma-1"]["lawful"] and not by_site["ma-1"]["eligible"]
    assert not by_site["ke-1"]["lawful"]
    assert any(f["remedy"] for f in by_site["ke-1"]["findings"] if not f["allowed"])
    assert any(line.startswith("ke-1 (KE, up): not lawful") for line in x["lines"])

    ops.post("/api/v1/sites/ma-1/state", json={"state": "up"})
    drive(loop, lambda: job(alice, bound["id"])["state"] == "succeeded")
    assert job(alice, bound["id"])["site"] == "ma-1"

    # The placement is on record with its legal basis, chained and verifiable.
    exported = ops.get("/api/v1/audit/export").text.splitlines()
    records = [json.loads(line) for line in exported]
    placements = [r for r in records if r["action"] == "placement"]
    assert [p["details"]["job_id"] for p in placements] == [bound["id"]]
    assert placements[0]["site"] == "ma-1" and placements[0]["data_ids"] == [d["id"]]
    assert placements[0]["legal_basis"] == "in-country (MA)"
    assert {r["action"] for r in records} >= {"policy-change", "data-registration",
                                              "placement"}
    assert ops.get("/api/v1/audit/verify").json()["ok"]

    # The regulator's report names the job, where it ran and on which basis.
    report = ops.get("/api/v1/regulator-report", params={
        "country": "MA", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["regulator"] == "CNDP"
    assert [(r["job_id"], r["site"], r["legal_basis"]) for r in body["rows"]] == [
        (bound["id"], "ma-1", "in-country (MA)")]
    csv = ops.get("/api/v1/regulator-report", params={
        "country": "KE", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z",
        "format": "csv"})
    assert csv.text.splitlines()[1:] == []  # no Kenyan data was touched
    # A window that ends before it starts, or a country without rules, is no report.
    for params, code in [
        ({"country": "MA", "since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
         "invalid-period"),
        ({"country": "ZZ", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
         "unknown-country"),
    ]:
        r = ops.get("/api/v1/regulator-report", params=params)
        assert r.status_code in (400, 422) and r.json()["error"]["code"] == code, r.text
    assert alice.get("/api/v1/regulator-report", params={
        "country": "MA", "since": "2000-01-01T00:00:00Z",
        "until": "2100-01-01T00:00:00Z"}).status_code == 403


def test_an_unreachable_site_requeues_a_job_only_where_its_data_may_go(
    world: World, loop: ControlLoop,
) -> None:
    bob, ops = world["uon-bob"].client, world["ops"].client
    # uon may also use Moroccan GPUs (a quota there), so only the law keeps a job in Kenya.
    assert ops.put("/api/v1/quotas", json={"tenant": "uon", "site": "ma-1",
                                           "gpu_type": "h100-sxm-80gb", "nominal": 8}
                   ).status_code == 200
    portable = register(bob, name="survey", home_site="ke-1", data_class="personal",
                        grounds=[{"country": "KE", "condition": "consent", "kind": "consent",
                                  "reference": "C-7"}])
    bound = register(bob, name="clinic", home_site="ke-1", data_class="health_care")
    ops.post("/api/v1/sites/ma-1/state", json={"state": "drained"})
    a = world.submit("uon-bob", project="llm", datasets=[portable["id"]], command=["sleep", "30"])
    b = world.submit("uon-bob", project="llm", datasets=[bound["id"]], command=["sleep", "30"])
    assert a["sites"] == ["ma-1", "ke-1"] and b["sites"] == ["ke-1"]
    drive(loop, lambda: all(job(bob, j["id"])["state"] == "running" for j in (a, b)))
    assert {job(bob, j["id"])["site"] for j in (a, b)} == {"ke-1"}

    ops.post("/api/v1/sites/ma-1/state", json={"state": "up"})
    r = ops.post("/api/v1/sites/ke-1/state", json={"state": "unreachable", "reason": "fibre cut"})
    assert r.json()["state"] == "unreachable"
    drive(loop, lambda: job(bob, a["id"])["state"] == "running"
          and job(bob, a["id"])["site"] == "ma-1")
    drive(loop, lambda: bool(job(bob, b["id"])["wait_code"]))
    moved, stuck = job(bob, a["id"]), job(bob, b["id"])
    assert moved["attempt"] == 2
    assert stuck["state"] == "pending" and stuck["site"] in (None, "ke-1")
    assert stuck["wait_message"]
    events = bob.get(f"/api/v1/jobs/{b['id']}").json()
    assert "unreachable" in json.dumps(events)
    placements = [json.loads(line) for line in ops.get("/api/v1/audit/export").text.splitlines()
                  if '"placement"' in line]
    assert [(p["details"]["job_id"], p["site"]) for p in placements
            if p["details"]["job_id"] == a["id"]] == [(a["id"], "ke-1"), (a["id"], "ma-1")]
    assert all(p["site"] == "ke-1" for p in placements if p["details"]["job_id"] == b["id"])
    for j in (a, b):
        assert bob.post(f"/api/v1/jobs/{j['id']}/cancel").status_code == 200
    drive(loop, lambda: job(bob, a["id"])["state"] == "cancelled")


def test_artifacts_inherit_their_inputs_residency_and_downloads_are_checked_and_audited(
    world: World,
) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    scans = register(alice, name="scans", home_site="ma-1", data_class="health")
    j = world.submit("um6p-alice", project="llm", datasets=[scans["id"]])
    early = alice.post(f"/api/v1/jobs/{j['id']}/artifacts", json={"name": "model"})
    assert early.status_code == 409 and early.json()["error"]["code"] == "not-placed"
    world.set_job(j["id"], site="ma-1")
    r = alice.post(f"/api/v1/jobs/{j['id']}/artifacts",
                   json={"name": "model", "uri": "s3://ma-1/model.pt"})
    assert r.status_code == 201, r.text
    model = r.json()
    assert (model["kind"], model["jurisdictions"], model["classes"], model["derived_from"]) == (
        "artifact", ["MA"], ["health"], [scans["id"]])
    assert model["home_site"] == "ma-1" and model["strictest_class"] == "health"

    refused = alice.get(f"/api/v1/artifacts/{model['id']}/download",
                        params={"destination": "KE"})
    assert refused.status_code == 403, refused.text
    e = refused.json()["error"]
    assert e["code"] == "residency-violation" and e["rule"].startswith("MA.")
    assert e["law"] and e["regulator"] == "CNDP" and e["remedy"]
    assert e["remedy"].endswith("download it to MA only") and "run at" not in e["remedy"]
    ok = alice.get(f"/api/v1/artifacts/{model['id']}/download", params={"destination": "MA"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["uri"] == "s3://ma-1/model.pt" and ok.json()["legal_basis"]

    downloads = [json.loads(line) for line in ops.get("/api/v1/audit/export").text.splitlines()
                 if '"download"' in line]
    assert [d["details"]["allowed"] for d in downloads] == [False, True]

    # A job that reads the model is placed as Moroccan health data.
    again = alice.post("/api/v1/jobs", json={"command": ["true"], "project": "llm",
                                             "datasets": [model["id"]], "sites": ["ke-1"]})
    assert again.status_code == 422 and again.json()["error"]["rule"].startswith("MA.")
    assert world.submit("um6p-alice", project="llm", datasets=[model["id"]])["sites"] == ["ma-1"]

    # A ground for KE on the artifact itself makes the Kenyan download lawful.
    g = alice.post(f"/api/v1/datasets/{model['id']}/grounds", json={
        "country": "MA", "condition": "cndp_transfer_authorisation", "kind": "authorisation",
        "reference": "CNDP-2026-17", "expires": "2100-01-01T00:00:00Z",
        "destinations": ["KE"]})
    assert g.status_code == 200 and g.json()["version"] == 2
    # health also needs express consent or another alternative besides the authorisation
    alice.post(f"/api/v1/datasets/{model['id']}/grounds", json={
        "country": "MA", "condition": "express_consent", "kind": "consent",
        "reference": "C-1"})
    lawful = alice.get(f"/api/v1/artifacts/{model['id']}/download", params={"destination": "KE"})
    assert lawful.status_code == 200, lawful.text
    assert "CNDP-2026-17" in lawful.json()["legal_basis"]


def test_the_audit_chain_in_the_database_verifies_and_tampering_is_detected(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    d = register(alice, name="scans", home_site="ma-1", data_class="health",
                 grounds=[{"country": "MA", "condition": "express_consent", "kind": "consent"}])
    alice.post(f"/api/v1/datasets/{d['id']}/grounds", json={
        "country": "MA", "condition": "cndp_transfer_authorisation", "kind": "authorisation",
        "reference": "CNDP-9", "expires": "2100-01-01T00:00:00Z"})
    register(alice, name="survey", home_site="ma-1", data_class="personal")
    v = ops.get("/api/v1/audit/verify").json()
    assert v["ok"] and v["checked"] == 5  # policy, registration + ground, ground, registration
    assert alice.get("/api/v1/audit/verify").status_code == 403

    # The export is the file `masnaa audit verify` checks offline.
    exported = tmp_path / "audit.jsonl"
    exported.write_bytes(ops.get("/api/v1/audit/export").content)
    done = CliRunner().invoke(cli, ["audit", "verify", str(exported)])
    assert done.exit_code == 0, done.output
    assert f"head seq 4 hash {v['head']['hash']}" in done.output

    engine = world.server.state.db.engine
    postgres = engine.dialect.name == "postgresql"
    with pytest.raises(DBAPIError), engine.begin() as conn:  # append-only
        conn.execute(text("UPDATE audit_records SET legal_basis = 'none' WHERE seq = 2"))
    drop = ("DROP TRIGGER audit_records_no_update ON audit_records" if postgres
            else "DROP TRIGGER audit_records_no_update")
    create = ("CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
              "FOR EACH ROW EXECUTE FUNCTION masnaa_audit_append_only()" if postgres
              else "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
              "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END")
    try:
        # Someone with the database owner's rights drops the trigger and edits a record.
        with engine.begin() as conn:
            conn.execute(text(drop))
            original = conn.execute(
                text("SELECT legal_basis FROM audit_records WHERE seq = 2")).scalar_one()
            conn.execute(text("UPDATE audit_records SET legal_basis = 'forged' WHERE seq = 2"))
        broken = ops.get("/api/v1/audit/verify").json()
        assert (broken["ok"], broken["reason"], broken["seq"]) == (False, "tampered", 2)
        exported.write_bytes(ops.get("/api/v1/audit/export").content)
        done = CliRunner().invoke(cli, ["audit", "verify", str(exported)])
        assert done.exit_code == 1 and "seq 2" in done.output
        refused = ops.get("/api/v1/regulator-report", params={
            "country": "MA", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"})
        assert refused.status_code == 409
        # ... or deletes one, or cuts the tail off.
        with engine.begin() as conn:
            conn.execute(text("UPDATE audit_records SET legal_basis = :v WHERE seq = 2"),
                         {"v": original})
            conn.execute(text("DELETE FROM audit_records WHERE seq = 3"))
        gone = ops.get("/api/v1/audit/verify").json()
        assert (gone["ok"], gone["reason"], gone["seq"]) == (False, "missing", 4)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_records WHERE seq >= 3"))
        cut = ops.get("/api/v1/audit/verify").json()
        assert (cut["ok"], cut["reason"]) == (False, "truncated")
    finally:
        with engine.begin() as conn:
            conn.execute(text(create))


def test_another_tenants_data_is_not_found(world: World) -> None:
    alice, other = world["um6p-alice"].client, world["uon-alice"].client
    d = register(alice, name="scans", home_site="ma-1", data_class="health")
    assert other.get(f"/api/v1/datasets/{d['id']}").status_code == 404
    assert other.get("/api/v1/datasets").json() == []
    r = other.post("/api/v1/jobs", json={"command": ["true"], "project": "llm",
                                         "datasets": [d["id"]]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset-not-found"
    assert r.json()["error"]["field"] == "datasets[0]"
    g = other.post(f"/api/v1/datasets/{d['id']}/grounds", json={
        "country": "MA", "condition": "express_consent", "kind": "consent"})
    assert g.status_code == 404
    dl = other.get(f"/api/v1/artifacts/{d['id']}/download", params={"destination": "MA"})
    assert dl.status_code == 404
    # the owner's tenant sees it; an operator sees every tenant's
    assert [x["id"] for x in world["um6p-bob"].client.get("/api/v1/datasets").json()] == [d["id"]]
    assert [x["id"] for x in world["ops"].client.get("/api/v1/datasets").json()] == [d["id"]]


def test_bad_residency_input_gets_a_clear_error(world: World) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    r = alice.post("/api/v1/datasets", json={"name": "x", "home_site": "mars-1",
                                             "data_class": "health"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown-site"
    d = register(alice, name="odd", home_site="ma-1", data_class="secret_sauce")
    assert "counts as 'sensitive'" in d["note"]
    g = alice.post(f"/api/v1/datasets/{d['id']}/grounds", json={
        "country": "KE", "condition": "consent", "kind": "consent"})
    assert g.status_code == 422 and g.json()["error"]["field"] == "country"
    a = alice.post(f"/api/v1/datasets/{d['id']}/grounds", json={
        "country": "MA", "condition": "cndp_transfer_authorisation", "kind": "authorisation"})
    assert a.status_code == 422 and "reference" in a.json()["error"]["message"]
    s = ops.post("/api/v1/sites/ma-1/state", json={"state": "sleeping"})
    assert s.status_code == 422
    assert alice.post("/api/v1/sites/ma-1/state", json={"state": "drained"}).status_code == 403


def _kenyan_survey_with_consent_expiring(
    world: World, seconds: float
) -> tuple[dict[str, Any], datetime]:
    """uon may use Moroccan GPUs too; its Kenyan personal data may go abroad on a
    consent that expires in ``seconds``."""
    world["ops"].client.put("/api/v1/quotas", json={
        "tenant": "uon", "site": "ma-1", "gpu_type": "h100-sxm-80gb", "nominal": 8})
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    d = register(world["uon-bob"].client, name="survey", home_site="ke-1",
                 data_class="personal",
                 grounds=[{"country": "KE", "condition": "consent", "kind": "consent",
                           "expires": expires.isoformat()}])
    return d, expires


def test_an_expired_ground_narrows_a_pending_jobs_sites_or_fails_it(
    world: World, loop: ControlLoop,
) -> None:
    bob, ops = world["uon-bob"].client, world["ops"].client
    d, expires = _kenyan_survey_with_consent_expiring(world, seconds=2)
    for site in ("ma-1", "ke-1"):
        ops.post(f"/api/v1/sites/{site}/state", json={"state": "drained"})
    wide = world.submit("uon-bob", project="llm", datasets=[d["id"]])
    abroad = world.submit("uon-bob", project="llm", datasets=[d["id"]], sites=["ma-1"])
    assert wide["sites"] == ["ma-1", "ke-1"] and abroad["sites"] == ["ma-1"]
    loop.run_pass()
    assert job(bob, wide["id"])["sites"] == ["ma-1", "ke-1"]
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    drive(loop, lambda: job(bob, abroad["id"])["state"] == "failed")
    failed = job(bob, abroad["id"])
    assert failed["state_reason"].startswith("its data may no longer go to any of its sites")
    assert "KE." in failed["state_reason"] and "expired" in failed["state_reason"]
    assert job(bob, wide["id"])["sites"] == ["ke-1"]
    # Morocco is back, but the consent has lapsed: the job waits for Kenya.
    ops.post("/api/v1/sites/ma-1/state", json={"state": "up"})
    for _ in range(5):
        loop.run_pass()
    assert job(bob, wide["id"])["state"] == "pending"
    ops.post("/api/v1/sites/ke-1/state", json={"state": "up"})
    drive(loop, lambda: job(bob, wide["id"])["state"] == "succeeded")
    assert job(bob, wide["id"])["site"] == "ke-1"


def test_a_job_requeued_after_its_ground_expired_goes_back_only_where_its_data_may_go(
    world: World, loop: ControlLoop,
) -> None:
    bob, ops = world["uon-bob"].client, world["ops"].client
    d, expires = _kenyan_survey_with_consent_expiring(world, seconds=4)
    ops.post("/api/v1/sites/ke-1/state", json={"state": "drained"})
    wide = world.submit("uon-bob", project="llm", datasets=[d["id"]], command=["sleep", "60"])
    abroad = world.submit("uon-bob", project="llm", datasets=[d["id"]], sites=["ma-1"],
                          command=["sleep", "60"])
    drive(loop, lambda: all(job(bob, j["id"])["state"] == "running" for j in (wide, abroad)))
    assert {job(bob, j["id"])["site"] for j in (wide, abroad)} == {"ma-1"}
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    # Running on: the placement was lawful when made. Its sites already shrink.
    drive(loop, lambda: job(bob, wide["id"])["sites"] == ["ke-1"])
    assert job(bob, wide["id"])["state"] == job(bob, abroad["id"])["state"] == "running"

    ops.post("/api/v1/sites/ma-1/state", json={"state": "unreachable", "reason": "fibre cut"})
    drive(loop, lambda: job(bob, abroad["id"])["state"] == "failed"
          and job(bob, wide["id"])["state"] == "pending")
    failed = job(bob, abroad["id"])["state_reason"]
    assert failed.startswith("its data may no longer go to any of its sites"), failed
    assert "expired" in failed
    ops.post("/api/v1/sites/ma-1/state", json={"state": "up"})
    for _ in range(5):
        loop.run_pass()
    assert job(bob, wide["id"])["state"] == "pending"  # Morocco is back, and not lawful
    ops.post("/api/v1/sites/ke-1/state", json={"state": "up"})
    drive(loop, lambda: job(bob, wide["id"])["state"] == "running")
    assert job(bob, wide["id"])["site"] == "ke-1"
    placements = [json.loads(line) for line in ops.get("/api/v1/audit/export").text.splitlines()
                  if '"placement"' in line]
    mine = [p for p in placements if p["details"]["job_id"] in (wide["id"], abroad["id"])]
    assert [p["site"] for p in mine] == ["ma-1", "ma-1", "ke-1"]
    assert all(f["allowed"] for p in mine for f in p["details"]["findings"]), mine
    assert bob.post(f"/api/v1/jobs/{wide['id']}/cancel").status_code == 200
    drive(loop, lambda: job(bob, wide["id"])["state"] == "cancelled")


def test_every_rules_change_the_loop_takes_up_is_on_the_chain_before_its_placements(
    world: World, loop: ControlLoop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from masnaa.policy.loader import default_rules_path
    from masnaa.service.residency import RULES_ENV

    rules = tmp_path / "rules.toml"
    strict = default_rules_path().read_text()
    adequate = strict.replace(
        "adequate_destinations = []   # fill from the CNDP's published list",
        'adequate_destinations = ["KE"]')
    assert adequate != strict
    rules.write_text(strict)
    monkeypatch.setenv(RULES_ENV, str(rules))
    alice, ops = world["um6p-alice"].client, world["ops"].client
    ops.put("/api/v1/quotas", json={"tenant": "um6p", "site": "ke-1",
                                    "gpu_type": "a100-80gb", "nominal": 4})
    d = register(alice, name="survey", home_site="ma-1", data_class="personal")
    refused = alice.post("/api/v1/jobs", json={"command": ["true"], "project": "llm",
                                               "datasets": [d["id"]], "sites": ["ke-1"]})
    assert refused.status_code == 422, refused.text

    def edit(text: str, stamp: int) -> None:
        rules.write_text(text)
        os.utime(rules, (stamp, stamp))  # a new modification time, however fast the edit
        loop.run_pass()

    edit(adequate, 1_800_000_000)  # the loop takes it up: no registration needed
    j = world.submit("um6p-alice", project="llm", datasets=[d["id"]], sites=["ke-1"],
                     command=["sleep", "30"])
    drive(loop, lambda: job(alice, j["id"])["state"] == "running")
    edit(strict, 1_800_000_100)

    records = [json.loads(line) for line in ops.get("/api/v1/audit/export").text.splitlines()]
    changes = [r["details"] for r in records if r["action"] == "policy-change"]
    assert len(changes) == 3, changes
    first, loose, back = changes
    assert (loose["previous_digest"], back["previous_digest"]) == (
        first["digest"], loose["digest"])
    assert back["digest"] == first["digest"] != loose["digest"]
    in_force = None
    for r in records:  # every placement is judged under the rules last put on the chain
        if r["action"] == "policy-change":
            in_force = r["details"]["digest"]
        elif r["action"] == "placement":
            assert r["details"]["rules_digest"] == in_force == loose["digest"]
    assert alice.post(f"/api/v1/jobs/{j['id']}/cancel").status_code == 200
    drive(loop, lambda: job(alice, j["id"])["state"] == "cancelled")
