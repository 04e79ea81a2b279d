"""The factory description file (TOML), validated.

One file declares a whole factory; ``examples/factory.toml`` shows every key.
Tables (arrays of tables in TOML):

- ``[[sites]]``: ``name``, ``country`` (ISO 3166 alpha-2), ``currency``
  (ISO 4217), ``executor`` (``local`` | ``slurm``), ``[sites.slurm]`` (the
  slurm executor's settings, see ``masnaa.executors.slurm.config``),
  ``[sites.topology]`` with ``nvlink_domain_size`` (nodes per
  NVLink domain) and ``leaf_size`` (nodes per leaf switch).
- ``[[gpu_types]]``: ``name``, ``memory_gb``, ``vendor``.
- ``[[nodes]]``: a group of identical nodes: ``site``, ``gpu_type``, ``gpus``
  per node, and either ``count`` (+ optional ``prefix``) or explicit
  ``names``. Optional ``nvlink_domain`` / ``leaf`` pin the group's domains
  (otherwise nodes are cut into domains in file order by the site's
  topology sizes), ``features``, ``virtual`` and ``gpu_uuids`` (one list per
  named node).
- ``[[tenants]]``: ``name``, ``kind``, ``country``, ``share``, ``projects``,
  ``preferred_sites`` (declared sites, best first: where its jobs go when
  several eligible sites could start them; docs/scheduler.md "Site choice"),
  ``unix_user`` (the Unix account its jobs run as on ``local`` sites when the
  control plane runs as root; docs/operations.md "Isolating tenants").
- ``default_unix_user`` (a top-level key, before the first table): the
  account of the tenants that name none.
- ``[[quotas]]``: ``tenant``, ``site``, ``gpu_type``, ``nominal``,
  ``borrowing_limit``, ``lending_limit``.
- ``[[priority_classes]]``: ``name``, ``value``, ``preemptible``,
  ``can_preempt``, ``grace_seconds`` (none declared: ``low``, ``normal``,
  ``high``), and ``tenants``: the declared tenants whose jobs may use the
  class (absent or empty: every tenant; docs/scheduler.md "Who may use a
  priority class").

Every model forbids unknown keys, so a typo is an error, not a silent
default. Errors name the key path (``nodes[1].gpus``) and say what would be
right; cross references (a node's site, a quota's tenant) are checked too.
Topology domain names are prefixed with their site (``ma-1/nvl0003``), so
two sites never share a domain.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from masnaa.discovery.inventory import Inventory
from masnaa.domain import TenantKind
from masnaa.domain.tenancy import DEFAULT_PRIORITY_CLASSES, MAX_SHARE

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,126}$")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
UnixUser = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]


class FactoryError(ValueError):
    """An invalid factory description; ``code`` is machine-readable, ``path`` names the key."""

    def __init__(self, message: str, *, code: str = "invalid-factory", path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.code = code
        self.path = path
        self.message = message


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopologySpec(_Strict):
    nvlink_domain_size: int = Field(1, ge=1, description="nodes per NVLink domain")
    leaf_size: int = Field(32, ge=1, description="nodes per leaf switch / scalable unit")


class SiteSpec(_Strict):
    name: Name
    country: Country = "MA"
    currency: Currency = "MAD"
    executor: Literal["local", "slurm"] = "local"
    slurm: dict[str, Any] | None = None
    """The site's Slurm settings (``[sites.slurm]``), checked by the slurm executor
    when the control loop starts; only for ``executor = "slurm"``."""
    topology: TopologySpec = Field(default_factory=lambda: TopologySpec())

    @model_validator(mode="after")
    def _slurm_only_for_slurm(self) -> SiteSpec:
        if self.slurm is not None and self.executor != "slurm":
            raise ValueError('a [sites.slurm] table needs executor = "slurm"')
        return self


class GpuTypeSpec(_Strict):
    name: Name
    memory_gb: int = Field(80, ge=1)
    vendor: str = "nvidia"


class NodeGroupSpec(_Strict):
    site: Name
    gpu_type: Name
    gpus: int = Field(ge=1, le=256, description="GPUs per node")
    count: int | None = Field(None, ge=1, le=100_000)
    prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
    names: list[NodeName] | None = None
    nvlink_domain: str | None = None
    leaf: str | None = None
    features: list[str] = Field(default_factory=list)
    virtual: bool = False
    gpu_uuids: list[list[str]] | None = None

    @model_validator(mode="after")
    def _count_or_names(self) -> NodeGroupSpec:
        if (self.count is None) == (self.names is None):
            raise ValueError("give either count (with an optional prefix) or names, not both")
        if self.names is not None and self.prefix is not None:
            raise ValueError("prefix goes with count; explicit names need none")
        if self.gpu_uuids is not None:
            if self.names is None or len(self.gpu_uuids) != len(self.names):
                raise ValueError("gpu_uuids needs explicit names and one list per name")
            if any(len(u) != self.gpus for u in self.gpu_uuids):
                raise ValueError(f"each gpu_uuids list must have {self.gpus} entries (gpus)")
        return self


class TenantSpec(_Strict):
    name: Name
    kind: TenantKind = TenantKind.UNIVERSITY
    country: Country = "MA"
    share: float = Field(1.0, ge=0, le=MAX_SHARE)
    projects: list[Name] = Field(default_factory=lambda: ["default"])
    preferred_sites: list[Name] = Field(default_factory=list)
    unix_user: UnixUser | None = None
    """The Unix account its jobs run as (``local`` sites, control plane run as root)."""


class QuotaSpec(_Strict):
    tenant: Name
    site: Name
    gpu_type: Name
    nominal: int = Field(ge=0)
    borrowing_limit: int | None = Field(None, ge=0)
    lending_limit: int | None = Field(None, ge=0)


class PriorityClassSpec(_Strict):
    name: Name
    value: int
    preemptible: bool = True
    can_preempt: bool = True
    grace_seconds: float = Field(120.0, ge=0)
    tenants: list[Name] = Field(default_factory=list)
    """Tenants whose jobs may use this class; empty: every tenant."""


@dataclass(frozen=True, slots=True)
class ExpandedNode:
    """One node as it goes into the store."""

    name: str
    site: str
    gpu_type: str
    gpu_count: int
    domains: tuple[str, ...]
    features: tuple[str, ...]
    virtual: bool
    gpu_uuids: tuple[str, ...]


class FactorySpec(_Strict):
    default_unix_user: UnixUser | None = None
    """The account of the jobs of tenants that name none (``TenantSpec.unix_user``)."""
    sites: list[SiteSpec] = Field(min_length=1)
    gpu_types: list[GpuTypeSpec] = Field(min_length=1)
    nodes: list[NodeGroupSpec] = Field(min_length=1)
    tenants: list[TenantSpec] = Field(default_factory=list)
    quotas: list[QuotaSpec] = Field(default_factory=list)
    priority_classes: list[PriorityClassSpec] = Field(default_factory=list)

    def effective_priority_classes(self) -> list[PriorityClassSpec]:
        if self.priority_classes:
            return list(self.priority_classes)
        return [
            PriorityClassSpec(
                name=p.name,
                value=p.value,
                preemptible=p.preemptible,
                can_preempt=p.can_preempt,
                grace_seconds=p.grace_seconds,
            )
            for p in DEFAULT_PRIORITY_CLASSES
        ]

    def expand_nodes(self) -> list[ExpandedNode]:
        """Every node with its topology path (nvlink domain, leaf, site)."""
        sites = {s.name: s for s in self.sites}
        position: dict[str, int] = {}
        out: list[ExpandedNode] = []
        for group in self.nodes:
            site = sites[group.site]
            if group.names is not None:
                names = list(group.names)
            else:
                count = group.count or 0
                prefix = group.prefix or f"{group.site}-n"
                width = max(3, len(str(count - 1)))
                names = [f"{prefix}{i:0{width}d}" for i in range(count)]
            for i, name in enumerate(names):
                k = position.get(site.name, 0)
                position[site.name] = k + 1
                nvl = group.nvlink_domain or f"nvl{k // site.topology.nvlink_domain_size:04d}"
                leaf = group.leaf or f"leaf{k // site.topology.leaf_size:04d}"
                out.append(
                    ExpandedNode(
                        name=name,
                        site=site.name,
                        gpu_type=group.gpu_type,
                        gpu_count=group.gpus,
                        domains=(f"{site.name}/{nvl}", f"{site.name}/{leaf}", site.name),
                        features=tuple(group.features),
                        virtual=group.virtual,
                        gpu_uuids=tuple(group.gpu_uuids[i]) if group.gpu_uuids else (),
                    )
                )
        return out


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _check_references(spec: FactorySpec) -> None:
    def unique(items: list[Any], key: str, table: str) -> set[str]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            value = getattr(item, key)
            if value in seen:
                raise FactoryError(
                    f"{value!r} is declared twice; names must be unique", path=f"{table}[{i}].{key}"
                )
            seen.add(value)
        return seen

    sites = unique(spec.sites, "name", "sites")
    types = unique(spec.gpu_types, "name", "gpu_types")
    tenants = unique(spec.tenants, "name", "tenants")
    unique(spec.priority_classes, "name", "priority_classes")

    def known(value: str, names: set[str], path: str, what: str) -> None:
        if value not in names:
            listed = ", ".join(sorted(names)) or "none declared"
            raise FactoryError(
                f"unknown {what} {value!r}; declare it or use one of: {listed}", path=path
            )

    for i, g in enumerate(spec.nodes):
        known(g.site, sites, f"nodes[{i}].site", "site")
        known(g.gpu_type, types, f"nodes[{i}].gpu_type", "GPU type")
    seen_quota: set[tuple[str, str, str]] = set()
    for i, q in enumerate(spec.quotas):
        known(q.tenant, tenants, f"quotas[{i}].tenant", "tenant")
        known(q.site, sites, f"quotas[{i}].site", "site")
        known(q.gpu_type, types, f"quotas[{i}].gpu_type", "GPU type")
        key = (q.tenant, q.site, q.gpu_type)
        if key in seen_quota:
            raise FactoryError(
                "a quota for this tenant, site and GPU type is declared twice",
                path=f"quotas[{i}]",
            )
        seen_quota.add(key)
    for i, t in enumerate(spec.tenants):
        if len(set(t.projects)) != len(t.projects):
            raise FactoryError("a project is listed twice", path=f"tenants[{i}].projects")
        for k, site in enumerate(t.preferred_sites):
            known(site, sites, f"tenants[{i}].preferred_sites[{k}]", "site")
        if len(set(t.preferred_sites)) != len(t.preferred_sites):
            raise FactoryError(
                "a site is listed twice; name each site once, best first",
                path=f"tenants[{i}].preferred_sites",
            )
    for i, p in enumerate(spec.priority_classes):
        for k, tenant in enumerate(p.tenants):
            known(tenant, tenants, f"priority_classes[{i}].tenants[{k}]", "tenant")
        if len(set(p.tenants)) != len(p.tenants):
            raise FactoryError("a tenant is listed twice", path=f"priority_classes[{i}].tenants")
    node_names: set[str] = set()
    for node in spec.expand_nodes():
        if node.name in node_names:
            raise FactoryError(
                f"node {node.name!r} is declared twice; node names must be unique across the "
                "factory (use distinct prefixes)",
                path="nodes",
            )
        node_names.add(node.name)


def check_unix_users(spec: FactorySpec, lookup: Any = None) -> None:
    """Every account the file names exists on this machine and is not root (``lookup``:
    ``pwd.getpwnam``, replaceable in tests); checked where jobs would run as them."""
    import pwd

    find = lookup or pwd.getpwnam
    named = [("default_unix_user", spec.default_unix_user)] + [
        (f"tenants[{i}].unix_user", t.unix_user) for i, t in enumerate(spec.tenants)
    ]
    for path, account in named:
        if account is None:
            continue
        try:
            uid = find(account).pw_uid
        except KeyError:
            raise FactoryError(
                f"no Unix account {account!r} on this machine; create it (e.g. useradd "
                f"--system --no-create-home {account}) or name an existing one",
                code="unknown-unix-user",
                path=path,
            ) from None
        if uid == 0:
            raise FactoryError(
                f"{account!r} is root: jobs would run with every right on the machine; "
                "name an unprivileged account",
                code="root-unix-user",
                path=path,
            )


def parse_factory(data: dict[str, Any], source: str = "factory") -> FactorySpec:
    """Validate an already-parsed TOML document."""
    try:
        spec = FactorySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _path(tuple(first["loc"]))
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against examples/factory.toml"
        elif first["type"] == "missing":
            message = "this key is required"
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise FactoryError(f"{source}: {message}", path=path) from None
    _check_references(spec)
    return spec


def load_factory(path: Path) -> FactorySpec:
    """Read and validate a factory description file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FactoryError(
            f"cannot read {path}: {exc.strerror}", code="factory-unreadable"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FactoryError(f"{path} is not valid TOML: {exc}", code="factory-not-toml") from None
    return parse_factory(data, source=str(path))


def from_inventory(
    inventory: Inventory,
    *,
    site: str = "local",
    country: str = "MA",
    currency: str = "MAD",
) -> FactorySpec:
    """A one-site factory of this machine (no tenants: bootstrap adds the default one)."""
    types: dict[str, GpuTypeSpec] = {}
    groups = []
    for node in inventory.nodes:
        types.setdefault(node.gpu_type, GpuTypeSpec(name=node.gpu_type, memory_gb=node.memory_gb))
        groups.append(
            NodeGroupSpec(
                site=site,
                gpu_type=node.gpu_type,
                gpus=len(node.gpus),
                names=[node.name],
                nvlink_domain=f"nvl-{node.name}",
                leaf="leaf0",
                virtual=inventory.virtual,
                gpu_uuids=[[g.uuid for g in node.gpus]],
            )
        )
    spec = FactorySpec(
        sites=[SiteSpec(name=site, country=country, currency=currency, executor="local")],
        gpu_types=list(types.values()),
        nodes=groups,
    )
    _check_references(spec)
    return spec
