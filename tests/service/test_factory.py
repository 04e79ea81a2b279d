"""The factory description: the shipped example, errors that name the key path, and an
idempotent upsert into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from masnaa.factory import FactoryError, apply_factory, load_factory
from masnaa.factory.spec import parse_factory
from masnaa.store import models as m

from .conftest import Database

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factory.toml"


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sites": [{"name": "ma-1"}],
        "gpu_types": [{"name": "h100-80gb"}],
        "nodes": [{"site": "ma-1", "gpu_type": "h100-80gb", "gpus": 8, "count": 2}],
    }
    doc.update(extra)
    return doc


def test_the_shipped_example_is_valid() -> None:
    spec = load_factory(EXAMPLE)
    nodes = spec.expand_nodes()
    assert len(nodes) == 10
    assert nodes[0].name == "ma-h100-000"
    # leaf_size = 4: the fifth node of the site starts the second leaf.
    assert nodes[3].domains[1] == "ma-rabat-1/leaf0000"
    assert nodes[4].domains[1] == "ma-rabat-1/leaf0001"
    assert nodes[-1].domains == ("za-cpt-1/pcie-a", "za-cpt-1/leaf-a", "za-cpt-1")
    assert {p.name for p in spec.effective_priority_classes()} == {"low", "normal", "high"}


def test_topology_sizes_cut_nodes_into_domains() -> None:
    doc = minimal()
    doc["sites"][0]["topology"] = {"nvlink_domain_size": 2, "leaf_size": 3}
    doc["nodes"][0]["count"] = 5
    domains = [n.domains[:2] for n in parse_factory(doc).expand_nodes()]
    assert [d[0] for d in domains] == ["ma-1/nvl0000"] * 2 + ["ma-1/nvl0001"] * 2 + ["ma-1/nvl0002"]
    assert [d[1] for d in domains] == ["ma-1/leaf0000"] * 3 + ["ma-1/leaf0001"] * 2


def _edit(path: str, value: Any) -> dict[str, Any]:
    doc = minimal(tenants=[{"name": "um6p"}], quotas=[])
    target: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    target[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        (_edit("sites.0.contry", "MA"), "sites[0].contry", "unknown key"),
        (_edit("sites.0.country", "Morocco"), "sites[0].country", "pattern"),
        (_edit("sites.0.executor", "k8s"), "sites[0].executor", "local"),
        (_edit("nodes.0.gpus", 0), "nodes[0].gpus", "greater than or equal"),
        (_edit("nodes.0.site", "eg-1"), "nodes[0].site", "unknown site 'eg-1'"),
        (_edit("nodes.0.gpu_type", "b200"), "nodes[0].gpu_type", "h100-80gb"),
        (_edit("nodes.0.names", ["a"]), "nodes[0]", "either count"),
        (_edit("tenants.0.kind", "club"), "tenants[0].kind", "university"),
        (_edit("tenants.0.share", -1), "tenants[0].share", "greater than or equal"),
        (
            _edit(
                "quotas", [{"tenant": "uct", "site": "ma-1", "gpu_type": "h100-80gb", "nominal": 1}]
            ),
            "quotas[0].tenant",
            "unknown tenant 'uct'",
        ),
        (
            _edit("priority_classes", [{"name": "high", "value": 200, "tenants": ["uct"]}]),
            "priority_classes[0].tenants[0]",
            "unknown tenant 'uct'",
        ),
        (
            _edit("priority_classes", [{"name": "high", "value": 2, "tenants": ["um6p"] * 2}]),
            "priority_classes[0].tenants",
            "listed twice",
        ),
        (_edit("sites", []), "sites", "at least 1"),
        (
            _edit(
                "nodes", [{"site": "ma-1", "gpu_type": "h100-80gb", "gpus": 8, "names": ["x"]}] * 2
            ),
            "nodes",
            "declared twice",
        ),
        (
            _edit(
                "nodes",
                [
                    {
                        "site": "ma-1",
                        "gpu_type": "h100-80gb",
                        "gpus": 2,
                        "names": ["x"],
                        "gpu_uuids": [["u"]],
                    }
                ],
            ),
            "nodes[0]",
            "2 entries",
        ),
    ],
)
def test_errors_name_the_key_path(doc: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(FactoryError) as caught:
        parse_factory(doc)
    assert caught.value.path == path
    assert caught.value.code == "invalid-factory"
    assert words in str(caught.value)


def test_unreadable_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FactoryError) as missing:
        load_factory(tmp_path / "absent.toml")
    assert missing.value.code == "factory-unreadable"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[sites]\nname = 1\n")
    with pytest.raises(FactoryError) as malformed:
        load_factory(bad)
    assert malformed.value.code == "factory-not-toml"


def test_applying_is_an_idempotent_upsert(database: Database) -> None:
    spec = load_factory(EXAMPLE)
    with database.sessions() as s, s.begin():
        first = apply_factory(s, spec)
    assert first.created["nodes"] == 10 and first.created["projects"] == 4
    assert first.created["quotas"] == 3 and first.created["priority classes"] == 3
    # An operator drains a node; re-applying the file must not undo that.
    with database.sessions() as s, s.begin():
        node = s.scalars(select(m.Node).where(m.Node.name == "ma-h100-003")).one()
        node.state, node.reason = m.NodeState.DRAINED.value, "fan"
    with database.sessions() as s, s.begin():
        again = apply_factory(s, spec)
    assert not again.changed, again.summary()
    # An edit updates exactly what changed.
    doc = spec.model_dump(mode="json")
    doc["tenants"][0]["share"] = 3.0
    doc["quotas"][0]["nominal"] = 48
    with database.sessions() as s, s.begin():
        edited = apply_factory(s, parse_factory(doc))
    assert dict(edited.updated) == {"tenants": 1, "quotas": 1} and not edited.created
    with database.sessions() as s:
        node = s.scalars(select(m.Node).where(m.Node.name == "ma-h100-003")).one()
        assert (node.state, node.reason, node.virtual) == ("drained", "fan", True)
        assert node.domains == ["ma-rabat-1/nvl0003", "ma-rabat-1/leaf0000", "ma-rabat-1"]
        assert s.scalars(select(m.Tenant.share).where(m.Tenant.name == "um6p")).one() == 3.0
        assert len(s.scalars(select(m.Node)).all()) == 10


def test_a_priority_class_names_the_tenants_that_may_use_it(database: Database) -> None:
    spec = load_factory(EXAMPLE)
    with database.sessions() as s, s.begin():
        apply_factory(s, spec)
    with database.sessions() as s:
        classes = {p.name: p.tenants for p in s.scalars(select(m.PriorityClass))}
    # The example keeps the non-preemptible class to one tenant; the others are open.
    assert classes == {"low": [], "normal": [], "high": ["um6p"]}
    doc = spec.model_dump(mode="json")
    doc["priority_classes"][2]["tenants"] = []
    with database.sessions() as s, s.begin():
        opened = apply_factory(s, parse_factory(doc))
    assert dict(opened.updated) == {"priority classes": 1}
