"""The nodes page's drain forms over plain HTTP, with the real control loop: an unticked
"move its jobs" box lets the run go on, and the drained node's "Move its jobs" button moves
it later; a tampered box value and an unknown node are refused."""

from __future__ import annotations

import time

from .conftest import Factory
from .test_portal_http import csrf_of, signed_in


def test_a_let_finish_drain_then_move_its_jobs(factory: Factory) -> None:
    job_id = factory.submit("amina", project="llm", command=["sleep", "120"], gpus_per_task=2,
                            gpu_types=["h100-sxm-80gb", "a100-80gb"], time_limit=300)
    job = factory.wait_state(job_id, {"running"}, timeout=30)
    node = str((job.placement or [{}])[0]["node"])
    with signed_in(factory, "ops") as c:
        token = csrf_of(c.get("/ops/nodes").text)
        try:
            kept = c.post(f"/ops/nodes/{node}/drain", data={"csrf_token": token,
                                                            "reason": "noisy fan"})
            assert kept.headers["location"] == f"/ops/nodes?done=drained-finish&node={node}" \
                                               f"#node-{node}"
            page = c.get(kept.headers["location"]).text
            assert f"Node {node} is drained: no new job starts on it." in page
            assert f'action="/ops/nodes/{node}/drain" class="inline move"' in page
            time.sleep(0.5)  # a few passes of the loop: nothing moves it
            still = factory.job(job_id)
            assert (still.state, still.attempt) == ("running", job.attempt)

            odd = c.post(f"/ops/nodes/{node}/drain", data={"csrf_token": token,
                                                           "evacuate": "yes"})
            assert odd.status_code == 422  # the box sends 1 or nothing
            missing = c.post("/ops/nodes/no-such-node/drain",
                             data={"csrf_token": token, "evacuate": "1"})
            assert missing.status_code == 404

            moved = c.post(f"/ops/nodes/{node}/drain", data={"csrf_token": token,
                                                             "evacuate": "1"})
            assert moved.headers["location"] == f"/ops/nodes?done=drained&node={node}#node-{node}"
            assert "its running jobs are being moved elsewhere" in c.get(
                moved.headers["location"]).text
            again = factory.wait_state(job_id, {"running"}, timeout=30)
            deadline = time.monotonic() + 30
            while again.attempt == job.attempt:
                assert time.monotonic() < deadline, "the job did not move"
                time.sleep(0.1)
                again = factory.job(job_id)
            assert str((again.placement or [{}])[0]["node"]) != node
        finally:
            c.post(f"/ops/nodes/{node}/undrain", data={"csrf_token": token})
            with factory.client("ops") as api:
                api.post(f"/api/v1/jobs/{job_id}/cancel")
    factory.wait_state(job_id, {"cancelled", "succeeded", "failed"}, timeout=30)
