"""``TtlCache``: what a process reads of slow-changing rows, kept a few seconds.

Owns the short-lived, per-engine caches the job service reads when it validates
submissions (the declared hardware, projects). Each entry lives ``CACHE_SECONDS``;
an owner clears its caches at once when it changes what they hold.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

CACHE_SECONDS = 2.0
"""How long a process reuses what it read of the declared hardware and of
projects when validating submissions. Declaring hardware is rare; reading it
on every submission would cost several queries per job. A change is seen by
submissions within this many seconds (at once after ``jobs.invalidate_caches``)."""


class TtlCache:
    """Values per engine and key, each kept ``CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: weakref.WeakKeyDictionary[Any, dict[Any, tuple[float, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, engine: Any, key: Any) -> Any:
        with self._lock:
            entry = self._data.get(engine, {}).get(key)
        if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
            return None
        return entry[1]

    def put(self, engine: Any, key: Any, value: Any) -> None:
        with self._lock:
            per_engine = self._data.setdefault(engine, {})
            if len(per_engine) > 10_000:
                per_engine.clear()
            per_engine[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
