"""A caller-owned cache of eligibility answers: ``EligibilityCache``.

Owns: reuse of ``eligible_sites`` answers across jobs and scheduling passes.
Many jobs read the same datasets, so the answer is keyed by the *dataset set*
(``frozenset`` of ``(id, version)``) within one *generation* = (rules digest,
site views). Changing rules or sites starts a new generation; the previous
one is dropped (one generation is kept: a driver moves forward, not back).

Invariants:
- an answer is returned only while ``now < valid_until`` (a ground expires:
  recompute);
- a dataset whose class, jurisdictions, grounds or serving copies change must
  get a new ``version`` (that is what makes the key change);
- no global state: the driver creates, owns and drops the cache.

How a driver amortises it (docs/residency.md): compute a job's answer once
(``get``) when it is submitted and keep ``lawful_sites`` in ``Job.sites``;
each pass, call ``refresh(now)``, which returns only the dataset sets whose
answer changed because a ground expired (a heap makes an idle call O(1)), and
update the jobs reading those sets. Keys are frozensets, which cache their
hash: keep a job's key (``dataset_key``) and pass it in.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime

from masnaa.policy.data import Dataset, SiteView, dataset_key
from masnaa.policy.residency import (
    Eligibility,
    Finding,
    dataset_findings,
    eligible_sites,
    first_expiry,
)
from masnaa.policy.rules import RuleSet

DataKey = frozenset[tuple[str, int]]


class EligibilityCache:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._generation: tuple[str, tuple[SiteView, ...]] | None = None
        self._sites: Sequence[SiteView] = ()
        self._rules: RuleSet | None = None
        self._entries: dict[DataKey, Eligibility] = {}
        # Per dataset and destination country: its findings and until when they hold.
        # Dataset sets share datasets, so this makes a cold pass cost per dataset.
        self._per_dataset: dict[tuple[tuple[str, int], str],
                                tuple[tuple[Finding, ...], datetime | None]] = {}
        self._inputs: dict[DataKey, tuple[Dataset, ...]] = {}
        self._expiries: list[tuple[datetime, int, DataKey]] = []
        self._tick = 0  # heap tie-breaker: keys are not ordered
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, datasets: Sequence[Dataset], sites: Sequence[SiteView], rules: RuleSet,
            now: datetime, key: DataKey | None = None) -> Eligibility:
        """``eligible_sites(datasets, sites, rules, now)``, reused while still valid."""
        # Identity first: a driver passes the same objects all pass long.
        if sites is not self._sites or rules is not self._rules:
            self._select_generation(sites, rules)
        k = dataset_key(datasets) if key is None else key
        hit = self._entries.get(k)
        if hit is not None:
            until = hit.valid_until
            if until is None or now < until:
                self.hits += 1
                return hit
        return self._compute(k, tuple(datasets), now)

    def refresh(self, now: datetime) -> dict[DataKey, Eligibility]:
        """Recompute the answers a ground expiry has made stale by ``now``; return them."""
        changed: dict[DataKey, Eligibility] = {}
        heap = self._expiries
        while heap and heap[0][0] <= now:
            until, _, key = heapq.heappop(heap)
            entry = self._entries.get(key)
            if entry is None or entry.valid_until != until or key in changed:
                continue  # evicted or already recomputed
            changed[key] = self._compute(key, self._inputs[key], now)
        return changed

    def _compute(self, key: DataKey, datasets: tuple[Dataset, ...], now: datetime
                 ) -> Eligibility:
        assert self._rules is not None
        self.misses += 1
        rules = self._rules
        memo = self._per_dataset

        def findings_of(d: Dataset, country: str) -> tuple[Finding, ...]:
            slot = (d.key, country)
            known = memo.get(slot)
            if known is not None and (known[1] is None or now < known[1]):
                return known[0]
            found = dataset_findings(d, country, rules, now)
            memo[slot] = (found, first_expiry((d,), now))
            return found

        answer = eligible_sites(datasets, self._sites, rules, now, findings_of)
        if key not in self._entries and len(self._entries) >= self.max_entries:
            # A full cache is cleared rather than tracked per entry: the working
            # set of dataset sets is small next to the bound, so this is rare.
            self._clear()
        self._entries[key] = answer
        self._inputs[key] = datasets
        if answer.valid_until is not None:
            self._tick += 1
            heapq.heappush(self._expiries, (answer.valid_until, self._tick, key))
        return answer

    def _clear(self) -> None:
        self._entries = {}
        self._per_dataset = {}
        self._inputs = {}
        self._expiries = []

    def _select_generation(self, sites: Sequence[SiteView], rules: RuleSet) -> None:
        generation = (rules.digest, tuple(sites))
        if generation != self._generation:
            self._generation = generation
            self._clear()
        self._sites = sites
        self._rules = rules
