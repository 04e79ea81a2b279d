"""Jobs through the real HTTP API: submit, show, list, cancel, explain, queue, logs, usage."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from masnaa.store import models as m

if TYPE_CHECKING:
    from tests.api.conftest import World


def test_submit_then_show_has_the_request_and_a_submitted_event(world: World) -> None:
    job = world.submit(
        "um6p-alice", command=["python", "train.py"], gpus_per_task=2, tasks=1,
        gpu_types=["h100-sxm-80gb"], time_limit=7200, project="llm", env={"SEED": "1"},
        workdir="/data/run1", name="train",
    )
    assert job["id"].startswith("j-") and job["state"] == "pending"
    r = world["um6p-alice"].client.get(f"/api/v1/jobs/{job['id']}")
    assert r.status_code == 200
    shown = r.json()
    assert shown["tenant"] == "um6p" and shown["project"] == "llm" and shown["user"] == "um6p-alice"
    assert shown["command"] == ["python", "train.py"] and shown["total_gpus"] == 2
    assert shown["env"] == {"SEED": "1"} and shown["time_limit"] == 7200
    assert [(e["from_state"], e["to_state"], e["code"]) for e in shown["events"]] == [
        (None, "pending", "submitted")
    ]


def test_empty_gpu_types_means_every_declared_type(world: World) -> None:
    job = world.submit("ops", project="um6p/llm")
    assert sorted(job["gpu_types"]) == ["a100-80gb", "h100-sxm-80gb"]


def test_a_peer_sees_a_job_but_not_its_environment(world: World) -> None:
    job = world.submit("um6p-alice", project="llm", env={"HF_TOKEN": "secret"})
    peer = world["um6p-bob"].client.get(f"/api/v1/jobs/{job['id']}").json()
    assert peer["id"] == job["id"] and peer["env"] == {}
    admin = world["um6p-admin"].client.get(f"/api/v1/jobs/{job['id']}").json()
    assert admin["env"] == {"HF_TOKEN": "secret"}


def test_batch_is_all_or_nothing(world: World) -> None:
    client = world["um6p-alice"].client
    good = {"command": ["true"], "project": "llm"}
    bad = {"command": ["true"], "project": "llm", "gpu_types": ["tpu-v5"]}
    r = client.post("/api/v1/jobs/batch", json={"jobs": [good, good, bad]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unknown-gpu-type"
    assert r.json()["error"]["field"] == "jobs[2].gpu_types"
    with world.server.state.db.read() as s:
        assert s.scalar(select(func.count()).select_from(m.Job)) == 0
        assert s.scalar(select(func.count()).select_from(m.JobEvent)) == 0
    r = client.post("/api/v1/jobs/batch", json={"jobs": [good] * 5})
    assert r.status_code == 201
    ids = [j["id"] for j in r.json()["jobs"]]
    assert len(set(ids)) == 5
    listed = client.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]
    assert {j["id"] for j in listed} == set(ids)


def test_list_filters_and_pages(world: World) -> None:
    a = [world.submit("um6p-alice", project="llm")["id"] for _ in range(3)]
    b = [world.submit("um6p-bob", project="vision")["id"] for _ in range(2)]
    client = world["um6p-alice"].client
    vision = client.get("/api/v1/jobs", params={"project": "vision"}).json()["jobs"]
    assert {j["id"] for j in vision} == set(b)
    mine = client.get("/api/v1/jobs", params={"user": "um6p-alice"}).json()["jobs"]
    assert {j["id"] for j in mine} == set(a)
    page1 = client.get("/api/v1/jobs", params={"limit": 2}).json()
    assert len(page1["jobs"]) == 2 and page1["next"] == page1["jobs"][-1]["id"]
    seen = [j["id"] for j in page1["jobs"]]
    nxt = page1["next"]
    while nxt:
        page = client.get("/api/v1/jobs", params={"limit": 2, "before": nxt}).json()
        seen += [j["id"] for j in page["jobs"]]
        nxt = page["next"]
    assert sorted(seen) == sorted(a + b) and len(seen) == 5
    # A cursor naming no job the caller can see is refused, not read as "from the top".
    other = world.submit("uon-alice", project="llm")["id"]  # another tenant's job
    for wrong in ["j-doesnotexist", other]:
        r = client.get("/api/v1/jobs", params={"limit": 2, "before": wrong})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-cursor", r.text
        assert r.json()["error"]["field"] == "before"
    world.set_job(a[0], state="running")
    running = client.get("/api/v1/jobs", params={"state": "running"}).json()["jobs"]
    assert [j["id"] for j in running] == [a[0]]


def test_cancel_pending_is_immediate_and_running_is_requested(world: World) -> None:
    client = world["um6p-alice"].client
    pending = world.submit("um6p-alice", project="llm")["id"]
    running = world.submit("um6p-alice", project="llm")["id"]
    world.set_job(running, state="running", started_at=time.time(), site="ma-1")

    r = client.post(f"/api/v1/jobs/{pending}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = client.post(f"/api/v1/jobs/{running}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "running" and r.json()["cancel_requested"] is True

    events = client.get(f"/api/v1/jobs/{running}").json()["events"]
    assert [e["code"] for e in events] == ["submitted", "cancel-requested"]
    r = client.post(f"/api/v1/jobs/{pending}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "already-finished"


def test_members_cancel_only_their_own_jobs_admins_any_of_their_tenant(world: World) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    r = world["um6p-bob"].client.post(f"/api/v1/jobs/{job}/cancel")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = world["um6p-admin"].client.post(f"/api/v1/jobs/{job}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"


def test_explain_and_queue_show_the_loops_reason_and_a_position(world: World) -> None:
    high = world.submit("um6p-alice", project="llm", priority_class="high")["id"]
    first = world.submit("uon-alice", project="llm")["id"]
    second = world.submit("um6p-bob", project="llm")["id"]
    eta = time.time() + 600
    world.set_job(second, wait_code="no-capacity", wait_message="needs 1 h100, 0 free",
                  estimated_start=eta)
    x = world["um6p-bob"].client.get(f"/api/v1/jobs/{second}/explain").json()
    assert x["wait_code"] == "no-capacity" and x["estimated_start"] == eta
    # Positions count the pending jobs the caller can see: uon's job is not counted.
    assert x["position"] == 2 and x["pending_total"] == 2
    assert "needs 1 h100" in x["summary"]

    view = world["um6p-alice"].client.get("/api/v1/queue").json()
    assert [(j["id"], j["position"]) for j in view["jobs"]] == [(high, 1), (second, 2)]
    assert world["uon-alice"].client.get(f"/api/v1/jobs/{first}/explain").json()[
        "pending_total"] == 1
    ops = world["ops"].client.get(f"/api/v1/jobs/{second}/explain").json()
    assert (ops["position"], ops["pending_total"]) == (3, 3)  # operators: every tenant
    assert [t["tenant"] for t in view["tenants"]] == ["um6p"]
    assert view["tenants"][0]["quota_nominal"] == {"h100-sxm-80gb": 8}
    assert view["tenants"][0]["pending_jobs"] == 2
    ops_view = world["ops"].client.get("/api/v1/queue").json()
    assert [j["id"] for j in ops_view["jobs"]] == [high, first, second]
    assert ops_view["total_gpus"] == 20


def test_logs_read_by_offset_until_complete(world: World, tmp_path: Path) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    client = world["um6p-alice"].client
    r = client.get(f"/api/v1/jobs/{job}/logs")
    assert r.json()["data"] == "" and r.json()["complete"] is False
    out = tmp_path / "out.log"
    out.write_text("line one\nline two — ünïcode\n", encoding="utf-8")
    world.set_job(job, state="running", attempt=1, stdout_path=str(out))
    first = client.get(f"/api/v1/jobs/{job}/logs", params={"limit": 9}).json()
    assert first["data"] == "line one\n" and first["next_offset"] == 9
    assert first["complete"] is False
    rest = client.get(f"/api/v1/jobs/{job}/logs", params={"offset": 9}).json()
    assert rest["data"] == "line two — ünïcode\n"
    world.set_job(job, state="succeeded", ended_at=time.time(), exit_code=0)
    end = client.get(f"/api/v1/jobs/{job}/logs", params={"offset": rest["next_offset"]}).json()
    assert end["data"] == "" and end["complete"] is True


def test_logs_of_each_run_of_a_requeued_job(world: World, tmp_path: Path) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    client = world["um6p-alice"].client
    for run, text in ((1, "run one\n"), (2, "run two\n")):
        (tmp_path / job / str(run)).mkdir(parents=True)
        (tmp_path / job / str(run) / "stdout").write_text(text)
    world.set_job(job, state="running", attempt=2, stdout_path=str(tmp_path / job / "2" / "stdout"))
    latest = client.get(f"/api/v1/jobs/{job}/logs").json()
    assert (latest["data"], latest["run"], latest["runs"]) == ("run two\n", 2, 2)
    assert latest["complete"] is False  # the latest run still writes
    first = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 1}).json()
    assert (first["data"], first["run"], first["complete"]) == ("run one\n", 1, True)
    # A follower that read run 1 up to byte 8 sees it complete and moves on.
    done = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 1, "offset": 8}).json()
    assert done["data"] == "" and done["complete"] is True and done["runs"] == 2
    r = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 3})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-run", r.text
    assert "has run 2 times" in r.json()["error"]["message"]
    # A site that writes logs to paths of its own: only the latest run can be read.
    world.set_job(job, stdout_path=str(tmp_path / "custom.out"))
    r = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 1})
    assert r.status_code == 404 and r.json()["error"]["code"] == "log-not-found", r.text


def test_logs_of_an_ended_run_whose_files_are_gone_say_so(world: World, tmp_path: Path) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    client = world["um6p-alice"].client
    run_dir = tmp_path / job / "1"
    run_dir.mkdir(parents=True)
    out = run_dir / "stdout.log"
    # Started, but it has not opened its file yet: empty, and more may come.
    world.set_job(job, state="running", attempt=1, stdout_path=str(out),
                  stderr_path=str(run_dir / "stderr.log"), started_at=time.time())
    r = client.get(f"/api/v1/jobs/{job}/logs")
    assert r.status_code == 200 and (r.json()["data"], r.json()["complete"]) == ("", False)
    out.write_text("done\n")
    world.set_job(job, state="succeeded", ended_at=time.time(), exit_code=0)
    assert client.get(f"/api/v1/jobs/{job}/logs").json()["complete"] is True
    # The file is deleted, then the whole directory: the reader is told, not shown nothing.
    for remove in (out.unlink, lambda: shutil.rmtree(tmp_path / job)):
        remove()
        for stream in ("stdout", "stderr"):
            r = client.get(f"/api/v1/jobs/{job}/logs", params={"stream": stream})
            assert r.status_code == 404, r.text
            error = r.json()["error"]
            assert error["code"] == "log-not-found"
            assert f"run 1's {stream} is gone" in error["message"]
            assert str(run_dir / f"{stream}.log") in error["message"]


def test_logs_of_a_run_that_never_began_are_empty_and_complete(
    world: World, tmp_path: Path
) -> None:
    # Cancelled (or refused) before it was launched: no file was ever written.
    job = world.submit("um6p-alice", project="llm")["id"]
    world.set_job(job, state="cancelled", attempt=1, ended_at=time.time(),
                  stdout_path=str(tmp_path / job / "1" / "stdout.log"))
    r = world["um6p-alice"].client.get(f"/api/v1/jobs/{job}/logs")
    assert r.status_code == 200 and (r.json()["data"], r.json()["complete"]) == ("", True)


def test_logs_of_an_earlier_run_whose_files_are_gone_say_so(world: World, tmp_path: Path) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    client = world["um6p-alice"].client
    latest = tmp_path / job / "3" / "stdout.log"
    latest.parent.mkdir(parents=True)
    latest.write_text("run three\n")
    world.set_job(job, state="running", attempt=3, stdout_path=str(latest),
                  started_at=time.time())
    # Run 1 began (the loop wrote its start), its directory was removed since; run 2
    # was requeued before it was launched, so it never had files.
    with world.server.state.db.write() as s:
        s.add(m.JobEvent(job_id=job, at=time.time(), from_state="admitted", to_state="running",
                         code="started", reason="run 1 started", attempt=1))
    r = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 1})
    assert r.status_code == 404 and r.json()["error"]["code"] == "log-not-found", r.text
    assert "run 1's stdout is gone" in r.json()["error"]["message"]
    second = client.get(f"/api/v1/jobs/{job}/logs", params={"run": 2})
    assert second.status_code == 200, second.text
    assert (second.json()["data"], second.json()["complete"]) == ("", True)


def test_logs_never_split_a_character(world: World, tmp_path: Path) -> None:
    job = world.submit("um6p-alice", project="llm")["id"]
    out = tmp_path / "out.log"
    out.write_bytes("aé".encode())  # 'é' is two bytes
    world.set_job(job, state="running", attempt=1, stdout_path=str(out))
    chunk = world["um6p-alice"].client.get(
        f"/api/v1/jobs/{job}/logs", params={"limit": 2}
    ).json()
    assert chunk["data"] == "a" and chunk["next_offset"] == 1


def test_usage_sums_gpu_hours_per_project(world: World) -> None:
    now = time.time()
    a = world.submit("um6p-alice", project="llm", gpus_per_task=4)["id"]
    b = world.submit("um6p-alice", project="vision", gpus_per_task=2)["id"]
    world.set_job(a, state="succeeded", started_at=now - 7200, ended_at=now - 3600,
                  attained_service=3600.0)
    world.set_job(b, state="running", started_at=now - 1800)
    rows = world["um6p-alice"].client.get("/api/v1/usage").json()["projects"]
    by_project = {r["project"]: r for r in rows}
    assert abs(by_project["llm"]["gpu_hours"] - 5.0) < 0.01  # 4 GPUs × 1 h + 1 h earlier
    assert abs(by_project["vision"]["gpu_hours"] - 1.0) < 0.05  # 2 GPUs × 0.5 h so far
    assert by_project["vision"]["running_gpus"] == 2
    assert world["uon-alice"].client.get("/api/v1/usage").json()["projects"] == []


def test_health_readiness_and_metrics(world: World) -> None:
    anon = world.client(None)
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/readyz").json() == {"status": "ready"}
    world.submit("um6p-alice", project="llm", gpu_types=["h100-sxm-80gb"])
    world.submit("um6p-bob", project="llm", gpu_types=["h100-sxm-80gb", "a100-80gb"])
    world.submit("uon-alice", project="llm", gpu_types=["a100-80gb"])
    text = anon.get("/metrics").text
    assert 'masnaa_queue_depth{gpu_type="h100-sxm-80gb",tenant="um6p"} 2.0' in text
    assert 'masnaa_queue_depth{gpu_type="a100-80gb",tenant="uon"} 1.0' in text
    assert 'masnaa_gpus{state="idle"} 20.0' in text
    assert "masnaa_job_transitions_total" in text
    assert "masnaa_pass_seconds_bucket" in text
