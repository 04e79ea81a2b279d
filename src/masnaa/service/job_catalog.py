"""What submissions are checked against: the factory's declared GPU types, sites,
priority classes (and the tenants each is open to) and node sizes (``Catalog``,
cached per database for a few seconds), and what the allowed sites could give a
job too large for them (``Fit``).

Owned apart from ``service.jobs`` (which re-exports it) so that reading the
hardware stays one room, and the submission rules another.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES
from masnaa.service.caches import TtlCache
from masnaa.store import models as m

if TYPE_CHECKING:
    from masnaa.service.jobs import JobSpec


@dataclass(slots=True)
class Catalog:
    """What submissions are validated against (read once per request)."""

    gpu_types: list[str]
    sites: set[str]
    priority_classes: dict[str, int]
    node_gpus: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(site, GPU type) → GPU count of each node."""
    class_tenants: dict[str, frozenset[str]] = field(default_factory=dict)
    """Priority class → the tenants whose jobs may use it; absent or empty: every tenant."""

    @staticmethod
    def load(session: Session) -> Catalog:
        types = list(session.scalars(select(m.GpuType.name).order_by(m.GpuType.name)))
        sites = set(session.scalars(select(m.Site.name)))
        classes = priority_values(session)
        node_gpus: dict[tuple[str, str], list[int]] = defaultdict(list)
        rows = session.execute(
            select(m.Site.name, m.GpuType.name, m.Node.gpu_count)
            .join(m.Site, m.Node.site_id == m.Site.id)
            .join(m.GpuType, m.Node.gpu_type_id == m.GpuType.id)
        )
        for site, gpu_type, count in rows:
            node_gpus[(site, gpu_type)].append(count)
        open_to = {
            name: frozenset(tenants or ())
            for name, tenants in session.execute(
                select(m.PriorityClass.name, m.PriorityClass.tenants)
            )
        }
        return Catalog(types, sites, classes, dict(node_gpus), open_to)

    def may_use(self, priority_class: str, tenant: str) -> bool:
        """Whether jobs of ``tenant`` may use ``priority_class`` (a declared class)."""
        allowed = self.class_tenants.get(priority_class)
        return not allowed or tenant in allowed

    def classes_for(self, tenant: str) -> list[str]:
        """The classes ``tenant``'s jobs may use, lowest value first."""
        return sorted((c for c in self.priority_classes if self.may_use(c, tenant)),
                      key=lambda c: (self.priority_classes[c], c))

    def tasks_that_fit(self, site: str, gpu_type: str, gpus_per_task: int) -> int:
        return sum(c // gpus_per_task for c in self.node_gpus.get((site, gpu_type), ()))

    def largest_node(self, gpu_type: str, sites: Sequence[str]) -> int:
        return max((max(self.node_gpus.get((s, gpu_type), ()), default=0) for s in sites),
                   default=0)


_CATALOGS = TtlCache()


def forget_catalogs() -> None:
    _CATALOGS.clear()


def catalog(session: Session) -> Catalog:
    engine = session.get_bind()
    found: Catalog | None = _CATALOGS.get(engine, "catalog")
    if found is None:
        found = Catalog.load(session)
        _CATALOGS.put(engine, "catalog", found)
    return found


def priority_values(session: Session) -> dict[str, int]:
    """Priority class → value, as declared (the defaults where none are)."""
    return {
        name: value
        for name, value in session.execute(select(m.PriorityClass.name, m.PriorityClass.value))
    } or {p.name: p.value for p in DEFAULT_PRIORITY_CLASSES}


@dataclass(frozen=True, slots=True)
class Fit:
    """What the allowed sites could give a job refused as ``too-many-gpus``."""

    largest_node: int
    """GPUs of the largest node of an allowed site and type: the most per task."""
    tasks: int
    """Tasks of the job's size that fit at one site, at the best site and type."""
    site: str
    gpu_type: str

    def advice(self, gpus_per_task: int) -> str:
        if gpus_per_task > self.largest_node:
            return (
                f"the largest node allowed has {self.largest_node} GPUs: ask for at most "
                f"{self.largest_node} per task"
            )
        return (
            f"at most {self.tasks} tasks of {gpus_per_task} GPUs fit at one site "
            f"({self.site}, {self.gpu_type!r}): ask for fewer tasks or fewer GPUs per task"
        )


def what_fits(catalog: Catalog, spec: JobSpec) -> Fit:
    sites = spec.sites if spec.sites is not None else sorted(catalog.sites)
    types = list(dict.fromkeys(spec.gpu_types)) or list(catalog.gpu_types)
    node = max((catalog.largest_node(t, sites) for t in types), default=0)
    tasks, site, kind = max(
        ((catalog.tasks_that_fit(s, t, spec.gpus_per_task), s, t) for s in sites for t in types),
        default=(0, "", ""),
    )
    return Fit(node, tasks, site, kind)
