"""Why a job's state changed, or why it waits, in words any reader's language can
carry: phrases.

A reason is a tuple of ``Phrase``: a key naming an English template in
``PHRASES`` and the values its placeholders take. ``english`` renders it for
the API's ``reason``, ``state_reason`` and ``wait_message`` fields and the CLI; the portal
renders the same phrases through its catalog (each template is a message, and
so is ``JOIN``, which puts two phrases together), so that a job's history reads
in French or Arabic too.

Invariants:
- A parameter is a name, a number or a nested phrase (the exit status inside
  "stopped at its time limit, exit code 137"), never a sentence in English.
  The one exception is ``detail``: words that come from outside Masnaa (an
  executor's error, a residency refusal, an operator's note), shown as they came.
- A parameter whose name ends in ``_at`` is a time in UNIX seconds (an int):
  English text shows the number, a reader's renderer may show a date (``Show``).
- Keys are stable: they are stored with every job event, and a key that is
  retired stays in ``PHRASES`` so that old events still render.
- ``from_json`` never fails on what an older or newer version wrote: an unknown
  key, or a template whose placeholders the stored values do not fill, makes
  ``render`` return ``None`` and the caller shows the stored English text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union


def N_(message: str) -> str:
    """Mark ``message`` for extraction into the portal's catalogs."""
    return message


JOIN = N_("%(first)s; %(then)s")
"""How two phrases of one reason follow each other."""

PHRASES: dict[str, str] = {
    # The lifecycle, written by the service.
    "submitted": N_("submitted"),
    "submitted-by": N_("submitted by %(user)s"),
    "placed": N_("run %(run)s placed on %(nodes)s (%(gpu_type)s at %(site)s)"),
    "placed-by-backfill": N_(
        "run %(run)s placed by backfill on %(nodes)s (%(gpu_type)s at %(site)s)"
    ),
    "borrowed": N_("GPUs borrowed from other tenants' idle quota: %(gpus)s"),
    "started": N_("run %(run)s started"),
    "cancelled-pending": N_("cancelled by %(user)s while pending"),
    "cancel-requested": N_("cancel requested by %(user)s; the control loop stops it"),
    "cancelled-before-start": N_("cancelled before it started"),
    "launch-rejected": N_("the executor refused to start it: %(detail)s"),
    "cannot-run": N_("it can never run as asked: %(why)s"),
    "no-lawful-site": N_("its data may no longer go to any of its sites: %(detail)s"),
    "grace": N_("%(seconds)s s to checkpoint"),
    "evacuated-node": N_("evacuated: node %(node)s was drained by %(user)s"),
    "evacuated-site": N_("evacuated: site %(site)s was drained by %(user)s"),
    "note": N_("note: %(detail)s"),
    # How a run ended (``service.reconcile.settle``).
    "cancelled": N_("cancelled"),
    "cancelled-outside": N_("%(detail)s, not by Masnaa: not run again"),
    "preempted": N_("preempted"),
    "back-in-queue": N_("back in the queue"),
    "run-lost": N_("run %(run)s was lost: %(detail)s"),
    "run-lost-supervisor": N_("run %(run)s was lost: its supervisor is gone"),
    "most-runs": N_("it ran %(runs)s times, the most allowed"),
    "requeued-for-run": N_("requeued for run %(run)s"),
    "time-limit": N_("stopped at its time limit, %(status)s"),
    "stopped": N_("stopped, %(status)s"),
    "stopped-outside": N_("stopped from outside Masnaa, %(status)s"),
    "launch-failed": N_("could not start: %(detail)s"),
    "could-not-start": N_("could not start, %(status)s"),
    "exited": N_("exited with code %(code)s"),
    "exited-signal": N_("exited with code %(code)s (signal %(signal)s)"),
    "ended-by-signal": N_("ended by signal %(signal)s"),
    "ended-no-code": N_("ended without an exit code"),
    "exit-code": N_("exit code %(code)s"),
    "exit-code-signal": N_("exit code %(code)s (signal %(signal)s)"),
    "signal": N_("signal %(signal)s"),
    "no-exit-code": N_("no exit code"),
    # Why the core stops a running job (``scheduler.context``).
    "victim-priority": N_("priority: %(job)s (%(class)s) outranks %(victim_class)s"),
    "victim-reclaim": N_("quota reclaim: tenant %(tenant)s takes back GPUs lent to "
                         "%(victim_tenant)s, for job %(job)s"),
    "victim-oracle": N_("shorter remaining work first (oracle): %(job)s needs less"),
    "victim-same-tenant": N_("%(job)s has received less service than %(victim)s, of the "
                             "same tenant"),
    "victim-less-service": N_("%(job)s has received less service than %(victim)s"),
    "victim-fair-share": N_("%(job)s has received less service than %(victim)s and tenant "
                            "%(tenant)s is less served"),
    # The same, as a caller who may not see the other job reads them
    # (``service.reason_views``): another tenant's job and tenant are not named.
    "victim-priority-hidden": N_("priority: a job of another tenant (%(class)s) outranks "
                                 "%(victim_class)s"),
    "victim-reclaim-hidden": N_("quota reclaim: another tenant takes back GPUs lent to "
                                "%(victim_tenant)s"),
    "victim-oracle-hidden": N_("shorter remaining work first (oracle): a job of another "
                               "tenant needs less"),
    "victim-less-service-hidden": N_("a job of another tenant has received less service than "
                                     "%(victim)s"),
    "victim-fair-share-hidden": N_("a job of another tenant has received less service than "
                                   "%(victim)s and its tenant is less served"),
    "wait-held-for-hidden": N_("the free GPUs are held for a job of another tenant, reserved "
                               "to start at %(start_at)s; only a job that ends before then "
                               "could use them"),
    # Why a job waits (``scheduler.decision.Wait``): the details under its wait code.
    "wait-not-considered": N_("queued behind jobs that cannot start yet"),
    "wait-no-type-anywhere": N_("no node of the GPU types asked (%(types)s) exists at any site; "
                                "ask for a GPU type that exists where the job may run"),
    "wait-no-type-at": N_("no node of the GPU types asked (%(types)s) exists at sites "
                          "%(sites)s; ask for a GPU type that exists where the job may run"),
    "wait-too-large": N_("it asks for %(tasks)s×%(gpt)s GPUs but the largest eligible site has "
                         "%(biggest)s GPUs of an acceptable type, in nodes of at most "
                         "%(widest)s; ask for fewer or smaller tasks"),
    "wait-no-allocation-left": N_("project %(project)s has no allocation left (%(hours)s "
                                  "GPU-hours after jobs started in this pass); it waits until "
                                  "the allocation is topped up"),
    "wait-no-allocation-here": N_("project %(project)s has no allocation time left where the "
                                  "job may run (%(pools)s); time is left in %(funded)s: ask for "
                                  "one of those, or for a grant in these"),
    "wait-no-room": N_("no node of the GPU types and sites it may use has room for its tasks "
                       "now; jobs ahead of it wait too"),
    "wait-misfit": N_("not enough free GPUs together for its gang now: a gang no larger, for "
                      "the same GPU types and sites, did not fit; jobs ahead of it wait too"),
    "wait-no-task-fits": N_("no free GPUs can hold a task of any waiting job; jobs ahead of it "
                            "wait too"),
    # A count, not a list of jobs: other tenants' job ids stay unnamed.
    "wait-preempting": N_("running jobs are asked to stop to make room for it (%(jobs)s in "
                          "all); it starts when their checkpoint grace ends"),
    "wait-held-for": N_("the free GPUs are held for job %(job)s, reserved to start at "
                        "%(start_at)s; only a job that ends before then could use them"),
    "wait-quota": N_("tenant %(tenant)s would exceed its quota (nominal + borrowing limit) or "
                     "the idle capacity it may borrow for every acceptable GPU type"),
    "wait-quota-ceiling": N_("it needs %(gpus)s GPUs, more than tenant %(tenant)s may ever hold "
                             "where it may run (at most %(most)s: nominal quota + borrowing "
                             "limit); it can start only if an operator raises that quota"),
    "wait-reclaim": N_("not enough free GPUs now; once it has waited %(after)s s, tenant "
                       "%(tenant)s may take back the %(gpus)s GPUs it needs from tenants that "
                       "borrowed them, whose jobs then have their grace period to checkpoint"),
    "wait-first-in-line": N_("not enough free GPUs now; it is first in line for GPUs as running "
                             "jobs end"),
    "wait-would-delay": N_("it fits now, but its time limit would delay the job reserved at "
                           "%(start_at)s; a shorter time limit could let it start"),
    "wait-reserved": N_("not enough free GPUs now; nodes are reserved for it as running jobs "
                        "end (%(nodes)s in all)"),
    "wait-nodes-unavailable": N_("it needs %(gpus)s GPUs; enough exist, but drained or down "
                                 "nodes, or sites that cannot be reached, leave at most "
                                 "%(usable)s usable at one site"),
    "wait-not-together": N_("it needs %(tasks)s×%(gpt)s GPUs of %(types)s, each task on one "
                            "node; %(free)s acceptable GPUs are free, but too few of them on "
                            "the same nodes"),
    "wait-busy": N_("it needs %(gpus)s GPUs of %(types)s; %(free)s acceptable GPUs are free now"),
    # Why a job waits for its project's allocation (``accounting.balance.wait_reason``).
    "alloc-exhausted": N_("allocation %(allocation)s exhausted; request a supplement"),
    "alloc-exhausted-on": N_("allocation %(allocation)s exhausted on %(day)s; request a "
                             "supplement"),
    "alloc-not-started": N_("allocation %(allocation)s starts on %(day)s; wait or ask to start "
                            "earlier"),
    "alloc-expired": N_("allocation %(allocation)s expired on %(day)s; request a renewal"),
    "alloc-requested": N_("allocation %(allocation)s is requested, not yet awarded"),
    "alloc-in-review": N_("allocation %(allocation)s is in review, not yet awarded"),
    "alloc-approved": N_("allocation %(allocation)s is approved, not yet awarded"),
    "no-allocation": N_("project %(project)s has no allocation; request one"),
    # Why a job waits on drains (``service.evacuation.Drains``).
    "wait-drain": N_("waits for a drain to end"),
    "drained-site": N_("site %(site)s is drained"),
    "drained-site-note": N_("site %(site)s is drained (%(detail)s)"),
    "drained-node": N_("node %(node)s is drained"),
    "drained-node-note": N_("node %(node)s is drained (%(detail)s)"),
    # Why a Slurm site holds a job that Masnaa started there (``executors.slurm``); the
    # detail is Slurm's own reason code (``Resources``, ``Priority``, ``ReqNodeNotAvail``).
    "slurm-pending": N_("held pending by Slurm: %(detail)s"),
    "slurm-not-scheduled": N_("held pending by Slurm: not scheduled yet"),
    "only-named-sites": N_("it may run only at %(sites)s (the sites it names)"),
    "data-only-to": N_("its data may go only to %(sites)s"),
    "data-only-to-refused": N_("its data may go only to %(sites)s; the rules refuse "
                               "%(refused)s"),
    # Why the core chose one site over another (``scheduler.place``).
    "site-rather": N_("site %(site)s rather than %(other)s (both eligible and able to start "
                      "it now): %(because)s"),
    "site-preferred": N_("tenant %(tenant)s prefers it (preferred sites, best first: "
                         "%(sites)s)"),
    "site-cheaper": N_("it is cheaper: %(price)s against %(other_price)s"),
    "price": N_("%(amount)s per GPU-hour"),
    "no-price": N_("no price"),
    "site-closer": N_("same preference and price; the gang stays closer together there "
                      "(one node or a smaller topology domain)"),
    "site-tighter": N_("same preference and price; it fits more tightly there (%(left)s "
                       "against %(other_left)s GPUs or task slots left over), leaving whole "
                       "nodes for larger jobs"),
    "site-freer": N_("same preference, price and fit; a larger share of its GPUs is free "
                     "(%(free)s against %(other_free)s)"),
    "site-name-order": N_("equal on every criterion; its name comes first (a fixed order)"),
}

Value = Union[str, int, float, "Phrase"]
Show = Callable[[str, str | int | float], str | None]
"""(parameter name, value) → how a renderer writes it, or ``None`` for the plain way."""


def _same(message: str) -> str:
    return message


@dataclass(frozen=True, slots=True)
class Phrase:
    """One template of ``PHRASES`` and the values of its placeholders."""

    key: str
    params: Mapping[str, Value] = field(default_factory=dict)

    def render(
        self, translate: Callable[[str], str] = _same, show: Show | None = None
    ) -> str | None:
        """The phrase in the language of ``translate`` (English by default); ``None``
        when its key, or a placeholder's value, is missing."""
        template = PHRASES.get(self.key)
        if template is None:
            return None
        values: dict[str, str] = {}
        for name, value in self.params.items():
            if isinstance(value, Phrase):
                inner = value.render(translate, show)
                if inner is None:
                    return None
                values[name] = inner
                continue
            shown = show(name, value) if show is not None else None
            if shown is not None:
                values[name] = shown
            elif isinstance(value, float):
                values[name] = f"{value:g}"
            else:
                values[name] = str(value)
        try:
            return translate(template) % values
        except (KeyError, ValueError, TypeError):
            return None

    def __str__(self) -> str:
        return self.render() or self.key

    def to_json(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, value in self.params.items():
            params[name] = value.to_json() if isinstance(value, Phrase) else value
        return {"key": self.key, "params": params}


Reason = tuple[Phrase, ...]


def text(
    reason: Reason, translate: Callable[[str], str] = _same, show: Show | None = None
) -> str | None:
    """The phrases of ``reason`` joined in one sentence; ``None`` if one cannot render."""
    out: str | None = None
    for phrase in reason:
        rendered = phrase.render(translate, show)
        if rendered is None:
            return None
        out = rendered if out is None else translate(JOIN) % {"first": out, "then": rendered}
    return out or ""


def english(reason: Reason) -> str:
    """``reason`` in English (every key a caller writes is in ``PHRASES``)."""
    rendered = text(reason)
    if rendered is None:
        raise ValueError(f"reason {[p.key for p in reason]} does not render")
    return rendered


def to_json(reason: Reason) -> list[dict[str, Any]]:
    return [p.to_json() for p in reason]


def _phrase_from_json(data: object) -> Phrase | None:
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        return None
    raw = data.get("params")
    params: dict[str, Value] = {}
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, dict):
                inner = _phrase_from_json(value)
                if inner is None:
                    return None
                params[str(name)] = inner
            elif isinstance(value, str | int | float):
                params[str(name)] = value
            else:
                return None
    return Phrase(data["key"], params)


def from_json(data: object) -> Reason:
    """What ``to_json`` wrote; anything unreadable gives an empty reason."""
    if not isinstance(data, list):
        return ()
    out = []
    for item in data:
        phrase = _phrase_from_json(item)
        if phrase is None:
            return ()
        out.append(phrase)
    return tuple(out)
