"""Settings of one API process, read from ``MASNAA_*`` environment variables.

- ``MASNAA_HOME`` (default ``~/.masnaa``): the factory's home directory;
- ``MASNAA_DB_URL`` (default ``sqlite:///$MASNAA_HOME/masnaa.sqlite``);
- ``MASNAA_LOG_DIR`` (default ``$MASNAA_HOME/logs``): where job logs live;
- ``MASNAA_MAX_BODY_BYTES`` (default 1 MiB): larger request bodies get 413;
- ``MASNAA_MIGRATE`` (default ``1``): migrate the database on start-up
  (set ``0`` when several workers start at once and a deploy step migrates).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from masnaa.store.db import default_db_url, masnaa_home


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    home: Path
    log_dir: Path
    max_body_bytes: int = 1024 * 1024
    migrate: bool = True
    clock: Callable[[], float] = field(default=time.time, compare=False)
    """Seconds since the epoch; tests pass their own to test token expiry."""

    @staticmethod
    def from_env() -> Settings:
        home = masnaa_home()
        return Settings(
            db_url=default_db_url(),
            home=home,
            log_dir=Path(os.environ.get("MASNAA_LOG_DIR") or home / "logs"),
            max_body_bytes=int(os.environ.get("MASNAA_MAX_BODY_BYTES") or 1024 * 1024),
            migrate=os.environ.get("MASNAA_MIGRATE", "1") not in {"0", "false", "no"},
        )
