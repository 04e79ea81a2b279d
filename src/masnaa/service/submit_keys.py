"""Idempotency keys for submissions: a retry returns the job already made, never a second.

A client that lost the answer to ``POST /jobs`` (the connection dropped, a proxy
timed out) cannot know whether the job exists. It sends the request again with the
same ``Idempotency-Key`` header; this module decides what that retry gets:

- a key is 1–128 characters of ``A-Z a-z 0-9 . _ : -`` (``invalid-idempotency-key``,
  400, otherwise); ``masnaa submit`` sends a fresh UUID with every job;
- keys are per user: one job per (user, key), held by a unique index across API
  workers;
- the same key with the same request (``digest``: SHA-256 of the validated spec)
  answers 200 with the job made the first time, whatever its state now, and the
  header ``Idempotent-Replayed: true``;
- the same key with another request is a mistake, refused with 409
  ``idempotency-key-reused`` naming the job the key made.

Keys are kept as long as their jobs; ``POST /jobs/batch`` does not take one (a batch
is all or none, so a client retries it only after finding none of its jobs).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.service.jobs import JobSpec
from masnaa.service.tenancy import Caller, ServiceError
from masnaa.store import models as m

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True, slots=True)
class Replayed:
    """A retry's answer: the job its key made the first time."""

    job_id: str


def check_key(key: str | None) -> str | None:
    """The key as sent (spaces around it are not part of an HTTP header's value)."""
    if key is None:
        return None
    key = key.strip()
    if _KEY.fullmatch(key):
        return key
    # Headers arrive decoded as Latin-1: show what the client typed.
    shown = key.encode("latin-1", "replace").decode("utf-8", "replace")
    raise ServiceError(
        "invalid-idempotency-key",
        f"{HEADER} must be 1 to 128 characters of letters, digits and . _ : -, "
        f"e.g. a UUID; got {shown[:40]!r}",
        status=400,
        field=HEADER,
    )


def refuse_on_batch(key: str | None) -> None:
    if key is not None:
        raise ServiceError(
            "idempotency-key-not-supported",
            f"POST /jobs/batch takes no {HEADER}: a batch is made whole or not at all, so "
            "look for its jobs before sending it again, or send each job to POST /jobs "
            "with a key of its own",
            status=400,
            field=HEADER,
        )


def digest(spec: JobSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def replay(session: Session, caller: Caller, key: str, request: str) -> str | None:
    """The id of the job ``caller`` made with ``key`` (None: none yet); 409 when that
    job came from another request."""
    found = session.execute(
        select(m.Job.id, m.Job.request_digest).where(
            m.Job.user_id == caller.user_id, m.Job.idempotency_key == key
        )
    ).first()
    if found is None:
        return None
    job_id, made_from = found
    if made_from != request:
        raise ServiceError(
            "idempotency-key-reused",
            f"{HEADER} {key!r} already made job {job_id} from another request; "
            "send a new key for a new job",
            status=409,
            field=HEADER,
        )
    return str(job_id)
