"""Hardware: GPU types, nodes, topology domains and sites.

Topology is a path of domain names per node, from the smallest domain to the
largest: ``(nvlink_domain, leaf_switch, site)``. A node with 8 GPUs on one
NVLink board usually *is* its own NVLink domain; an NVL72 rack groups 18 such
nodes in one NVLink domain. Two nodes are "close" when they share a domain at
a low level. The scheduler uses these names only for grouping, never parses
them.

Invariants: node names are unique in a cluster; every node of a site carries
the site name as the last element of its domain path; ``gpu_count > 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum


class TopologyLevel(IntEnum):
    """Levels of the topology tree, smallest first (index into ``Node.domains``)."""

    NVLINK = 0
    LEAF = 1
    SITE = 2


@dataclass(frozen=True, slots=True)
class GpuType:
    """A GPU flavor, e.g. ``h100-sxm-80gb``. ``name`` is the identity."""

    name: str
    memory_gb: int = 80
    vendor: str = "nvidia"


@dataclass(frozen=True, slots=True)
class Node:
    """One machine with ``gpu_count`` GPUs of a single type.

    ``domains`` is the topology path, smallest first, ending with the site:
    ``("nvl-a01", "leaf-a", "ma-1")``.
    """

    name: str
    site: str
    gpu_type: str
    gpu_count: int
    domains: tuple[str, ...]
    features: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.gpu_count <= 0:
            raise ValueError(
                f"node {self.name!r}: gpu_count must be positive, got {self.gpu_count}"
            )
        if not self.domains or self.domains[-1] != self.site:
            raise ValueError(
                f"node {self.name!r}: its topology path must end with its site {self.site!r}, "
                f"got {self.domains!r}"
            )


@dataclass(frozen=True, slots=True)
class Site:
    """One data centre: one country (ISO 3166 alpha-2), one currency, one executor."""

    name: str
    country: str = "MA"
    currency: str = "MAD"
    executor: str = "local"


@dataclass(frozen=True, slots=True)
class Cluster:
    """The declared hardware of a factory: sites, GPU types and nodes.

    Build it once; it is immutable. ``by_name`` and the per-type lists are
    derived at construction for O(1) lookups by the scheduler.
    """

    sites: tuple[Site, ...]
    gpu_types: tuple[GpuType, ...]
    nodes: tuple[Node, ...]
    by_name: Mapping[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: dict[str, Node] = {}
        known_types = {t.name for t in self.gpu_types}
        known_sites = {s.name for s in self.sites}
        for node in self.nodes:
            if node.name in names:
                raise ValueError(f"duplicate node name {node.name!r}")
            if node.gpu_type not in known_types:
                raise ValueError(f"node {node.name!r}: unknown GPU type {node.gpu_type!r}")
            if node.site not in known_sites:
                raise ValueError(f"node {node.name!r}: unknown site {node.site!r}")
            names[node.name] = node
        object.__setattr__(self, "by_name", names)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(n.gpu_count for n in self.nodes)

    def gpus_of_type(self, gpu_type: str) -> int:
        return sum(n.gpu_count for n in self.nodes if n.gpu_type == gpu_type)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    @staticmethod
    def uniform(
        nodes: int,
        *,
        gpus_per_node: int = 8,
        gpu_type: str = "h100-sxm-80gb",
        site: str = "site-1",
        nodes_per_nvlink: int = 1,
        nodes_per_leaf: int = 32,
        country: str = "MA",
        currency: str = "MAD",
        name_prefix: str = "n",
    ) -> Cluster:
        """A homogeneous site: ``nodes`` nodes grouped in NVLink domains and leaf switches."""
        if nodes <= 0:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        width = max(4, len(str(nodes - 1)))
        built = []
        for i in range(nodes):
            nvl = f"{site}/nvl{i // max(1, nodes_per_nvlink):0{width}d}"
            leaf = f"{site}/leaf{i // max(1, nodes_per_leaf):0{width}d}"
            built.append(
                Node(
                    name=f"{name_prefix}{i:0{width}d}",
                    site=site,
                    gpu_type=gpu_type,
                    gpu_count=gpus_per_node,
                    domains=(nvl, leaf, site),
                )
            )
        return Cluster(
            sites=(Site(site, country=country, currency=currency),),
            gpu_types=(GpuType(gpu_type),),
            nodes=tuple(built),
        )

    @staticmethod
    def merge(clusters: Iterable[Cluster]) -> Cluster:
        """Join clusters of different sites into one factory."""
        sites: list[Site] = []
        types: dict[str, GpuType] = {}
        nodes: list[Node] = []
        for c in clusters:
            sites.extend(c.sites)
            for t in c.gpu_types:
                types.setdefault(t.name, t)
            nodes.extend(c.nodes)
        return Cluster(sites=tuple(sites), gpu_types=tuple(types.values()), nodes=tuple(nodes))
