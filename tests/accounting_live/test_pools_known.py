"""Every pool an allocation or a price names is one of the factory's (the API world:
ma-1 with h100-sxm-80gb, ke-1 with a100-80gb), through the real API and the CLI.

A misspelt site or GPU type is refused with the code ``/jobs`` gives (400
``unknown-site`` / ``unknown-gpu-type``), the field it was in, and nothing written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .test_api_flows import POOL, ask, error, make_reviewer, review
from .test_cli import run

if TYPE_CHECKING:
    from tests.api.conftest import World

TYPO = {"site": "xx-1", "gpu_type": "h100-sxm-80gb"}
BOGUS = {"site": "ma-1", "gpu_type": "bogus"}


def pools(*pools: dict[str, str], hours: str = "1") -> dict[str, Any]:
    return {"gpu_hours": [{**p, "hours": hours} for p in pools]}


def approved(world: World) -> str:
    make_reviewer(world)
    a = ask(world)
    review(world, a["id"], "admin-check")
    review(world, a["id"], "technical")
    return str(a["id"])


def live(world: World) -> str:
    return str(ask(world, tier="gateway", **pools(POOL, hours="5"))["id"])


@pytest.mark.parametrize(
    ("case", "bad", "field", "code"),
    [
        ("request", TYPO, "gpu_hours[1].site", "unknown-site"),
        ("request", BOGUS, "gpu_hours[1].gpu_type", "unknown-gpu-type"),
        ("award", TYPO, "gpu_hours[1].site", "unknown-site"),
        ("supplement", BOGUS, "gpu_hours[1].gpu_type", "unknown-gpu-type"),
        ("supplement-request", TYPO, "gpu_hours[1].site", "unknown-site"),
        ("exchange", {"site": "zz-1", "gpu_type": "h100-sxm-80gb"}, "site", "unknown-site"),
        ("exchange", BOGUS, "gpu_type", "unknown-gpu-type"),
        ("price", BOGUS, "prices[1].gpu_type", "unknown-gpu-type"),
        ("price", TYPO, "prices[1].site", "unknown-site"),
    ],
)
def test_a_pool_of_no_declared_site_or_type_is_refused(
    world: World, case: str, bad: dict[str, str], field: str, code: str
) -> None:
    ops, alice = world["ops"].client, world["um6p-alice"].client
    two = pools(POOL, bad)  # the bad pool second: the field names its index
    before = None
    if case == "request":
        body = {"project": "llm", "tier": "gateway", "start": "2026-01-01",
                "duration_days": 30, "justification": "x", **two}
        r = alice.post("/api/v1/allocations", json=body)
    elif case == "award":
        aid = approved(world)
        r = ops.post(f"/api/v1/allocations/{aid}/award", json=two)
    elif case in ("supplement", "supplement-request"):
        aid = live(world)
        path = "supplements" if case == "supplement" else "supplement-requests"
        extra = {} if case == "supplement" else {"justification": "more"}
        who = ops if case == "supplement" else alice
        before = alice.get(f"/api/v1/allocations/{aid}").json()
        r = who.post(f"/api/v1/allocations/{aid}/{path}", json={**two, **extra})
    elif case == "exchange":
        aid = live(world)
        before = alice.get(f"/api/v1/allocations/{aid}").json()
        r = alice.post(f"/api/v1/allocations/{aid}/exchange", json={"credits": "10", **bad})
    else:
        price = {"amount": "30.00", "currency": "MAD", "valid_from": "2026-01-01"}
        r = ops.post("/api/v1/prices", json={"prices": [{**POOL, **price}, {**bad, **price}]})
    assert error(r) == (400, code), r.text
    assert r.json()["error"]["field"] == field
    assert repr(bad[field.rsplit(".", 1)[-1] if "." in field else field]) in r.json()[
        "error"]["message"]
    # Nothing half-written.
    if case == "price":
        assert ops.get("/api/v1/prices").json() == []
    elif before is not None:
        assert alice.get(f"/api/v1/allocations/{before['id']}").json() == before
    else:
        states = [a["state"] for a in alice.get("/api/v1/allocations").json()]
        assert states == (["approved"] if case == "award" else [])


def test_the_cli_passes_the_refusal_on(world: World) -> None:
    code, _, err = run(world, "um6p-alice", "alloc", "request", "--project", "llm", "--tier",
                       "gateway", "-g", "ke1:a100-80gb=0.01", "--justification", "x")
    assert code == 1 and "unknown-site" in err and "'ke1'" in err and "ke-1" in err
    aid = live(world)
    code, _, err = run(world, "um6p-alice", "alloc", "exchange", aid, "--credits", "1",
                       "--pool", "zz-1:h100-sxm-80gb")
    assert code == 1 and "unknown-site" in err
