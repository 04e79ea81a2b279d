"""Placement: exact GPUs for a gang, topology-aware best fit, on a ``View``.

Rules (in this order):
1. a job whose whole gang fits on one node takes one node: the available node
   with the fewest free GPUs that still holds it (best fit, least
   fragmentation); ties go to the lowest node ordinal (deterministic);
2. otherwise, tasks are spread over nodes of the *smallest* topology domain
   (NVLink domain, then leaf switch, then site) whose free task slots hold the
   gang, choosing among domains of a level the one with the fewest free slots
   (best fit again); inside it, nodes with the most free GPUs first (whole free
   nodes before partial ones), lowest ordinal first;
3. a task never spans nodes: a node offers ``free // gpus_per_task`` slots;
4. on a node, the lowest free GPU indices are used.

``exclude`` is a bitmask of node ordinals the placement must avoid (nodes
reserved for a blocked job). Nothing here mutates the view.

Choosing among sites (``SiteChoice``; docs/scheduler.md, "Site choice"). A
job whose GPU type is offered at several of its eligible sites (``Job.sites``
after residency, or every site) starts at a site where it fits NOW — a job
never waits for a better site, so expected wait comes first — and among
those, lexicographically:

1. the tenant's preference: position in ``Tenant.preferred_sites``; sites not
   listed come after, all equal;
2. price: ``Snapshot.site_prices[(site, GPU type)]`` (one comparison unit);
   a site without a price comes after every priced one;
3. fit: the topology score above (one node before a spread gang; fewest GPUs
   or slots left over);
4. free capacity: the larger share of the site's GPUs of the type free first
   (spreads load between otherwise equal sites; in the five-site twin this
   kept the p99 wait lower than "most free GPUs" or "first site");
5. the site's name (pools are kept in name order): deterministic.

Acceptable GPU types keep their order (the caller tries one type after the
other), so the rule ranks sites within a type. ``Job.sites`` is a set, not a
preference: for jobs "anywhere allowed" it holds the lawful sites in the
factory's order, which says nothing about what the tenant wants. A pool list
of one (every single-site factory) takes the plain fit path; with several,
only sites with enough free GPUs are placed, in rank order, until nothing
later can win and (for the reason) one other site that fits is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from masnaa.domain.job import Job, Placement, PlacementSlice
from masnaa.domain.reasons import Phrase
from masnaa.domain.tenancy import Tenant
from masnaa.scheduler.state import Pool
from masnaa.scheduler.view import View

Score = tuple[int, int]
"""``(0, leftover GPUs)`` for one node; ``(1 + level, spare slots)`` for a spread gang."""


def place_in_pool(
    view: View, pool: Pool, job: Job, exclude: int = 0
) -> tuple[Placement, Score] | None:
    """Best placement of ``job`` in ``pool`` now, or ``None`` if it does not fit."""
    buckets = view.buckets[pool.index]
    total = job.total_gpus
    keep = ~exclude
    top = len(buckets)
    if total < top:
        for k in range(total, top):
            m = buckets[k] & keep
            if m:
                i = (m & -m).bit_length() - 1
                return Placement((view.slice_of(i, total),)), (0, k - total)
    if job.tasks == 1:
        return None
    g = job.gpus_per_task
    if g >= top:
        return None
    slots = 0
    for f in range(g, top):
        m = buckets[f] & keep
        if m:
            slots += (f // g) * m.bit_count()
    if slots < job.tasks:
        return None
    for level, domains in enumerate(pool.levels):
        if pool.level_max[level] < total:
            continue
        best: tuple[int, int] | None = None
        for _name, dmask, cap in domains:
            if cap < total:
                continue
            dm = dmask & keep
            s = 0
            for f in range(g, top):
                m = buckets[f] & dm
                if m:
                    s += (f // g) * m.bit_count()
            if s >= job.tasks and (best is None or s < best[0]):
                best = (s, dm)
        if best is not None:
            return _spread(view, buckets, best[1], job), (1 + level, best[0] - job.tasks)
    return None


def _spread(view: View, buckets: list[int], dmask: int, job: Job) -> Placement:
    g = job.gpus_per_task
    left = job.tasks
    slices: list[PlacementSlice] = []
    state = view.state
    whole, sizes = state._whole, state._node_gpus
    for f in range(len(buckets) - 1, g - 1, -1):
        m = buckets[f] & dmask
        while m and left:
            low = m & -m
            m ^= low
            i = low.bit_length() - 1
            n = min(f // g, left)
            # Whole free nodes (most of a big gang) take the state's shared slice.
            slices.append(whole[i] if n * g == sizes[i] else view.slice_of(i, n * g))
            left -= n
        if not left:
            break
    return Placement(tuple(slices))


Rank = tuple[int, float]
"""``(position in the tenant's preferred sites, price)`` of a pool; lower is better."""


class SiteChoice:
    """Ranks the pools of a job's eligible sites for one pass (rule in the module docstring).

    Built per pass from the snapshot; ranks are cached per (tenant, pool).
    """

    __slots__ = ("_prices", "_ranks", "_tenants")

    def __init__(
        self, prices: Mapping[tuple[str, str], float] | None, tenants: Mapping[str, Tenant]
    ) -> None:
        self._prices: Mapping[tuple[str, str], float] = prices or {}
        self._tenants = tenants
        self._ranks: dict[tuple[str, int], Rank] = {}

    def preferred(self, tenant: str) -> tuple[str, ...]:
        t = self._tenants.get(tenant)
        return () if t is None else t.preferred_sites

    def price(self, pool: Pool) -> float:
        return self._prices.get((pool.site, pool.gpu_type), math.inf)

    def rank(self, tenant: str, pool: Pool) -> Rank:
        key = (tenant, pool.index)
        r = self._ranks.get(key)
        if r is None:
            prefs = self.preferred(tenant)
            pos = prefs.index(pool.site) if pool.site in prefs else len(prefs)
            r = self._ranks[key] = (pos, self.price(pool))
        return r


_Fit = tuple[tuple[Rank, Score, float, int], Placement, Pool]
"""``((rank, fit score, −free share, position), placement, pool)``: the full site-choice key."""


def best_placement(
    view: View,
    pools: list[Pool],
    job: Job,
    exclude: int = 0,
    choice: SiteChoice | None = None,
    why: dict[str, Phrase] | None = None,
) -> tuple[Placement, Pool] | None:
    """The best placement over ``pools`` (all of one GPU type).

    Without ``choice``: best fit, ties to the first pool. With it: the site-choice
    rule of the module docstring; ``why`` (job id → phrase) then receives the reason
    when more than one site could start the job now.
    """
    if choice is not None and len(pools) > 1:
        return _choose(view, pools, job, exclude, choice, why)
    best: tuple[Placement, Score, Pool] | None = None
    for pool in pools:
        found = place_in_pool(view, pool, job, exclude)
        if found is not None and (best is None or found[1] < best[1]):
            best = (found[0], found[1], pool)
            if found[1] == (0, 0):
                break
    return None if best is None else (best[0], best[2])


def _choose(
    view: View,
    pools: list[Pool],
    job: Job,
    exclude: int,
    choice: SiteChoice,
    why: dict[str, Phrase] | None,
) -> tuple[Placement, Pool] | None:
    free, total = view.free, job.total_gpus
    room = [i for i, pool in enumerate(pools) if free[pool.index] >= total]
    if not room:  # most calls: a job blocked everywhere
        return None
    if len(room) == 1:  # one site with room: nothing to choose
        found = place_in_pool(view, pools[room[0]], job, exclude)
        return None if found is None else (found[0], pools[room[0]])
    # Sites in rank order, larger free share first within a rank: once a site fits
    # perfectly, or the rank worsens, no later site can beat the best one found.
    order = sorted(
        (choice.rank(job.tenant, pools[i]), -free[pools[i].index] / pools[i].capacity, i)
        for i in room
    )
    best: _Fit | None = None
    other: _Fit | None = None
    for rank, share, i in order:
        settled = best is not None and (rank > best[0][0] or best[0][1] == (0, 0))
        if settled and (why is None or other is not None):
            break  # a reason needs one other site that could start it: any will do
        pool = pools[i]
        found = place_in_pool(view, pool, job, exclude)
        if found is None:
            continue
        fit: _Fit = ((rank, found[1], share, i), found[0], pool)
        if best is None or fit[0] < best[0]:
            # Two statements: mypyc (scripts/build-compiled.sh) narrows ``best`` wrongly
            # in ``best, other = fit, best`` and rejects the None it holds.
            other = best
            best = fit
        elif other is None:
            other = fit
    if best is None:
        return None
    if why is not None and other is not None:
        why[job.id] = _reason(job, choice, best, other)
    return best[1], best[2]


def _price(p: float) -> Phrase:
    return Phrase("no-price") if math.isinf(p) else Phrase("price", {"amount": f"{p:.2f}"})


def _reason(job: Job, choice: SiteChoice, best: _Fit, other: _Fit) -> Phrase:
    """Why ``best`` beat ``other`` (another site that could start the job now): the first
    criterion of the rule that sets them apart."""
    (w, _, wpool), (r, _, rpool) = best, other
    if w[0][0] != r[0][0]:
        prefs = ", ".join(choice.preferred(job.tenant))
        because = Phrase("site-preferred", {"tenant": job.tenant, "sites": prefs})
    elif w[0][1] != r[0][1]:
        because = Phrase("site-cheaper", {"price": _price(w[0][1]), "other_price": _price(r[0][1])})
    elif w[1][0] != r[1][0]:
        because = Phrase("site-closer")
    elif w[1] != r[1]:
        because = Phrase("site-tighter", {"left": w[1][1], "other_left": r[1][1]})
    elif w[2] != r[2]:
        because = Phrase("site-freer", {"free": f"{-w[2]:.0%}", "other_free": f"{-r[2]:.0%}"})
    else:
        because = Phrase("site-name-order")
    return Phrase("site-rather", {"site": wpool.site, "other": rpool.site, "because": because})
