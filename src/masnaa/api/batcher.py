"""Group commit for single-job submissions.

Many clients submitting at once would each pay a transaction (``BEGIN``,
two inserts, ``COMMIT``) and, on SQLite, queue for the one write lock. The
batcher has one writer thread take every submission waiting at that moment
(up to ``MAX_GROUP``), validate each on its own, insert the valid ones with
two statements and commit once. Each request still gets its own answer: a
refused job gets its own error, and a failed commit fails every request of
that group (none of their jobs exists), after which each is retried on
its own so that one bad request cannot sink the others. Latency grows by at most one commit
of the group ahead; throughput no longer pays one commit per job.

Invariants: a request's answer is sent only after its job is committed; no
job is written twice; a job refused by validation never reaches the
database. A request with an ``Idempotency-Key`` its user already used gets the
job that key made (``service.submit_keys``); a second request with the same key
in one group waits for the group's commit, then gets the first one's job.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from masnaa.service import submit_keys
from masnaa.service.jobs import JobSpec, Submitted, prepare, write_submitted
from masnaa.service.submit_keys import Replayed
from masnaa.service.tenancy import Caller, ServiceError

log = logging.getLogger(__name__)

MAX_GROUP = 256


Outcome = Submitted | Replayed


@dataclass(slots=True)
class _Item:
    caller: Caller
    spec: JobSpec
    key: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]


def _settle(future: asyncio.Future[Outcome], result: Outcome | BaseException) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class SubmitBatcher:
    def __init__(self, db: Any, clock: Any) -> None:
        self._db = db
        self._clock = clock
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="masnaa-submit-writer", daemon=True
                )
                self._thread.start()

    async def submit(self, caller: Caller, spec: JobSpec, key: str | None = None) -> Outcome:
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(_Item(caller, spec, key, loop, future))
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._write(group)
            if stop:
                return

    def _write(self, group: list[_Item], *, again: bool = False) -> None:
        outcomes: list[Outcome | BaseException | None] = []
        later: list[_Item] = []  # a key repeated within the group: answered after the commit
        try:
            with self._db.write() as session:
                now = self._clock()
                accepted: list[Submitted] = []
                keys: set[tuple[int, str]] = set()
                for item in group:
                    try:
                        outcome = self._one(session, item, now, keys)
                    except ServiceError as exc:
                        outcomes.append(exc)
                        continue
                    if outcome is None:
                        later.append(item)
                    elif isinstance(outcome, Submitted):
                        accepted.append(outcome)
                    outcomes.append(outcome)
                write_submitted(session, accepted)
        except Exception as exc:  # nothing of this group was written
            if len(group) > 1:
                # One request must not sink the others: retry each on its own.
                log.info("group commit of %d submissions failed (%s); retrying one by one",
                         len(group), type(exc).__name__)
                for item in group:
                    self._write([item])
                return
            if isinstance(exc, IntegrityError) and group[0].key is not None and not again:
                # Another API worker committed the same key first: answer with its job.
                self._write(group, again=True)
                return
            log.warning("a submission failed: %s", exc)
            outcomes, later = [exc], []
        for item, result in zip(group, outcomes, strict=True):
            if result is not None:
                item.loop.call_soon_threadsafe(_settle, item.future, result)
        for item in later:
            self._write([item])

    @staticmethod
    def _one(session: Any, item: _Item, now: float, keys: set[tuple[int, str]]
             ) -> Outcome | None:
        """Validate one request, or find the job its key made; None: its key is already
        used by an earlier request of this group."""
        if item.key is None:
            return prepare(session, item.caller, [item.spec], now=now, single=True)
        request = submit_keys.digest(item.spec)
        if (item.caller.user_id, item.key) in keys:
            return None
        known = submit_keys.replay(session, item.caller, item.key, request)
        if known is not None:
            return Replayed(known)
        done = prepare(session, item.caller, [item.spec], now=now, single=True)
        done.job_rows[0].update(idempotency_key=item.key, request_digest=request)
        keys.add((item.caller.user_id, item.key))
        return done
