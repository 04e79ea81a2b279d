"""From a job row to an executor call: which executor runs a site, and the ``LaunchSpec``.

Terms: the *executor name* of a site is ``sites.executor`` (``local``,
``slurm``). ``EXECUTOR_FACTORIES`` maps each name to a constructor taking the
factory's home directory, the site and its options (``[sites.slurm]`` of the
factory description, kept in ``service_state``). All local sites share one
local executor; each slurm site gets its own. A site whose executor cannot
be built here takes no work (its nodes are marked unavailable to the
scheduler, and the loop logs why).

GPU identity: a placement names node-local GPU indices 0..n-1. For the
local executor on real hardware the node's ``gpu_uuids`` (from NVML
discovery) turn them into UUIDs, and ``nvml_index`` (UUID → machine-wide
NVML index, probed when the loop starts) into the index
``CUDA_VISIBLE_DEVICES`` needs — they differ only on a machine that mixes
GPU types. Virtual GPUs have no UUID to give.

Accounts: the factory description names the Unix account each tenant's jobs
run as (``unix_user``, ``default_unix_user``; ``factory.apply`` keeps them in
``service_state``). ``Accounts`` reads them; ``build_spec`` puts the tenant's
on the ``LaunchSpec`` (``run_as``), and the executor decides what it can do
with it (``executors.base``, "Accounts").
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.executors.base import Executor, LaunchSpec, NodeGpus
from masnaa.executors.local import LocalExecutor
from masnaa.factory.apply import UNIX_USERS_KEY
from masnaa.store import models as m

ExecutorFactory = Callable[[Path, str, Mapping[str, Any]], Executor]
"""(home, site, the site's options from the factory description) → its executor."""


def _local(home: Path, site: str, options: Mapping[str, Any]) -> Executor:
    return LocalExecutor(jobs_root(home))


def _slurm(home: Path, site: str, options: Mapping[str, Any]) -> Executor:
    from masnaa.service.sites import slurm_executor

    return slurm_executor(home, site, options)


EXECUTOR_FACTORIES: dict[str, ExecutorFactory] = {"local": _local, "slurm": _slurm}


@dataclass(frozen=True, slots=True)
class Accounts:
    """The Unix accounts tenants' jobs run as, as the factory description named them."""

    default: str | None = None
    tenants: Mapping[str, str] = field(default_factory=dict)

    def of(self, tenant: str | None) -> str | None:
        """The account ``tenant``'s jobs run as; None: the control plane's own user."""
        return self.tenants.get(tenant or "") or self.default

    @classmethod
    def load(cls, session: Session) -> Accounts:
        row = session.get(m.ServiceState, UNIX_USERS_KEY)
        value = row.value if row is not None and isinstance(row.value, dict) else {}
        tenants = value.get("tenants") or {}
        return cls(value.get("default"), {str(k): str(v) for k, v in tenants.items()})


ISOLATION_DOC = 'docs/operations.md, "Isolating tenants"'


def identity_line(
    accounts: Accounts, tenants: list[str], *, user: str, root: bool, local: bool
) -> tuple[str, bool]:
    """Whose account jobs run as, in one line for ``masnaa up``, and whether tenants are
    isolated from each other's and the control plane's files. ``user``: the control
    plane's; ``local``: whether a site runs jobs on this machine."""
    if not local:
        return (f"submitted to Slurm as {user}: isolating tenants is Slurm's, see "
                f"{ISOLATION_DOC}", False)
    named = {t: accounts.of(t) for t in sorted(tenants)}
    open_ = (f"tenants are not isolated from each other or from the control plane's "
             f"files ({ISOLATION_DOC} tells how to isolate them)")
    if not root:
        unused = " (switching to the factory's unix_user accounts needs root)" if any(
            named.values()) else ""
        return f"run as {user}{unused}: {open_}", False
    bare = [t for t, a in named.items() if a is None]
    if len(bare) == len(named):
        return f"run as {user}, the control plane's user: {open_}", False
    shown = [f"{t} as {a}" for t, a in named.items() if a is not None]
    listed = ", ".join(shown[:4]) + (f" and {len(shown) - 4} more" if len(shown) > 4 else "")
    if bare:
        return (f"run as their tenant's account ({listed}) but {', '.join(bare)} run as "
                f"{user}: those are not isolated ({ISOLATION_DOC})", False)
    shared = len(set(named.values())) < len(named)
    note = "; tenants that share an account are not isolated from each other" if shared else ""
    return f"run as their tenant's Unix account ({listed}){note}", True


def jobs_identity(session: Session) -> tuple[str, bool]:
    """``identity_line`` for this process, the store's tenants and accounts."""
    tenants = list(session.scalars(select(m.Tenant.name)))
    local = session.scalar(select(m.Site.id).where(m.Site.executor == "local").limit(1))
    user = pwd.getpwuid(os.geteuid()).pw_name
    return identity_line(
        Accounts.load(session), tenants, user=user, root=os.geteuid() == 0,
        local=local is not None,
    )


def jobs_root(home: Path) -> Path:
    """Where the local executor keeps each attempt's records and logs."""
    return home / "jobs"


def build_spec(
    row: m.Job,
    *,
    node_uuids: Mapping[str, list[str]],
    nvml_index: Mapping[str, int],
    kill_grace: float,
    tenant: str | None = None,
    project: str | None = None,
    run_as: str | None = None,
) -> LaunchSpec:
    """The launch of ``row``'s current attempt on its recorded placement."""
    placement = []
    for piece in row.placement or []:
        node = str(piece["node"])
        indices = [int(g) for g in piece["gpus"]]
        known = node_uuids.get(node) or []
        uuids = [known[i] for i in indices if i < len(known)]
        if len(uuids) == len(indices):
            placement.append(
                NodeGpus(
                    node,
                    tuple(nvml_index.get(u, i) for u, i in zip(uuids, indices, strict=True)),
                    tuple(uuids),
                )
            )
        else:
            placement.append(NodeGpus(node, tuple(indices)))
    return LaunchSpec(
        job_id=row.id,
        attempt=row.attempt,
        argv=tuple(row.command or ()) if row.script is None else (),
        script=row.script,
        placement=tuple(placement),
        time_limit=row.time_limit,
        env=dict(row.env or {}),
        workdir=row.workdir,
        kill_grace=kill_grace,
        tenant=tenant,
        project=project,
        run_as=run_as,
    )
