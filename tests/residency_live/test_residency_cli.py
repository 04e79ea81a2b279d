"""The residency verbs of the ``masnaa`` command against a real server."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from api.conftest import World
from masnaa.cli.main import app


def _as(world: World, who: str, tmp_path: Path) -> dict[str, str]:
    return {"MASNAA_HOME": str(tmp_path), "MASNAA_URL": world.server.url,
            "MASNAA_TOKEN": world[who].token}


def test_register_submit_explain_download_and_report_from_the_command_line(
    world: World, tmp_path: Path,
) -> None:
    run = CliRunner().invoke
    alice, ops = _as(world, "um6p-alice", tmp_path), _as(world, "ops", tmp_path)
    done = run(app, ["data", "register", "scans", "--site", "ma-1", "--class", "health"],
               env=alice)
    assert done.exit_code == 0, done.output
    data_id = re.search(r"^(d-\w+)", done.output, re.M).group(1)  # type: ignore[union-attr]
    assert "jurisdictions: MA" in done.output
    listed = run(app, ["data", "list"], env=alice)
    assert data_id in listed.output

    refused = run(app, ["submit", "-p", "llm", "--data", data_id, "--site", "ke-1", "--",
                        "true"], env=alice)
    assert refused.exit_code == 1
    assert "residency-violation" in refused.output and "CNDP" in refused.output

    ok = run(app, ["submit", "-p", "llm", "--data", data_id, "--json", "--", "true"],
             env=alice)
    assert ok.exit_code == 0, ok.output
    job_id = re.search(r'"id": "(j-\w+)"', ok.output).group(1)  # type: ignore[union-attr]
    explained = run(app, ["explain", job_id], env=alice)
    assert explained.exit_code == 0, explained.output
    assert "ma-1 (MA, up): eligible" in explained.output
    assert "ke-1 (KE, up): not lawful" in explained.output

    world.set_job(job_id, site="ma-1")
    art = run(app, ["artifact", "register", job_id, "model"], env=alice)
    assert art.exit_code == 0, art.output
    art_id = re.search(r"^(a-\w+)", art.output, re.M).group(1)  # type: ignore[union-attr]
    no = run(app, ["artifact", "download", art_id, "--to", "KE"], env=alice)
    assert no.exit_code == 1 and "residency-violation" in no.output
    yes = run(app, ["artifact", "download", art_id, "--to", "MA"], env=alice)
    assert yes.exit_code == 0 and "allowed" in yes.output

    drained = run(app, ["site-state", "ke-1", "drained", "--reason", "maintenance"], env=ops)
    assert drained.exit_code == 0 and "ke-1 (KE): drained (maintenance)" in drained.output
    assert run(app, ["site-state", "ke-1", "drained"], env=alice).exit_code == 1

    verified = run(app, ["data", "audit-verify"], env=ops)
    assert verified.exit_code == 0 and "chain intact" in verified.output
    exported = tmp_path / "audit.jsonl"
    assert run(app, ["data", "audit-export", str(exported)], env=ops).exit_code == 0
    offline = run(app, ["audit", "verify", str(exported)])
    assert offline.exit_code == 0, offline.output
    report = run(app, ["regulator-report", "--country", "MA", "--since", "2000-01-01",
                       "--until", "2100-01-01", "--format", "csv"], env=ops)
    assert report.exit_code == 0, report.output
    assert report.output.startswith("at,seq,action")
    assert ",download," in report.output  # the allowed download; no placement yet
