"""``masnaa up``'s first hint: a ``submit`` that works on the factory it just set up."""

from __future__ import annotations

from pathlib import Path

from masnaa.cli.up import prepare
from masnaa.store.db import make_engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factory.toml"


def _prepared_project(tmp_path: Path, factory: Path | None) -> str | None:
    db_url = f"sqlite:///{tmp_path / 'masnaa.sqlite'}"
    engine = make_engine(db_url)
    try:
        ready = prepare(engine, db_url=db_url, home=tmp_path, url="http://127.0.0.1:1",
                        factory=factory, virtual_gpus="1x8")
    finally:
        engine.dispose()
    return ready.project


def test_one_project_needs_no_name_in_the_hint(tmp_path: Path) -> None:
    assert _prepared_project(tmp_path, None) is None


def test_a_factory_with_several_projects_names_one_in_the_hint(tmp_path: Path) -> None:
    # The example declares projects under three tenants; the first by name is hinted.
    assert _prepared_project(tmp_path, EXAMPLE) == "atlas-ai/default"
