"""``masnaa admin`` against the real API: its errors speak of the options the user typed,
and ``quotas set`` changes only what it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.testing import CliRunner

from masnaa.cli.main import app

if TYPE_CHECKING:
    from tests.api.conftest import World


def run(world: World, who: str, *args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {"MASNAA_URL": world.server.url, "MASNAA_TOKEN": token or world[who].token,
           "COLUMNS": "200", "NO_COLOR": "1"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_token_that_would_outlive_its_parent_is_refused_in_terms_of_ttl(
    world: World,
) -> None:
    code, out, err = run(world, "um6p-alice", "admin", "tokens", "issue", "--ttl", "1m")
    assert code == 0, err
    short = out.strip().splitlines()[-1]
    code, _, err = run(world, "um6p-alice", "admin", "tokens", "issue", "--ttl", "1d",
                       token=short)
    assert code == 1
    said = " ".join(err.split())
    assert "token-outlives-parent" in said and "ttl_seconds" not in said
    assert "give --ttl of at most" in said and "s, or issue it" in said


def quota(world: World, tenant: str) -> tuple[int, int | None, int | None]:
    rows = world["ops"].client.get("/api/v1/quotas", params={"tenant": tenant}).json()
    (q,) = [r for r in rows if (r["site"], r["gpu_type"]) == ("ma-1", "h100-sxm-80gb")]
    return q["nominal"], q["borrowing_limit"], q["lending_limit"]


def test_quotas_set_keeps_a_limit_left_out_and_removes_one_said_none(world: World) -> None:
    where = ("admin", "quotas", "set", "um6p", "ma-1", "h100-sxm-80gb")
    code, _, err = run(world, "ops", *where, "4", "--borrowing-limit", "2",
                       "--lending-limit", "3")
    assert code == 0, err
    assert quota(world, "um6p") == (4, 2, 3)
    code, out, err = run(world, "ops", *where, "6")  # the nominal alone
    assert code == 0, err
    assert quota(world, "um6p") == (6, 2, 3)
    assert "borrowing 2, lending 3" in out
    code, _, err = run(world, "ops", *where, "6", "--borrowing-limit", "none")
    assert code == 0, err
    assert quota(world, "um6p") == (6, None, 3)
    code, _, err = run(world, "ops", *where, "6", "--lending-limit", "NONE")
    assert code == 0, err
    assert quota(world, "um6p") == (6, None, None)
    code, _, err = run(world, "ops", *where, "6", "--borrowing-limit", "many")
    assert code == 2 and "'many' is not a number of GPUs" in " ".join(err.split())
    code, out, _ = run(world, "ops", "admin", "quotas", "set", "--help")
    assert "keep the current value" in " ".join(out.split())
