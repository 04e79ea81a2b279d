"""Alembic environment: runs on the connection handed in by ``store.db.upgrade``
(or, from the alembic command line, on ``sqlalchemy.url``)."""

from __future__ import annotations

from alembic import context

from masnaa.store import models  # noqa: F401  (registers every table)
from masnaa.store.base import Base
from masnaa.store.db import make_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url"), pool_size=1)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()
