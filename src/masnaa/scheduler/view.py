"""``View``: a copy-on-write overlay of a ``ClusterState`` for one pass.

Owns: the tentative free GPUs of a pass (jobs started, GPUs claimed for jobs
waiting on preemptions, what-if releases). The underlying ``ClusterState`` is
never written: per-node free masks are overridden in a dict, and the small
per-pool arrays (buckets of nodes by free GPUs, free counts) are copied at
construction, which is O(pools · GPUs per node).

What-ifs are undoable (kueue's ``SimulateWorkloadRemoval`` habit): ``mark()``
returns a point in the undo log and ``rollback(mark)`` restores it. A long what-if
(a release walk gives back dozens of jobs) uses ``save()`` and ``restore()``
instead: they copy the overlay once rather than undo it change by change.
"""

from __future__ import annotations

from masnaa.domain.job import Placement, PlacementSlice
from masnaa.scheduler.state import ClusterState, Pool

Held = tuple[tuple[int, int], ...]
"""``(node ordinal, GPU bitmask)`` pairs: GPUs held by one job."""

Saved = tuple[int, dict[int, int], list[list[int]], list[int]]
"""A copy of a ``View``'s overlay (see ``View.save``)."""


class View:
    __slots__ = ("bits", "buckets", "free", "log", "masks", "pool_of", "pools", "state")

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.pools: tuple[Pool, ...] = state._pools
        self.pool_of = state._node_pool
        self.buckets: list[list[int]] = [list(b) for b in state._pool_buckets]
        self.free: list[int] = list(state._pool_free)
        self.masks: dict[int, int] = {}
        self.log: list[tuple[int, int]] = []
        self.bits: dict[int, tuple[int, ...]] = {}
        """GPU mask → its GPU indices, lowest first (big gangs place many whole nodes)."""

    def mask(self, i: int) -> int:
        m = self.masks.get(i)
        return self.state._free_mask[i] if m is None else m

    def available(self, i: int) -> bool:
        return self.state._avail[i]

    def _apply(self, i: int, old: int, new: int) -> None:
        self.masks[i] = new
        if not self.state._avail[i]:
            return
        p = self.pool_of[i]
        b = self.buckets[p]
        bit = 1 << i
        fo, fn = old.bit_count(), new.bit_count()
        b[fo] &= ~bit
        b[fn] |= bit
        self.free[p] += fn - fo

    def masks_of(self, placement: Placement) -> Held:
        """``(node ordinal, GPU bitmask)`` per slice of a placement."""
        ord_ = self.state._ord
        out = []
        for s in placement.slices:
            m = 0
            for g in s.gpus:
                m |= 1 << g
            out.append((ord_[s.node], m))
        return tuple(out)

    # ``take`` and ``give`` inline ``mask``: release walks call them for
    # every job that ends, which makes them the hottest lines of a replay.
    def take(self, held: Held) -> None:
        masks, base, log = self.masks, self.state._free_mask, self.log
        for i, m in held:
            old = masks.get(i)
            if old is None:
                old = base[i]
            new = old & ~m
            if new != old:
                log.append((i, old))
                self._apply(i, old, new)

    def give(self, held: Held) -> None:
        self._give(held, self.log)

    def give_back(self, held: Held) -> None:
        """``give`` without the undo log: only between ``save()`` and ``restore()``."""
        self._give(held, None)

    def _give(self, held: Held, log: list[tuple[int, int]] | None) -> None:
        # ``_apply`` inlined: a release walk gives back every job that ends before the
        # reserved job fits, and this is the hottest line of a replay.
        state = self.state
        masks, base, avail = self.masks, state._free_mask, state._avail
        pool_of, buckets, free = self.pool_of, self.buckets, self.free
        for i, m in held:
            old = masks.get(i)
            if old is None:
                old = base[i]
            if old:
                new = old | m
                if new == old:
                    continue
                fo, fn = old.bit_count(), new.bit_count()
            else:  # the node was all busy: its free GPUs are the ones given back
                new, fo, fn = m, 0, m.bit_count()
            if log is not None:
                log.append((i, old))
            masks[i] = new
            if not avail[i]:
                continue
            p = pool_of[i]
            b = buckets[p]
            bit = 1 << i
            b[fo] ^= bit  # an available node sits in the bucket of its free count
            b[fn] |= bit
            free[p] += fn - fo

    def held(self, job_id: str) -> Held:
        """What a running job of the underlying state holds."""
        return self.state._held[job_id]

    def mark(self) -> int:
        return len(self.log)

    def save(self) -> Saved:
        """The overlay as it is now, for ``restore``; costs O(pools + overridden nodes)."""
        return (
            len(self.log), dict(self.masks), [list(b) for b in self.buckets], list(self.free)
        )

    def restore(self, saved: Saved) -> None:
        """Put the overlay back as ``save`` found it (changes made since are dropped)."""
        mark, masks, buckets, free = saved
        del self.log[mark:]
        self.masks, self.buckets, self.free = masks, buckets, free

    def rollback(self, mark: int) -> None:
        log = self.log
        while len(log) > mark:
            i, old = log.pop()
            self._apply(i, self.mask(i), old)

    def max_free_node(self, pool: int, exclude: int = 0) -> int:
        """Most free GPUs on one available node of ``pool`` outside the ``exclude`` mask."""
        b = self.buckets[pool]
        keep = ~exclude
        for k in range(len(b) - 1, 0, -1):
            if b[k] & keep:
                return k
        return 0

    def slice_of(self, i: int, count: int) -> PlacementSlice:
        """The ``count`` lowest free GPUs of node ``i`` (caller checked there are enough)."""
        state = self.state
        if count == state._node_gpus[i]:
            return state._whole[i]
        m = self.mask(i)
        gpus = self.bits.get(m)
        if gpus is None:
            gpus = self.bits[m] = tuple(g for g in range(m.bit_length()) if m >> g & 1)
        return PlacementSlice(self.state._cluster.nodes[i].name, gpus[:count])
