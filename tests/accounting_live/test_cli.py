"""The accounting verbs of ``masnaa`` against the real API: request, review, award, show,
list, burn, statement and the funders' report, with the API's code on refusal."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from masnaa.cli.main import app

if TYPE_CHECKING:
    from tests.api.conftest import World


def run(world: World, who: str, *args: str) -> tuple[int, str, str]:
    env = {
        "MASNAA_URL": world.server.url,
        "MASNAA_TOKEN": world[who].token,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_alloc_lifecycle_burn_statement_and_report(world: World) -> None:
    assert (
        world["ops"]
        .client.put("/api/v1/reviewers/uon-bob", json={"steps": ["admin-check", "technical"]})
        .status_code
        == 200
    )
    code, text, err = run(
        world,
        "um6p-alice",
        "alloc",
        "request",
        "--project",
        "llm",
        "--tier",
        "innovator",
        "-g",
        "ma-1:h100-sxm-80gb=200",
        "--justification",
        "Darija LLM",
        "--days",
        "60",
    )
    assert code == 0, err
    alloc = re.search(r"(alloc-[0-9a-f]{8})", text)
    assert alloc is not None and "requested" in text
    aid = alloc.group(1)
    code, _, err = run(world, "um6p-alice", "alloc", "review", aid, "--step", "admin-check")
    assert code == 1 and "not-a-reviewer" in err
    for step in ("admin-check", "technical"):
        assert run(world, "uon-bob", "alloc", "review", aid, "--step", step)[0] == 0
    code, text, _ = run(world, "ops", "alloc", "award", aid, "-g", "ma-1:h100-sxm-80gb=150")
    assert code == 0 and "active" in text and "balance 150.0000 GPU-h" in text
    code, text, _ = run(world, "um6p-alice", "alloc", "list")
    assert code == 0 and aid in text and "150.0000" in text
    code, text, _ = run(world, "um6p-alice", "burn", "--project", "llm")
    assert code == 0 and aid in text and "GPU-h left" in text
    code, _, err = run(world, "uon-alice", "alloc", "show", aid)
    assert code == 1 and "allocation-not-found" in err
    period = date.today().strftime("%Y-%m")
    code, text, _ = run(world, "um6p-admin", "statement", "--tenant", "um6p", "--period", period)
    assert code == 0
    assert text.strip() == ""  # nothing ran this month: no statement lines, no currency
    code, text, _ = run(world, "ops", "alloc", "report", "--programme", "innovation")
    assert code == 0 and text.startswith("allocation,project") and aid in text


def test_alloc_request_renews_an_awarded_allocation(world: World) -> None:
    ask = ("alloc", "request", "--project", "llm", "--tier", "gateway",
           "-g", "ma-1:h100-sxm-80gb=10", "--justification", "Darija LLM")
    code, text, err = run(world, "um6p-alice", *ask)
    assert code == 0, err
    found = re.search(r"(alloc-[0-9a-f]{8})", text)
    assert found is not None and "active" in text
    base = found.group(1)
    code, text, err = run(world, "um6p-alice", *ask, "--renewal-of", base)
    assert code == 0, err
    assert f"renewal of {base}" in text
    code, _, err = run(world, "um6p-alice", *ask, "--renewal-of", "alloc-ghost")
    assert code == 1 and "allocation-not-found" in err
    code, text, _ = run(world, "um6p-alice", "alloc", "request", "--help")
    assert "--renewal-of" in text and "in review" in text
