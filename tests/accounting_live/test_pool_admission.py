"""A grant buys GPU-time in its own pool only, through the real API and control loop.

The API world (``tests/api``: ma-1 with H100, ke-1 with A100) and a real control
loop on the same database. um6p's project ``llm`` holds one grant, in the pool
ma-1:h100-sxm-80gb. A job that may run only at ke-1 waits ``allocation-exhausted``,
naming the pool that has time left; nothing is charged to the grant for it. A job
that may use either pool runs in the funded one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from live_loop import drive, loop_on
from masnaa.service.loop import ControlLoop

from .test_api_flows import ask, hours

if TYPE_CHECKING:
    from tests.api.conftest import World


@pytest.fixture
def loop(world: World) -> Iterator[ControlLoop]:
    with loop_on(world.server, meter_interval=0.3) as running:
        yield running


def get(world: World, job_id: str) -> dict[str, Any]:
    r = world["um6p-alice"].client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_grant_at_one_site_buys_no_time_at_another(world: World, loop: ControlLoop) -> None:
    grant = ask(world, tier="gateway", **hours("0.01"))  # auto-approved: active now
    assert grant["state"] == "active"
    elsewhere = world.submit("um6p-alice", project="llm", sites=["ke-1"], gpus_per_task=4,
                             gpu_types=["a100-80gb"], command=["sleep", "30"])
    drive(loop, lambda: get(world, str(elsewhere["id"]))["wait_code"] == "allocation-exhausted")
    held = get(world, str(elsewhere["id"]))
    assert held["state"] == "pending"
    message = held["wait_message"] or ""
    assert "ke-1:a100-80gb" in message and "ma-1:h100-sxm-80gb" in message, message
    # A job that prefers the unfunded type but accepts the funded one runs on the latter.
    either = world.submit("um6p-alice", project="llm", gpus_per_task=2,
                          gpu_types=["a100-80gb", "h100-sxm-80gb"])
    drive(loop, lambda: get(world, str(either["id"]))["state"] == "succeeded")
    ran = get(world, str(either["id"]))
    assert (ran["site"], ran["gpu_type"]) == ("ma-1", "h100-sxm-80gb")
    for _ in range(5):  # passes go by: the restricted job is still held, nothing charged
        loop.run_pass()
    assert get(world, str(elsewhere["id"]))["state"] == "pending"
    usage = world["um6p-alice"].client.get(f"/api/v1/allocations/{grant['id']}").json()
    assert [p for p in usage["remaining"] if p["site"] == "ke-1"] == []
