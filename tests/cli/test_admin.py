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
