"""Idempotency keys on ``POST /jobs``: a retry gets the job already made, never a second
one, over the real server; a key reused for another request is refused; the client
sends a keyed submission again when its answer is lost, and one job results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from masnaa.client import MasnaaClient, MasnaaError

from .conftest import World

KEY = {"Idempotency-Key": "5f1c0e9e-train-run-1"}
SPEC = {"command": ["python", "train.py"], "project": "llm", "gpus_per_task": 2}


def _ids(world: World, who: str) -> list[str]:
    r = world[who].client.get("/api/v1/jobs")
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["jobs"]]


def test_a_retry_with_the_same_key_gets_the_same_job(world: World) -> None:
    alice = world["um6p-alice"].client
    first = alice.post("/api/v1/jobs", json=SPEC, headers=KEY)
    assert first.status_code == 201, first.text
    again = alice.post("/api/v1/jobs", json=SPEC, headers=KEY)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert _ids(world, "um6p-alice") == [first.json()["id"]]
    # Keys are per user: Bob's same key makes his own job.
    bob = world["um6p-bob"].client.post("/api/v1/jobs", json=SPEC, headers=KEY)
    assert bob.status_code == 201 and bob.json()["id"] != first.json()["id"]


def test_a_key_reused_for_another_request_is_refused(world: World) -> None:
    alice = world["um6p-alice"].client
    made = alice.post("/api/v1/jobs", json=SPEC, headers=KEY).json()["id"]
    other = alice.post("/api/v1/jobs", json={**SPEC, "gpus_per_task": 4}, headers=KEY)
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency-key-reused" and made in error["message"]
    assert _ids(world, "um6p-alice") == [made]


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "semi;colon"])
def test_a_malformed_key_is_refused_and_nothing_is_written(world: World, key: str) -> None:
    r = world["um6p-alice"].client.post(
        "/api/v1/jobs", json=SPEC, headers={"Idempotency-Key": key}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid-idempotency-key"
    assert _ids(world, "um6p-alice") == []


def test_concurrent_retries_make_one_job(world: World) -> None:
    alice = world["um6p-alice"].client

    def send(_: int) -> httpx.Response:
        return alice.post("/api/v1/jobs", json=SPEC, headers=KEY)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(32)))
    assert sorted(r.status_code for r in answers) == [200] * 31 + [201]
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(_ids(world, "um6p-alice")) == 1


class _LoseFirstAnswers(httpx.HTTPTransport):
    """Delivers every request, but loses the answers of the first ``n`` (as a dropped
    connection does after the server acted)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.lost = n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.lost and request.method == "POST":
            self.lost -= 1
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_the_client_retries_a_lost_answer_and_one_job_is_made(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("masnaa.client.client.SUBMIT_BACKOFF", (0.01, 0.01, 0.01))
    person = world["um6p-alice"]
    with MasnaaClient(world.server.url, person.token, transport=_LoseFirstAnswers(2)) as c:
        job = c.submit(idempotency_key="lost-twice", **SPEC)
    assert _ids(world, "um6p-alice") == [job["id"]]
    # Without a key the client cannot know, so it does not retry.
    lossy = _LoseFirstAnswers(1)
    with MasnaaClient(world.server.url, person.token, transport=lossy) as c, pytest.raises(
        MasnaaError, match="unreachable"
    ):
        c.submit(**SPEC)


def test_a_batch_refuses_a_key_it_would_not_honour(world: World) -> None:
    r = world["um6p-alice"].client.post("/api/v1/jobs/batch", json={"jobs": [SPEC]},
                                        headers=KEY)  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "idempotency-key-not-supported"
    assert _ids(world, "um6p-alice") == []


def test_a_refused_key_is_shown_as_it_was_typed(world: World) -> None:
    odd = world["um6p-alice"].client.post(
        "/api/v1/jobs", json=SPEC, headers={"Idempotency-Key": "ké".encode()}
    )
    assert odd.status_code == 400 and "'ké'" in odd.json()["error"]["message"], odd.text
