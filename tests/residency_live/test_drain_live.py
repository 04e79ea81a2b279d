"""Draining over HTTP and from the command line, with a real control loop: ``--let-finish``
leaves the run where it is; the API's default drain moves it to the other node, names the
job in its answer, in the job's history and in the audit chain."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from api.conftest import World
from masnaa.cli.main import app
from masnaa.service.loop import ControlLoop

from .conftest import drive, job


def test_a_let_finish_drain_keeps_the_run_and_an_evacuating_drain_moves_it(
    world: World, loop: ControlLoop, tmp_path: Path,
) -> None:
    alice, ops = world["um6p-alice"].client, world["ops"].client
    j = world.submit("um6p-alice", project="llm", command=["sleep", "30"], gpus_per_task=8,
                     gpu_types=["h100-sxm-80gb"])
    drive(loop, lambda: job(alice, str(j["id"]))["state"] == "running")
    first = job(alice, str(j["id"]))
    node = first["placement"][0]["node"]
    other = {"ma-n0": "ma-n1", "ma-n1": "ma-n0"}[node]

    env = {"MASNAA_HOME": str(tmp_path), "MASNAA_URL": world.server.url,
           "MASNAA_TOKEN": world["ops"].token, "COLUMNS": "200"}
    done = CliRunner().invoke(app, ["admin", "nodes", "drain", node, "--let-finish",
                                    "--reason", "fan noise"], env=env)
    assert done.exit_code == 0, done.output
    assert f"node {node}: drained (fan noise)" in done.output and "asked to move" not in done.output
    for _ in range(5):
        loop.run_pass()
    still = job(alice, str(j["id"]))
    assert (still["state"], still["attempt"]) == ("running", first["attempt"])

    r = ops.post(f"/api/v1/nodes/{node}/drain", json={"reason": "fan failure"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "drained" and r.json()["evacuated"] == [j["id"]]
    again = ops.post(f"/api/v1/nodes/{node}/drain", json={"reason": "fan failure"})
    assert again.status_code == 200 and again.json()["evacuated"] == []  # idempotent
    drive(loop, lambda: (x := job(alice, str(j["id"])))["state"] == "running"
          and x["placement"][0]["node"] == other)
    moved = job(alice, str(j["id"]))
    assert moved["attempt"] == first["attempt"] + 1
    history = json.dumps(moved)
    assert f"evacuated: node {node} was drained by ops; note: fan failure" in history
    records = [json.loads(line) for line in ops.get("/api/v1/audit/export").text.splitlines()]
    drains = [(x["actor"], x["details"]["evacuate"], x["details"]["evacuated_jobs"])
              for x in records if x["action"] == "node-state"]
    assert drains == [("ops", False, []), ("ops", True, [j["id"]])]
    assert ops.get("/api/v1/audit/verify").json()["ok"]

    undone = ops.post(f"/api/v1/nodes/{node}/undrain", json={})
    assert undone.status_code == 200 and undone.json()["state"] == "up"
    assert alice.post(f"/api/v1/jobs/{j['id']}/cancel").status_code == 200
    drive(loop, lambda: job(alice, str(j["id"]))["state"] == "cancelled")
