"""``QuotaView``: quotas as one scheduling pass sees them.

Owns the per-pool quota index of a pass (nominal, borrowing limit, the part of a
nominal quota never lent) and the reads built on it: the GPUs each tenant holds
per pool, this pass's starts and claims included (``pool_delta``); whether a job
may use a pool; and what a job that waited ``reclaim_after`` may take back from
tenants over their nominal quota. ``context.Pass`` extends it with the rest of a
pass's working state and reports each start and claim (``_held_in_pool``), which
keeps ``pool_delta`` and the caches here current.
"""

from __future__ import annotations

from masnaa.domain.job import Job, RunningJob
from masnaa.domain.reasons import Phrase
from masnaa.domain.tenancy import Quota
from masnaa.scheduler.config import SchedulerConfig
from masnaa.scheduler.pass_view import PassView, VictimTest
from masnaa.scheduler.queue import Entry
from masnaa.scheduler.snapshot import Snapshot
from masnaa.scheduler.state import ClusterState, Pool
from masnaa.scheduler.view import View


class QuotaView(PassView):
    """The quota part of ``PassView``, for ``context.Pass``."""

    view: View
    """The pass's overlay of free GPUs (set by ``Pass``)."""

    def __init__(
        self, snapshot: Snapshot, now: float, config: SchedulerConfig, uses_quotas: bool
    ) -> None:
        self.now = now
        self.config = config
        self.state: ClusterState = snapshot.state
        self.pool_delta: dict[tuple[str, int], int] = {}
        """GPUs each (tenant, pool) gained (+) or gave up (−) in this pass."""
        self._excess: dict[tuple[str, int], dict[tuple[str, int], int] | None] = {}
        """``reclaim_from`` by (tenant, gang size), until the pass next starts or claims."""
        self._lent: list[int] | None = None
        """``_lent_pools``, until the pass next starts or claims."""
        self.quotas: dict[tuple[str, int], Quota] = {}
        self.quota_pools: dict[int, list[Quota]] = {}
        self.guarded: dict[int, list[tuple[str, int]]] = {}
        if uses_quotas:
            for q in snapshot.quotas:
                for pool in self.state._pools_by_type.get(q.gpu_type, ()):
                    if pool.site == q.site:
                        self.quotas[(q.tenant, pool.index)] = q
                        self.quota_pools.setdefault(pool.index, []).append(q)
                        if q.lending_limit is not None and q.lending_limit < q.nominal:
                            # The part of the nominal quota never lent stays free for its owner.
                            keep = q.nominal - q.lending_limit
                            self.guarded.setdefault(pool.index, []).append((q.tenant, keep))

    def _held_in_pool(self, tenant: str, pool: int, gpus: int) -> None:
        """This pass started or claimed for ``tenant`` in ``pool`` (``gpus`` < 0: gave
        up): count it, and drop what was worked out from the holdings before."""
        self.pool_delta[(tenant, pool)] = self.pool_delta.get((tenant, pool), 0) + gpus
        self._excess.clear()
        self._lent = None

    def pool_of(self, r: RunningJob) -> int:
        return self.state._node_pool[self.state._ord[r.placement.slices[0].node]]

    def used(self, tenant: str, pool: int) -> int:
        base = self.state._tenant_pool_gpus.get((tenant, pool), 0)
        return base + self.pool_delta.get((tenant, pool), 0)

    def quota_allows(self, job: Job, pool: Pool, *, reclaim: bool = False) -> bool:
        """Whether ``job`` may use ``pool`` under quotas (``reclaim``: within nominal only)."""
        quotas = self.quota_pools.get(pool.index)
        if quotas is None:
            return True
        q = self.quotas.get((job.tenant, pool.index))
        nominal = 0 if q is None else q.nominal
        used = self.used(job.tenant, pool.index)
        after = used + job.total_gpus
        if after <= nominal:
            return True
        limit = None if q is None else q.borrowing_limit
        if limit is not None and after - nominal > limit:
            return False
        if reclaim:
            # Beyond nominal, a job may only take what others leave idle: no preemption
            # for fair share of a borrowed slice, except by the policy's own rules.
            return True
        protected = 0
        for tenant, keep in self.guarded.get(pool.index, ()):
            if tenant != job.tenant:
                protected += max(0, keep - self.used(tenant, pool.index))
        free = self.view.free[pool.index]
        # Too few free GPUs at all is a matter of capacity (placement says so), not quota.
        return free < job.total_gpus or free - protected >= job.total_gpus

    def quota_wait(self, job: Job, pools: tuple[tuple[Pool, ...], ...]) -> Phrase:
        """Why quotas keep ``job`` out of all its ``pools``: beyond what its tenant may
        ever hold in any of them (nominal + borrowing limit), or beyond what it may
        hold now."""
        most = -1
        for group in pools:
            for pool in group:
                q = self.quotas.get((job.tenant, pool.index))
                if q is None or q.borrowing_limit is None:
                    most = job.total_gpus  # it may borrow without a limit here
                    break
                most = max(most, q.nominal + q.borrowing_limit)
        if most < 0 or most >= job.total_gpus:
            return Phrase("wait-quota", {"tenant": job.tenant})
        return Phrase("wait-quota-ceiling", {"tenant": job.tenant, "gpus": job.total_gpus,
                                             "most": most})

    def borrowed(self, job: Job, pool: Pool) -> int:
        q = self.quotas.get((job.tenant, pool.index))
        if pool.index not in self.quota_pools:
            return 0
        nominal = 0 if q is None else q.nominal
        used = self.used(job.tenant, pool.index)
        return max(0, used + job.total_gpus - nominal) - max(0, used - nominal)

    def reclaims(self, entry: Entry, victim: RunningJob) -> bool:
        test = self.reclaim_test(entry)
        return test is not None and test(victim)

    def reclaim_test(self, entry: Entry, gpus: int | None = None) -> VictimTest | None:
        borrowed = self.reclaim_from(entry, gpus)
        if borrowed is None:
            return None
        pool_of = self.pool_of

        def test(victim: RunningJob) -> bool:
            over = borrowed.get((victim.job.tenant, pool_of(victim)))
            return over is not None and over >= victim.job.total_gpus

        return test

    def reclaim_from(
        self, entry: Entry, gpus: int | None = None
    ) -> dict[tuple[str, int], int] | None:
        if self.now - entry.since < self.config.reclaim_after:
            return None
        job = entry.job
        return self._excess_of(job.tenant, job.total_gpus if gpus is None else gpus)

    def lends(self, tenant: str) -> bool:
        # ``_excess_of(tenant, 1) is not None``, without building the excess: the review
        # asks it of every tenant with waiting jobs at the end of every pass.
        for pool in self._lent_pools():
            q = self.quotas.get((tenant, pool))
            if q is not None and self.used(tenant, pool) + 1 <= q.nominal:
                return True
        return False

    def _lent_pools(self) -> list[int]:
        """Pools under quota where some tenant holds more than its nominal quota."""
        if self._lent is None:
            lent: list[int] = []
            for key in self._holders(set(self.quota_pools)):
                if key[1] not in lent and self._over_nominal(*key) > 0:
                    lent.append(key[1])
            self._lent = lent
        return self._lent

    def _excess_of(self, tenant: str, size: int) -> dict[tuple[str, int], int] | None:
        key = (tenant, size)
        if key not in self._excess:
            self._excess[key] = self._borrowed(tenant, size)
        return self._excess[key]

    def _borrowed(self, tenant: str, size: int) -> dict[tuple[str, int], int] | None:
        mine = set()
        for pool in self.quota_pools:
            q = self.quotas.get((tenant, pool))
            if q is not None and self.used(tenant, pool) + size <= q.nominal:
                mine.add(pool)
        if not mine:
            return None
        # GPUs each tenant holds beyond its nominal quota per pool: no single victim is
        # larger, so that taking one job never drops its tenant below its nominal. The
        # bound is per victim: a gang that needs several victims of one tenant may take
        # that tenant below its nominal. Spending the excess victim by victim was
        # measured on whole Philly and not kept (docs/performance.md): the walk spent it
        # on victims a gang could not use and missed reclaims it should have made.
        borrowed: dict[tuple[str, int], int] = {}
        for key in self._holders(mine):
            over = self._over_nominal(*key)
            if over > 0:
                borrowed[key] = over
        return borrowed or None

    def _over_nominal(self, tenant: str, pool: int) -> int:
        """GPUs ``tenant`` holds in ``pool`` beyond its nominal quota (negative: room)."""
        q = self.quotas.get((tenant, pool))
        return self.used(tenant, pool) - (0 if q is None else q.nominal)

    def _holders(self, pools: set[int]) -> set[tuple[str, int]]:
        """(tenant, pool) pairs that hold GPUs of ``pools`` now, this pass included."""
        out = {key for key in self.state._tenant_pool_gpus if key[1] in pools}
        out.update(key for key in self.pool_delta if key[1] in pools)
        return out
