"""The cost of residency, in the twin: one workload on five national sites, run twice.

Owns a synthetic multi-site scenario: a factory of five sites (``ma-1``
Morocco, ``za-1`` South Africa, ``ng-1`` Nigeria, ``ke-1`` Kenya, ``eg-1``
Egypt) and a seeded workload of jobs from one tenant per country, where a
share of the jobs read data of their tenant's country. Those jobs carry
``Job.sites`` = the LAWFUL sites of their data, computed by the pure residency
policy (``masnaa.policy``) from the operator's rules file, exactly as the live
service does at submission; the other jobs may run anywhere. The same trace is
then replayed without the constraint (every job anywhere), and the two runs
are reported side by side: utilisation, mean and p99 wait, and each site's
load.

Invariants: the workload is a pure function of ``ScenarioConfig`` (seeded
generator; no clock); both runs replay the very same jobs, arrival times and
runtimes; the twin's engine is used as is (``masnaa.sim.engine``), watched
only to learn at which site each run started.

Terms: *bound* job: one that reads country-bound data (its lawful sites are
not all sites); *load* of a site: GPU-seconds run there ÷ (its GPUs × the
makespan); *cost*: GPU-hours run at each site × its list price
(``SITE_PRICES``, illustrative USD per GPU-hour), summed.

Site choice (``ScenarioConfig.price_aware``): a third run replays the
residency trace with the sites' prices in the snapshot, so a job that several
lawful sites could start lands at the cheapest (docs/scheduler.md "Site
choice"); the first two runs choose by fit and free capacity only.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from rich.table import Table

from masnaa.domain import Cluster, Quota, Tenant
from masnaa.policy import (
    Dataset,
    EligibilityCache,
    GroundKind,
    SiteView,
    TransferGround,
    dataset,
)
from masnaa.policy.loader import load_rules
from masnaa.policy.rules import RuleSet
from masnaa.sim.engine import Engine
from masnaa.sim.metrics import summarize
from masnaa.sim.records import EngineConfig
from masnaa.sim.trace import Trace, TraceBuilder

SITES: tuple[tuple[str, str, int], ...] = (
    # name, country, nodes of 8 GPUs
    ("ma-1", "MA", 6),
    ("za-1", "ZA", 6),
    ("ng-1", "NG", 4),
    ("ke-1", "KE", 4),
    ("eg-1", "EG", 4),
)
DEMAND = {"MA": 0.2, "ZA": 0.15, "NG": 0.3, "KE": 0.25, "EG": 0.1}
"""Each country's share of the jobs: deliberately unlike its share of the GPUs, as when
a country's researchers have more data than its data centre has GPUs."""
SIZES = (1, 1, 2, 2, 4, 8, 8, 16)
SITE_PRICES = {"ma-1": 3.00, "za-1": 2.40, "ng-1": 2.80, "ke-1": 2.60, "eg-1": 2.20}
"""Illustrative list prices, USD per GPU-hour (energy and hosting differ by country): an
operator's rate cards take their place in the live service."""
NOW = datetime(2026, 11, 25, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    jobs: int = 2000
    bound_share: float = 0.6
    """Share of jobs that read data of their tenant's country."""
    load: float = 0.85
    """Offered GPU-seconds ÷ (GPUs × arrival span)."""
    grounds_share: float = 0.3
    """Share of datasets that hold a consent ground (a conditional transfer becomes lawful)."""
    mean_runtime: float = 3600.0
    seed: int = 7
    policy: str = "masnaa"
    price_aware: bool = False
    """Add a run that chooses among lawful sites by price (``SITE_PRICES``)."""


@dataclass(slots=True)
class RunNumbers:
    label: str
    utilisation: float
    wait_mean: float
    wait_p99: float
    finished: int
    stranded: int
    rejected: int
    site_load: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    """USD at ``SITE_PRICES`` for the GPU-hours run (whatever rule chose the sites)."""


@dataclass(slots=True)
class ScenarioResult:
    config: ScenarioConfig
    gpus: int
    bound_jobs: int
    lawful_sites: dict[str, int]
    """How many bound jobs may run at each site."""
    rules_version: str
    runs: list[RunNumbers]

    def as_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "gpus": self.gpus, "bound_jobs": self.bound_jobs,
                "lawful_sites": self.lawful_sites, "rules_version": self.rules_version,
                "runs": [asdict(r) for r in self.runs]}


def build_cluster() -> Cluster:
    parts = [Cluster.uniform(n, site=name, country=country, name_prefix=f"{name}-n")
             for name, country, n in SITES]
    return Cluster.merge(parts)


def _datasets(rules: RuleSet, rng: np.random.Generator, per_country: int
              ) -> dict[str, list[Dataset]]:
    """Per country, datasets of the classes its rules name: public, personal, health and
    its first strict-local class (from the rules file, not from code)."""
    out: dict[str, list[Dataset]] = {}
    for name, country, _ in SITES:
        rule = rules.countries.get(country)
        classes = ["public", "personal", "health"]
        if rule is not None and rule.strict_local_classes:
            classes.append(sorted(rule.strict_local_classes)[0])
        consent = next((c for c, kind in sorted(rules.condition_kinds.items())
                        if kind is GroundKind.CONSENT
                        and rule is not None and any(c in alt for alt in rule.conditions)), None)
        made = []
        for k in range(per_country):
            cls = classes[int(rng.integers(len(classes)))]
            grounds: tuple[TransferGround, ...] = ()
            if consent is not None and rng.random() < 0.3:
                grounds = (TransferGround(country, consent, GroundKind.CONSENT, f"C-{k}"),)
            made.append(dataset(f"{country.lower()}-{k}", jurisdiction=country, data_class=cls,
                                home_site=name, grounds=grounds))
        out[country] = made
    return out


def build_trace(cfg: ScenarioConfig, rules: RuleSet, cluster: Cluster
                ) -> tuple[Trace, Trace, dict[str, int], int]:
    """The workload twice: with each bound job's lawful sites, and without any constraint."""
    rng = np.random.default_rng(cfg.seed)
    data = _datasets(rules, rng, per_country=20)
    views = [SiteView(s.name, s.country) for s in cluster.sites]
    cache = EligibilityCache()
    countries = list(DEMAND)
    weights = np.array([DEMAND[c] for c in countries])
    sizes = np.array(SIZES)
    gpus = sizes[rng.integers(len(sizes), size=cfg.jobs)]
    runtime = rng.lognormal(np.log(cfg.mean_runtime) - 0.5, 1.0, size=cfg.jobs).clip(60, 86400)
    offered = float(np.sum(gpus * runtime))
    span = offered / (cfg.load * cluster.total_gpus)
    submit = np.sort(rng.uniform(0, span, size=cfg.jobs))
    country_of = rng.choice(len(countries), size=cfg.jobs, p=weights / weights.sum())
    bound = rng.random(cfg.jobs) < cfg.bound_share
    pick = rng.integers(20, size=cfg.jobs)
    lawful_count: Counter[str] = Counter()
    with_law, without = TraceBuilder("residency"), TraceBuilder("residency-free")
    for i in range(cfg.jobs):
        country = countries[int(country_of[i])]
        sites: tuple[str, ...] | None = None
        if bound[i]:
            d = data[country][int(pick[i])]
            lawful = cache.get([d], views, rules, NOW).lawful_sites
            lawful_count.update(lawful)
            sites = lawful if len(lawful) < len(views) else None
        row = {"submit": float(submit[i]), "runtime": float(runtime[i]), "gpus": int(gpus[i]),
               "tenant": f"t-{country.lower()}", "time_limit": float(runtime[i]) * 1.5,
               "job_id": str(i)}
        with_law.add(**row, sites=sites)  # type: ignore[arg-type]
        without.add(**row)  # type: ignore[arg-type]
    return with_law.build(), without.build(), dict(lawful_count), int(bound.sum())


class _SiteWatch(Engine):
    """The twin's engine, noting at which site each run started (for per-site load)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started_at: dict[str, str] = {}

    def _start(self, job_id: str, placement: Any, gpu_type: str, site: str, t: float) -> None:
        super()._start(job_id, placement, gpu_type, site, t)
        self.started_at[job_id] = site


def _tenancy(cluster: Cluster) -> tuple[tuple[Tenant, ...], tuple[Quota, ...]]:
    """One tenant per country, entitled to its share of the jobs; a quota per tenant and
    pool (its share of the pool, borrowing unlimited), as the twin's ``shape.tenancy``."""
    tenants = tuple(Tenant(f"t-{c.lower()}", country=c, share=w) for c, w in DEMAND.items())
    pools: Counter[tuple[str, str]] = Counter()
    for node in cluster.nodes:
        pools[(node.site, node.gpu_type)] += node.gpu_count
    quotas = tuple(Quota(t.name, site, gpu_type, math.floor(t.share * cap), None)
                   for t in tenants for (site, gpu_type), cap in sorted(pools.items()))
    return tenants, quotas


def _run(label: str, trace: Trace, cluster: Cluster, cfg: ScenarioConfig,
         prices: bool = False) -> RunNumbers:
    tenants, quotas = _tenancy(cluster)
    engine = _SiteWatch(trace, cluster, tenants, quotas,
                        EngineConfig(policy=cfg.policy, checkpoint_interval=None))
    if prices:
        gpu_types = {n.gpu_type for n in cluster.nodes}
        engine.snapshot = dataclasses.replace(engine.snapshot, site_prices={
            (site, t): p for site, p in SITE_PRICES.items() for t in gpu_types})
    result = engine.run()
    s = summarize(result)
    work = trace.work()
    capacity = Counter[str]()
    for node in cluster.nodes:
        capacity[node.site] += node.gpu_count
    used: dict[str, float] = {}
    for job_id, site in engine.started_at.items():
        i = int(job_id)
        used[site] = used.get(site, 0.0) + float(work[i]) * int(trace.gpus[i])
    makespan = float(s["makespan"]) or 1.0
    return RunNumbers(
        label=label, utilisation=float(s["utilisation"]),
        wait_mean=float(s["queueing_delay"]["mean"]), wait_p99=float(s["queueing_delay"]["p99"]),
        finished=int(s["jobs"]["finished"]), stranded=sum(s["jobs"]["stranded"].values()),
        rejected=sum(s["jobs"]["rejected"].values()),
        site_load={site.name: used.get(site.name, 0.0) / (capacity[site.name] * makespan)
                   for site in cluster.sites},
        cost=sum(SITE_PRICES[site] * gpu_seconds / 3600 for site, gpu_seconds in used.items()))


def run_scenario(cfg: ScenarioConfig, rules: RuleSet | None = None) -> ScenarioResult:
    rules = rules or load_rules()
    cluster = build_cluster()
    with_law, without, lawful, bound = build_trace(cfg, rules, cluster)
    return ScenarioResult(
        config=cfg, gpus=cluster.total_gpus, bound_jobs=bound, lawful_sites=lawful,
        rules_version=rules.version,
        runs=[_run("with residency", with_law, cluster, cfg),
              _run("without residency", without, cluster, cfg)]
        + ([_run("residency, by price", with_law, cluster, cfg, prices=True)]
           if cfg.price_aware else []))


def render(r: ScenarioResult) -> tuple[str, Table, str]:
    """The scenario for a terminal: what was run, a table of the runs (Rich fits it to
    the terminal's width), and what the site columns and costs mean."""
    c = r.config
    head = (
        f"Five sites, {r.gpus} GPUs; {c.jobs} jobs (seed {c.seed}, load {c.load}), "
        f"{r.bound_jobs} read country-bound data (rules {r.rules_version}).\n"
        "Bound jobs lawful per site: "
        + ", ".join(f"{s} {r.lawful_sites.get(s, 0)}" for s, _, _ in SITES)
    )
    # Runs side by side, a row per figure (as ``masnaa sim``): three runs fit 80 columns,
    # eleven figures across do not.
    table = Table()
    table.add_column("", style="bold")
    for run in r.runs:
        table.add_column(run.label, justify="right")
    rows: list[tuple[str, Any]] = [
        ("utilisation", lambda run: f"{run.utilisation:.1%}"),
        ("wait mean", lambda run: f"{run.wait_mean / 60:.1f} min"),
        ("wait p99", lambda run: f"{run.wait_p99 / 3600:.2f} h"),
        ("finished", lambda run: f"{run.finished:,}"),
        *((f"load of {s}", lambda run, s=s: f"{run.site_load[s]:.0%}") for s, _, _ in SITES),
        ("cost USD", lambda run: f"{run.cost:,.0f}"),
    ]
    for name, cell in rows:
        table.add_row(name, *(cell(run) for run in r.runs))
    foot = ("A site's load: GPU-time run there ÷ its GPU-time. Cost at list "
            "prices " + ", ".join(f"{s} {p:.2f}" for s, p in SITE_PRICES.items())
            + " USD per GPU-hour.")
    return head, table, foot
