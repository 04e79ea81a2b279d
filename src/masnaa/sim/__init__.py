"""The twin: a discrete-event replay of workload traces through the scheduler core.

``loaders`` turn traces (Philly, a generic CSV, Slurm ``sacct`` output, a seeded
generator) into a columnar ``Trace``; ``shape`` sizes the cluster and derives
tenants' entitlement; ``engine`` drives ``masnaa.scheduler.decide`` with a
virtual clock; ``timeline`` and ``metrics`` measure; ``compare``, ``report``
and ``plots`` build what ``masnaa sim`` prints and writes. See docs/twin.md.
"""
