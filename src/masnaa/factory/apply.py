"""Write a ``FactorySpec`` into the store: an idempotent upsert by name, in one transaction.

Applying the same description twice changes nothing the second time.
Applying an edited one updates what it declares (a node's GPU count, a
tenant's share, a quota) and creates what is new. Nothing is deleted: rows
the file no longer mentions may still be referenced by jobs, so removing a
node is an operator's drain, not an edit of this file. Operator-owned
columns (a node's or site's ``state`` and ``reason``) are never touched.
A site's executor settings (``[sites.slurm]``) are kept in ``service_state``
under ``site-options:<site>``, where the control loop reads them; tenants'
``preferred_sites`` in one row, ``tenant-site-preferences`` (tenant → sites),
read by ``service.site_choice``; the Unix accounts of tenants' jobs in
``tenant-unix-users`` (a default, and tenant → account), read by the control
loop when it launches (``service.launch``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.factory.spec import FactorySpec
from masnaa.store import models as m

SITE_OPTIONS = "site-options:"
"""``service_state`` key prefix of a site's executor settings (``{"slurm": {...}}``)."""
PREFERENCES_KEY = "tenant-site-preferences"
"""``service_state`` key of every tenant's preferred sites (``{tenant: [site, ...]}``)."""
UNIX_USERS_KEY = "tenant-unix-users"
"""``service_state`` key of the Unix accounts tenants' jobs run as (``_apply_unix_users``)."""


@dataclass(slots=True)
class ApplyReport:
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def summary(self) -> str:
        def fmt(c: Counter[str]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "nothing"

        return f"created {fmt(self.created)}; updated {fmt(self.updated)}"


def _upsert(
    session: Session,
    report: ApplyReport,
    table: str,
    row: Any | None,
    factory: type[Any],
    values: dict[str, Any],
    identity: dict[str, Any],
) -> Any:
    """Create ``row`` from ``identity`` + ``values``, or update its ``values`` if they differ."""
    if row is None:
        row = factory(**identity, **values)
        session.add(row)
        report.created[table] += 1
        return row
    if any(getattr(row, k) != v for k, v in values.items()):
        for k, v in values.items():
            setattr(row, k, v)
        report.updated[table] += 1
    return row


def apply_factory(session: Session, spec: FactorySpec, *, now: float | None = None) -> ApplyReport:
    """Upsert ``spec`` in the caller's transaction (the caller commits)."""
    now = time.time() if now is None else now
    report = ApplyReport()

    sites = {s.name: s for s in session.scalars(select(m.Site))}
    for s in spec.sites:
        sites[s.name] = _upsert(
            session,
            report,
            "sites",
            sites.get(s.name),
            m.Site,
            {"country": s.country, "currency": s.currency, "executor": s.executor},
            {"name": s.name},
        )

    # Executor settings live where the control loop reads them (it owns service_state).
    for s in spec.sites:
        key = f"{SITE_OPTIONS}{s.name}"
        options = {"slurm": s.slurm} if s.slurm is not None else {}
        row = session.get(m.ServiceState, key)
        if row is None and options:
            session.add(m.ServiceState(key=key, value=options, updated_at=now))
            report.created["site options"] += 1
        elif row is not None and row.value != options:
            row.value, row.updated_at = options, now
            report.updated["site options"] += 1

    types = {t.name: t for t in session.scalars(select(m.GpuType))}
    for g in spec.gpu_types:
        types[g.name] = _upsert(
            session,
            report,
            "gpu types",
            types.get(g.name),
            m.GpuType,
            {"memory_gb": g.memory_gb, "vendor": g.vendor},
            {"name": g.name},
        )
    session.flush()

    nodes = {n.name: n for n in session.scalars(select(m.Node))}
    for n in spec.expand_nodes():
        _upsert(
            session,
            report,
            "nodes",
            nodes.get(n.name),
            m.Node,
            {
                "site_id": sites[n.site].id,
                "gpu_type_id": types[n.gpu_type].id,
                "gpu_count": n.gpu_count,
                "domains": list(n.domains),
                "features": list(n.features),
                "virtual": n.virtual,
                "gpu_uuids": list(n.gpu_uuids),
            },
            {"name": n.name},
        )

    tenants = {t.name: t for t in session.scalars(select(m.Tenant))}
    for t in spec.tenants:
        tenants[t.name] = _upsert(
            session,
            report,
            "tenants",
            tenants.get(t.name),
            m.Tenant,
            {"kind": t.kind.value, "country": t.country, "share": t.share},
            {"name": t.name, "created_at": now},
        )
    session.flush()

    # Preferences of the tenants the file declares; other tenants keep theirs.
    prefs_row = session.get(m.ServiceState, PREFERENCES_KEY)
    prefs = dict(prefs_row.value) if prefs_row is not None else {}
    wanted = dict(prefs)
    for t in spec.tenants:
        if t.preferred_sites:
            wanted[t.name] = list(t.preferred_sites)
        else:
            wanted.pop(t.name, None)
    if wanted != prefs:
        _put_state(session, report, prefs_row, PREFERENCES_KEY, wanted, "site preferences", now)

    _apply_unix_users(session, report, spec, now)

    projects = {(p.tenant_id, p.name) for p in session.scalars(select(m.Project))}
    for t in spec.tenants:
        tenant_id = tenants[t.name].id
        for name in t.projects:
            if (tenant_id, name) not in projects:
                session.add(m.Project(tenant_id=tenant_id, name=name, created_at=now))
                projects.add((tenant_id, name))
                report.created["projects"] += 1

    quotas = {(q.tenant_id, q.site_id, q.gpu_type_id): q for q in session.scalars(select(m.Quota))}
    for q in spec.quotas:
        key = (tenants[q.tenant].id, sites[q.site].id, types[q.gpu_type].id)
        _upsert(
            session,
            report,
            "quotas",
            quotas.get(key),
            m.Quota,
            {
                "nominal": q.nominal,
                "borrowing_limit": q.borrowing_limit,
                "lending_limit": q.lending_limit,
            },
            {"tenant_id": key[0], "site_id": key[1], "gpu_type_id": key[2]},
        )

    classes = {p.name: p for p in session.scalars(select(m.PriorityClass))}
    for p in spec.effective_priority_classes():
        _upsert(
            session,
            report,
            "priority classes",
            classes.get(p.name),
            m.PriorityClass,
            {
                "value": p.value,
                "preemptible": p.preemptible,
                "can_preempt": p.can_preempt,
                "grace_seconds": p.grace_seconds,
                "tenants": sorted(p.tenants),
            },
            {"name": p.name},
        )
    session.flush()
    return report


def _apply_unix_users(session: Session, report: ApplyReport, spec: FactorySpec, now: float) -> None:
    """The file's default account, and the accounts of the tenants it declares (other
    tenants keep theirs): ``{"default": user | None, "tenants": {tenant: user}}``."""
    row = session.get(m.ServiceState, UNIX_USERS_KEY)
    known = dict(row.value) if row is not None else {}
    declared = {t.name for t in spec.tenants}
    tenants = {k: v for k, v in known.get("tenants", {}).items() if k not in declared}
    tenants.update({t.name: t.unix_user for t in spec.tenants if t.unix_user is not None})
    wanted = {"default": spec.default_unix_user, "tenants": tenants}
    if wanted == known or (row is None and not spec.default_unix_user and not tenants):
        return
    _put_state(session, report, row, UNIX_USERS_KEY, wanted, "unix users", now)


def _put_state(
    session: Session, report: ApplyReport, row: m.ServiceState | None, key: str,
    value: Any, label: str, now: float,
) -> None:
    """Store a declared setting kept in ``service_state``, counting it as made or changed."""
    if row is None:
        session.add(m.ServiceState(key=key, value=value, updated_at=now))
        report.created[label] += 1
    else:
        row.value, row.updated_at = value, now
        report.updated[label] += 1
