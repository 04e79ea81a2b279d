"""Engines, sessions and migrations.

- ``make_engine(url)``: SQLite gets WAL, a busy timeout, foreign keys and
  ``BEGIN IMMEDIATE`` for every transaction (a deferred transaction that reads
  and then writes fails with "database is locked" when another writer went
  first; taking the write lock up front makes writers queue on the busy
  timeout instead). Read-only work can skip the lock: use
  ``read_session_factory`` (plain deferred ``BEGIN``; WAL readers never block).
  PostgreSQL URLs (``postgresql://``) are driven by psycopg 3.
- ``upgrade(url_or_engine)``: runs the Alembic migrations shipped in
  ``masnaa/store/migrations`` up to head. Idempotent.
- Default URL: ``sqlite:///$MASNAA_HOME/masnaa.sqlite``; ``MASNAA_HOME``
  defaults to ``~/.masnaa``. ``MASNAA_DB_URL`` overrides the URL.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "masnaa_read_only"


class DatabaseFileGone(RuntimeError):
    """The SQLite file this engine opened was deleted or replaced while it ran.

    Every transaction checks it first (one ``stat``): SQLite keeps writing through the
    connections already open to the unlinked file, and a new connection would make an
    empty one at the path, so without the check jobs are accepted and run into a
    database nobody can read again."""


def masnaa_home() -> Path:
    return Path(os.environ.get("MASNAA_HOME") or Path.home() / ".masnaa")


def default_db_url() -> str:
    url = os.environ.get("MASNAA_DB_URL")
    if url:
        return url
    return f"sqlite:///{masnaa_home() / 'masnaa.sqlite'}"


def normalise_url(url: str) -> str:
    """Pick psycopg 3 for bare PostgreSQL URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def database_error(url: str, exc: BaseException) -> str:
    """One line for a database that cannot be used: its address (no password) and the
    driver's first line, never a traceback."""
    parsed = make_url(normalise_url(url))
    where = (f"{parsed.database} (SQLite)" if parsed.get_backend_name() == "sqlite"
             else parsed.render_as_string(hide_password=True))
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"cannot use the database {where}: {first}"


def make_engine(
    url: str | None = None,
    *,
    pool_size: int = 10,
    wal_autocheckpoint: int = 1000,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` (default: ``default_db_url()``).

    ``wal_autocheckpoint`` (SQLite only, in pages; SQLite's default): a
    commit that grows the WAL past it copies the WAL back into the database
    file first.
    """
    url = normalise_url(url or default_db_url())
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            pool: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 2 * pool_size}
        else:  # one shared in-memory database, for throw-away uses
            pool = {"poolclass": StaticPool}
        engine = create_engine(url, connect_args=connect_args, **pool, **kwargs)
        file = Path(database) if database and database != ":memory:" else None
        _configure_sqlite(engine, wal_autocheckpoint, file)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True, **kwargs
    )


def _identity(file: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _configure_sqlite(engine: Engine, wal_autocheckpoint: int, file: Path | None) -> None:
    opened: list[tuple[int, int] | None] = []
    """The file's (device, inode) when the first connection opened it."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if file is not None and not opened:
            opened.append(_identity(file))
        # Let SQLAlchemy's "begin" hook (below) emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={int(wal_autocheckpoint)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if file is not None and opened and _identity(file) != opened[0]:
            raise DatabaseFileGone(
                f"the database file {file} was deleted or replaced while Masnaa ran; "
                "nothing more is written. Stop Masnaa, put the file back (or restore it "
                "from a backup) and start again"
            )
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that writes (or must read what it then writes)."""
    return sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-only work: no write lock on SQLite."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(url_or_engine: str | Engine | None = None, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    from alembic import command

    engine = (
        url_or_engine
        if isinstance(url_or_engine, Engine)
        else make_engine(url_or_engine, pool_size=1)
    )
    try:
        cfg = _alembic_config(engine)
        with engine.connect() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            connection.commit()
    finally:
        if not isinstance(url_or_engine, Engine):
            engine.dispose()


@functools.cache
def head_revision() -> str:
    """The newest migration shipped with this Masnaa: the schema its code expects."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(__file__).parent / "migrations"))
    head = script.get_current_head()
    assert head is not None
    return head


def schema_behind(session: Session) -> str | None:
    """Why the database's schema is not the one this code expects (None when it is)."""
    try:
        found = session.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except (OperationalError, ProgrammingError):
        found = []
        session.rollback()
    head = head_revision()
    if found == [head]:
        return None
    at = ", ".join(found) or "no schema"
    return (f"the database schema is at {at}, and this Masnaa needs {head}: migrate it "
            "(`masnaa loop` migrates by default; API workers with MASNAA_MIGRATE=1)")
