"""Release walks of whole-node gangs: the short walk (``release._whole_nodes_fit``) gives
exactly what the general walk gives, on random clusters (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masnaa.domain import Job
from masnaa.scheduler import POLICIES, SchedulerConfig
from masnaa.scheduler.context import Pass
from masnaa.scheduler.release import earliest_fit

from .test_properties import World, worlds


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_whole_node_walks_match_the_general_walk(world: World, data: st.DataObject) -> None:
    snapshot, queue = world.build()
    state = snapshot.state
    for r in world.running:
        if data.draw(st.booleans()):  # some are being preempted: spared or not by the walk
            state.mark_preempting(r.job.id, world.now + data.draw(st.floats(0.0, 5_000.0)))
    p = Pass(snapshot, queue, world.now, SchedulerConfig(policy="masnaa"), POLICIES["masnaa"],
             None)
    # What the pass already took (a start, a claim) is part of the view both walks read.
    node = data.draw(st.sampled_from(world.cluster.nodes))
    i = state._ord[node.name]
    taken = p.view.mask(i) & data.draw(st.integers(0, (1 << node.gpu_count) - 1))
    if taken:
        p.view.take(((i, taken),))
    checked = 0
    for pool in state._pools:
        g = pool.max_node_gpus
        if pool.capacity != g * len(pool.members):
            continue
        for tasks in range(1, len(pool.members) + 2):
            job = Job("w", "a", "p", tasks, g, (pool.gpu_type,), 1_000.0, sites=(pool.site,))
            pools = p.eligible_pools(job)
            for spare in (False, True):
                short = earliest_fit(p, [(job, pools)], take_reservation=False,
                                     spare_preempted=spare)
                general = earliest_fit(p, [(job, pools)], take_reservation=False,
                                       spare_preempted=spare, whole_nodes=False)
                assert short == general
                checked += 1
    assert checked  # every drawn cluster has pools of one node size
