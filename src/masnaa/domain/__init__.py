"""Pure value types shared by every layer: the words of the glossary.

Nothing here does IO, reads a clock or holds global state. Times are plain
``float`` seconds on whatever clock the driver uses (virtual in the twin, UNIX
time in the service); the core never asks what time it is.
"""

from masnaa.domain.cluster import Cluster, GpuType, Node, Site, TopologyLevel
from masnaa.domain.job import Job, Placement, PlacementSlice, RunningJob
from masnaa.domain.tenancy import PriorityClass, Project, Quota, Tenant, TenantKind

__all__ = [
    "Cluster",
    "GpuType",
    "Job",
    "Node",
    "Placement",
    "PlacementSlice",
    "PriorityClass",
    "Project",
    "Quota",
    "RunningJob",
    "Site",
    "Tenant",
    "TenantKind",
    "TopologyLevel",
]
