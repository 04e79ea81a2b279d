"""What a caller may read of a job's reasons: another tenant's job, and that job's
tenant, are not named to someone who cannot see that job.

The scheduler core is pure and writes reasons for the factory as a whole: a victim's
``preempting`` event names the job that preempts it (``victim-priority``,
``victim-reclaim``, ``victim-fair-share``, ...) and a job held back by backfill names the
job the GPUs are held for (``wait-held-for``). Those may be another tenant's, whose
existence the API otherwise never reveals ("another tenant's job is not found"). The
rows keep every reason as written (operators see them all); this module rewrites them
as they are shown, in the API (jobs, their events, ``explain``, the queue), the portal
and so the CLI.

Terms and invariants:
- A phrase in ``HIDDEN`` whose ``job`` the caller cannot see becomes its ``-hidden``
  twin, without ``job`` and ``tenant`` (the preemptor's): "a job of another tenant".
  What is the caller's own (the victim, its class, its tenant) stays.
- A job the caller cannot see: one of another tenant, or one that no longer exists
  (nothing to check it against). Operators see every job: nothing is rewritten.
- Reasons written before phrases existed have only their English text: an id of a
  hidden job in it is replaced by "a job of another tenant" (a tenant name in such an
  old text is not recognised; phrases have been written since revision 0004).
- Pure rewriting on top of one query per view (``redactor``) for the ids named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from masnaa.domain import reasons
from masnaa.domain.reasons import Phrase
from masnaa.service.tenancy import Caller
from masnaa.store import models as m

HIDDEN: Mapping[str, str] = {
    "victim-priority": "victim-priority-hidden",
    "victim-reclaim": "victim-reclaim-hidden",
    "victim-oracle": "victim-oracle-hidden",
    "victim-less-service": "victim-less-service-hidden",
    "victim-fair-share": "victim-fair-share-hidden",
    "wait-held-for": "wait-held-for-hidden",
}
"""Phrase key naming another job in its ``job`` param → the key that does not."""
DROPPED = ("job", "tenant")
"""Params of the other job that its ``-hidden`` twin leaves out."""
JOB_ID = re.compile(r"\bj-[0-9a-z]{10}\b")
OTHER_JOB = "a job of another tenant"


@dataclass(frozen=True, slots=True)
class Shown:
    """One reason as the caller reads it: its English text and its phrases (JSON)."""

    text: str | None
    phrases: list[dict[str, Any]]


def _named(phrase: Phrase, out: set[str]) -> None:
    if phrase.key in HIDDEN and isinstance(phrase.params.get("job"), str):
        out.add(str(phrase.params["job"]))
    for value in phrase.params.values():
        if isinstance(value, Phrase):
            _named(value, out)


def _rewrite(phrase: Phrase, hidden: frozenset[str]) -> Phrase:
    params = {k: _rewrite(v, hidden) if isinstance(v, Phrase) else v
              for k, v in phrase.params.items()}
    if phrase.key in HIDDEN and params.get("job") in hidden:
        kept = {k: v for k, v in params.items() if k not in DROPPED}
        return Phrase(HIDDEN[phrase.key], kept)
    return Phrase(phrase.key, params)


@dataclass(frozen=True, slots=True)
class Redactor:
    """Rewrites reasons for one caller; ``hidden``: the job ids they may not see."""

    hidden: frozenset[str] = frozenset()

    def reason(self, text: str | None, stored: object) -> Shown:
        said = reasons.from_json(stored)
        phrases = stored if isinstance(stored, list) else []
        if not self.hidden:
            return Shown(text, phrases)
        if said:
            named: set[str] = set()
            for phrase in said:
                _named(phrase, named)
            if not named & self.hidden:
                return Shown(text, phrases)
            rewritten = tuple(_rewrite(p, self.hidden) for p in said)
            return Shown(reasons.english(rewritten), reasons.to_json(rewritten))
        if text:
            text = JOB_ID.sub(lambda hit: OTHER_JOB if hit.group(0) in self.hidden
                              else hit.group(0), text)
        return Shown(text, phrases)


def _ids_in(text: str | None, stored: object, out: set[str]) -> None:
    said = reasons.from_json(stored)
    for phrase in said:
        _named(phrase, out)
    if not said and text:
        out.update(JOB_ID.findall(text))


def redactor(
    session: Session, caller: Caller, shown: Iterable[tuple[str | None, object]]
) -> Redactor:
    """A redactor for ``caller`` over the reasons ``shown`` ((text, phrases) pairs):
    one query for the jobs they name, none for an operator."""
    if caller.is_operator:
        return Redactor()
    named: set[str] = set()
    for text, stored in shown:
        _ids_in(text, stored, named)
    if not named:
        return Redactor()
    seen = set(session.scalars(
        select(m.Job.id).where(m.Job.id.in_(sorted(named)), m.Job.tenant_id == caller.tenant_id)
    ))
    return Redactor(frozenset(named - seen))


def job_reasons(job: Any) -> list[tuple[str | None, object]]:
    """The reasons a job row shows: why its state changed, why it waits."""
    return [(job.state_reason, job.state_phrases), (job.wait_message, job.wait_phrases)]


def event_reasons(events: Iterable[Any]) -> list[tuple[str | None, object]]:
    return [(e.reason, e.phrases) for e in events]


class ShownJob:
    """A job row whose reasons read as the caller may read them (for the portal's
    templates); every other attribute is the row's."""

    def __init__(self, job: m.Job, redact: Redactor) -> None:
        self._job = job
        state = redact.reason(job.state_reason, job.state_phrases)
        wait = redact.reason(job.wait_message, job.wait_phrases)
        self.state_reason, self.state_phrases = state.text, state.phrases
        self.wait_message, self.wait_phrases = wait.text, wait.phrases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)


class ShownEvent:
    """A job event whose reason reads as the caller may read it."""

    def __init__(self, event: m.JobEvent, redact: Redactor) -> None:
        self._event = event
        shown = redact.reason(event.reason, event.phrases)
        self.reason, self.phrases = shown.text, shown.phrases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)
