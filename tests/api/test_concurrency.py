"""Many clients at once over real HTTP: no lost job, no double cancel, no torn state."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from masnaa.domain.reasons import Phrase
from masnaa.store import models as m
from masnaa.store.events import transition

if TYPE_CHECKING:
    from tests.api.conftest import World


def test_parallel_submits_and_cancels_keep_every_job_consistent(world: World) -> None:
    token = world["um6p-admin"].token
    accepted: list[str] = []
    cancelled_ok: list[str] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client_run(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=world.server.url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(10):
                r = c.post("/api/v1/jobs", json={"command": ["true"], "project": "llm"})
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 201:
                        accepted.append(r.json()["id"])
                    victims = rng.sample(accepted, k=min(2, len(accepted)))
                for victim in victims:
                    r = c.post(f"/api/v1/jobs/{victim}/cancel")
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 200:
                            cancelled_ok.append(victim)

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(client_run, range(10)))

    assert set(statuses) <= {200, 201, 409}, statuses
    assert statuses[201] == 10 * 10
    with world.server.state.db.read() as s:
        jobs = {j.id: j for j in s.scalars(select(m.Job))}
        events = s.scalars(select(m.JobEvent).order_by(m.JobEvent.id)).all()
    assert set(jobs) == set(accepted)
    per_job: dict[str, list[m.JobEvent]] = {}
    for e in events:
        per_job.setdefault(e.job_id, []).append(e)
    for job_id, job in jobs.items():
        codes = [e.code for e in per_job[job_id]]
        assert codes[0] == "submitted" and codes.count("submitted") == 1
        assert codes.count("cancelled") == (1 if job.state == "cancelled" else 0), codes
        assert per_job[job_id][-1].to_state == job.state
    # Each cancel that answered 200 cancelled a job exactly once.
    assert sorted(cancelled_ok) == sorted(j for j, job in jobs.items() if job.state == "cancelled")


def test_racing_cancels_of_one_job_cancel_it_once(world: World) -> None:
    job_id = world.submit("um6p-alice", project="llm")["id"]
    token = world["um6p-alice"].token
    barrier = threading.Barrier(8)

    def cancel(_: int) -> int:
        with httpx.Client(base_url=world.server.url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            barrier.wait()
            return c.post(f"/api/v1/jobs/{job_id}/cancel").status_code

    with ThreadPoolExecutor(8) as pool:
        codes = Counter(pool.map(cancel, range(8)))
    assert codes == Counter({200: 1, 409: 7})
    events = world["um6p-alice"].client.get(f"/api/v1/jobs/{job_id}").json()["events"]
    assert [e["code"] for e in events] == ["submitted", "cancelled"]


def test_a_cancel_racing_the_control_loop_never_tears_a_job(world: World) -> None:
    """The loop admits jobs with version-checked updates while users cancel them:
    each job ends either cancelled (and never admitted) or admitted with
    cancel_requested — never both, never neither."""
    ids = [world.submit("um6p-alice", project="llm")["id"] for _ in range(30)]
    factory = world.server.state.db.writer
    conflicts = 0

    def loop() -> None:
        nonlocal conflicts
        for job_id in ids:
            session = factory()
            try:
                job = session.get(m.Job, job_id)
                assert job is not None
                session.commit()  # the loop decides outside any lock, on what it read
                time.sleep(0.001)
                if job.state != "pending":
                    continue
                transition(session, job, m.JobState.ADMITTED, at=time.time(), code="admitted",
                           reason=(Phrase("note", {"detail": "placed on ma-n0"}),))
                session.commit()
            except StaleDataError:
                session.rollback()
                conflicts += 1
            finally:
                session.close()

    def users() -> None:
        client = world["um6p-alice"].client
        for job_id in ids:
            r = client.post(f"/api/v1/jobs/{job_id}/cancel")
            assert r.status_code in (200, 409), r.text

    threads = [threading.Thread(target=loop), threading.Thread(target=users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with world.server.state.db.read() as s:
        for job_id in ids:
            job = s.get(m.Job, job_id)
            assert job is not None
            codes = [e.code for e in s.scalars(
                select(m.JobEvent).where(m.JobEvent.job_id == job_id).order_by(m.JobEvent.id)
            )]
            if job.state == "cancelled":
                assert "admitted" not in codes, codes
            else:
                assert job.state == "admitted" and job.cancel_requested, (job.state, codes)
                assert codes == ["submitted", "admitted", "cancel-requested"], codes


def test_a_refused_job_does_not_sink_the_jobs_committed_with_it(world: World) -> None:
    """Single submissions are committed in groups: each still gets its own answer."""
    token = world["um6p-alice"].token
    bodies = [
        {"command": ["ok"], "project": "llm"} if i % 3 else
        {"command": ["bad"], "project": "llm", "gpu_types": ["tpu-v5"]}
        for i in range(48)
    ]
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(body: dict[str, object]) -> tuple[int, str]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=world.server.url, timeout=60,
                                        headers={"Authorization": f"Bearer {token}"})
            clients.append(local.client)
        r = local.client.post("/api/v1/jobs", json=body)
        return r.status_code, r.json().get("id") or r.json()["error"]["code"]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, bodies))
    for c in clients:
        c.close()
    for body, (status, what) in zip(bodies, answers, strict=True):
        if body["command"] == ["ok"]:
            assert status == 201
        else:
            assert (status, what) == (400, "unknown-gpu-type")
    accepted = {what for status, what in answers if status == 201}
    with world.server.state.db.read() as s:
        assert set(s.scalars(select(m.Job.id))) == accepted
