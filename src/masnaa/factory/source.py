"""Where a home's factory was declared: a TOML file, or this machine's discovery.

A home set up from a file is the file's: a later ``masnaa up`` without
``--factory`` must not lay this machine's discovered GPUs over it (a ``local`` site
the file never declared, the built-in priority classes, no default Unix account,
so that tenants' jobs fell back to running as root). ``up`` records the source each
time it applies one, and reads it before applying discovery.

Homes made before the source was recorded have none: one whose sites are all the
discovered ``local`` one counts as discovered, any other as declared from a file.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.store import models as m

SOURCE_KEY = "factory-source"
DISCOVERED_SITE = "local"


def declared_file(session: Session) -> str | None:
    """The file this home's factory was declared in (``"an earlier factory file"`` for a
    home from before the source was recorded); ``None``: discovered, or a new home."""
    row = session.get(m.ServiceState, SOURCE_KEY)
    if row is not None:
        value = row.value if isinstance(row.value, dict) else {}
        path = value.get("file")
        return str(path) if path else None
    sites = set(session.scalars(select(m.Site.name)))
    if sites and sites != {DISCOVERED_SITE}:
        return "an earlier factory file"
    return None


def record(session: Session, file: str | None) -> None:
    """Note that the factory was just applied from ``file`` (``None``: discovery)."""
    value = {"file": file}
    row = session.get(m.ServiceState, SOURCE_KEY)
    if row is None:
        session.add(m.ServiceState(key=SOURCE_KEY, value=value, updated_at=time.time()))
    elif row.value != value:
        row.value, row.updated_at = value, time.time()
