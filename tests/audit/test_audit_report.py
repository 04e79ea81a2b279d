"""Audit events from policy decisions, and the regulator's report built from them."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masnaa.audit import AuditRecord, verify
from masnaa.audit.events import (
    download_event,
    ground_event,
    placement_event,
    policy_change_event,
    refusal_event,
    registration_event,
    seal_event,
)
from masnaa.audit.jsonl import JsonlAuditLog
from masnaa.audit.report import regulator_report, render_csv, render_json
from masnaa.cli.main import app
from masnaa.policy import ResidencyRefused, check_named_sites, eligible_sites, may_download

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))
from residency_builders import NOW, RULES, SITES, ds, ground

KE_HEALTH = ds("ke-clinic", "KE", "health_care", ground("KE", "consent"),
               ground("KE", "appropriate_safeguards"), serving=("KE",))
MA_PERSONAL = ds("ma-survey", "MA", "personal", ground("MA", "express_consent", ref="C-1"))


def build_log() -> list[AuditRecord]:
    records: list[AuditRecord] = []

    def add(at: datetime, event: object) -> None:
        records.append(seal_event(records[-1] if records else None, at, event))  # type: ignore[arg-type]

    add(NOW, policy_change_event("operator", None, RULES))
    add(NOW, registration_event("alice", KE_HEALTH))
    add(NOW, ground_event("alice", KE_HEALTH, KE_HEALTH.grounds[0]))
    e = eligible_sites([KE_HEALTH], SITES, RULES, NOW)
    add(NOW + timedelta(hours=1), placement_event("scheduler", "j1", "uon", "ke-1",
                                                  (KE_HEALTH,), e))
    add(NOW + timedelta(hours=2), placement_event("scheduler", "j2", "uon", "za-1",
                                                  (KE_HEALTH,), e))
    both = eligible_sites([KE_HEALTH, MA_PERSONAL], SITES, RULES, NOW)
    add(NOW + timedelta(hours=3), placement_event("scheduler", "j3", "uon", "ma-1",
                                                  (KE_HEALTH, MA_PERSONAL), both))
    try:
        check_named_sites(["eg-1"], eligible_sites([ds("x", "KE", "elections")], SITES, RULES,
                                                   NOW))
    except ResidencyRefused as refused:
        add(NOW + timedelta(hours=4), refusal_event("api", "j4", "uon", (ds("x", "KE",
                                                                          "elections"),),
                                                    refused))
    add(NOW + timedelta(hours=5), download_event(
        "bob", KE_HEALTH, "ZA", "ZA", "member",
        may_download(KE_HEALTH, "ZA", "ZA", "member", RULES, NOW)))
    add(NOW + timedelta(days=40), placement_event("scheduler", "j9", "uon", "ke-1",
                                                  (KE_HEALTH,), e))
    return records


def test_events_make_a_valid_chain_with_who_what_where_why() -> None:
    records = build_log()
    assert verify(records).ok
    actions = [r.action for r in records]
    assert actions[:4] == ["policy-change", "data-registration", "ground-grant", "placement"]
    assert "refusal" in actions and "download" in actions
    placed = records[4]
    assert (placed.site, placed.data_ids, placed.actor) == ("za-1", ("ke-clinic",), "scheduler")
    assert placed.rule_id == "KE.sensitive-transfer"
    assert placed.legal_basis and placed.legal_basis.startswith("serving copy kept in KE")
    assert placed.details["rules_digest"] == RULES.digest
    refusal = next(r for r in records if r.action == "refusal")
    assert refusal.rule_id == "KE.strict-local.serving-copy"
    assert refusal.details["remedy"]


def test_report_for_kenya_lists_jobs_sites_and_grounds() -> None:
    report = regulator_report(build_log(), "KE", NOW, NOW + timedelta(days=30), RULES)
    assert report.regulator == "ODPC"
    jobs = [(r.job_id, r.site, r.in_country, r.rule_id) for r in report.rows
            if r.action == "placement"]
    assert jobs == [("j1", "ke-1", True, "KE.in-country"),
                    ("j2", "za-1", False, "KE.sensitive-transfer"),
                    ("j3", "ma-1", False, "KE.sensitive-transfer")]
    download = [r for r in report.rows if r.action == "download"]
    assert len(download) == 1 and download[0].site_country == "ZA"
    assert report.summary()["jobs"] == 3 and report.summary()["abroad"] == 3
    # Outside the period, and other countries' data, are left out.
    assert all(r.job_id != "j9" for r in report.rows)
    ma = regulator_report(build_log(), "MA", NOW, NOW + timedelta(days=30), RULES)
    assert [(r.job_id, r.data_id, r.legal_basis) for r in ma.rows] == [
        ("j3", "ma-survey", "in-country (MA)")]


def test_renderers() -> None:
    report = regulator_report(build_log(), "KE", NOW, NOW + timedelta(days=30), RULES)
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert [r["job_id"] for r in rows if r["action"] == "placement"] == ["j1", "j2", "j3"]
    assert rows[1]["legal_basis"].startswith("serving copy kept in KE")
    doc = json.loads(render_json(report))
    assert doc["country"] == "KE" and doc["law"] == RULES.countries["KE"].law
    assert doc["chain_head"]["seq"] == len(build_log()) - 1
    assert len(doc["rows"]) == len(rows)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_cli_report(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    for r in build_log():
        log.append(at=r.at, actor=r.actor, action=r.action, site=r.site, data_ids=r.data_ids,
                   rule_id=r.rule_id, legal_basis=r.legal_basis, details=r.details)
    out = CliRunner().invoke(app, ["audit", "report", str(path), "--country", "ke",
                                   "--since", "2026-11-01", "--until", "2026-12-01",
                                   "--format", fmt])
    assert out.exit_code == 0, out.output
    assert "za-1" in out.output and "j9" not in out.output
    path.write_text(path.read_text().replace('"actor":"scheduler"', '"actor":"x"', 1))
    broken = CliRunner().invoke(app, ["audit", "report", str(path), "--country", "KE",
                                      "--since", "2026-11-01", "--until", "2026-12-01"])
    assert broken.exit_code == 1 and "broken log" in broken.output


def _logged(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    log = JsonlAuditLog(path)
    for r in build_log():
        log.append(at=r.at, actor=r.actor, action=r.action, site=r.site, data_ids=r.data_ids,
                   rule_id=r.rule_id, legal_basis=r.legal_basis, details=r.details)
    return path


@pytest.mark.parametrize(("country", "since", "until", "code"), [
    ("XX", "2026-11-01", "2026-12-01", "unknown-country"),  # no rules: no report
    ("KE", "2026-12-01", "2026-11-01", "invalid-period"),   # ends before it starts
    ("KE", "2026-11-01", "2026-11-01", "invalid-period"),   # as the API: until after since
])
def test_cli_report_refuses_what_the_api_refuses(tmp_path: Path, country: str, since: str,
                                                 until: str, code: str) -> None:
    out = CliRunner().invoke(app, ["audit", "report", str(_logged(tmp_path)), "--country",
                                   country, "--since", since, "--until", until])
    assert out.exit_code == 2 and f"({code})" in out.output, out.output
    assert "at,seq" not in out.output  # no (empty) report


def test_cli_report_on_a_file_it_cannot_read_says_so_like_verify(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    args = ["--country", "KE", "--since", "2026-11-01", "--until", "2026-12-01"]
    report = CliRunner().invoke(app, ["audit", "report", str(missing), *args])
    verify_ = CliRunner().invoke(app, ["audit", "verify", str(missing)])
    assert report.exit_code == verify_.exit_code == 2
    assert report.exception is None or isinstance(report.exception, SystemExit)
    said = f"error: cannot read {missing}: No such file or directory"
    assert said in report.output and said in verify_.output
    rules = CliRunner().invoke(app, ["audit", "report", str(_logged(tmp_path)), *args,
                                     "--rules", str(tmp_path / "none.toml")])
    assert rules.exit_code == 2 and "rules-invalid" in rules.output, rules.output
