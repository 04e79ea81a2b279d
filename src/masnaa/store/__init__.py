"""The store: SQLAlchemy 2 ORM models, engines and sessions, Alembic migrations.

The database is the truth of the live service. ``models`` declares every table
(and who writes which column), ``db`` builds engines and sessions and runs the
migrations in ``migrations/`` (shipped inside the package), ``convert`` turns
rows into the pure domain types the scheduler core reads.
"""

from masnaa.store.base import Base
from masnaa.store.db import (
    default_db_url,
    make_engine,
    masnaa_home,
    read_session_factory,
    session_factory,
    upgrade,
)

__all__ = [
    "Base",
    "default_db_url",
    "make_engine",
    "masnaa_home",
    "read_session_factory",
    "session_factory",
    "upgrade",
]
