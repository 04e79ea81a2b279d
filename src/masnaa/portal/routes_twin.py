"""``/ops/twin``: run a digital-twin comparison of policies and see its charts (operators).

The page drives ``masnaa.sim.compare`` — the same code as ``masnaa sim`` —
on a seeded synthetic workload. Same parameters, same result: the form is a
plain GET, so a comparison is a link an operator can share. Nothing is
stored. The run is bounded (``MAX_JOBS`` jobs, ``MAX_REPLAYS`` replays, the
non-oracle policies plus ``srtf-oracle`` as a bound, ``MAX_JOB_REPLAYS``) so a
page answers in well under a minute (``docs/portal.md`` gives measured times);
larger studies belong to ``masnaa sim`` on the command line.

With more than one replay (``masnaa sim --repeat``), the workload is replayed
again with submissions moved by up to a minute, and a third table gives each
policy's key figures as a mean and a range: a difference between policies smaller
than that range is noise. The per-tenant table then gives each tenant's ranges too
(``spread.tenants``); the charts and the per-policy table show the first replay.
The result's tables have ids of their own (``twin-*``): the form's fields use ``t-*``.

Charts are inline SVG drawn on the server (``portal.charts``): utilisation
over virtual time and the distribution of job completion times; the table
below them holds the same numbers, and a second one each tenant's mean JCT and
fair ratio under each policy (``masnaa sim --by-tenant``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from masnaa.portal.charts import Series, line_chart
from masnaa.portal.i18n import Lang
from masnaa.portal.web import PageDep, PortalRoute
from masnaa.scheduler import POLICIES
from masnaa.sim.report import range_cell, tenant_rows

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
MAX_JOBS = 5000
MAX_REPLAYS = 3
MAX_JOB_REPLAYS = 2 * MAX_JOBS
"""Jobs × replays a page may ask for: a comparison of all four policies replays 5,000
jobs in about 18 s on a 2-vCPU machine, and each replay costs as much again."""
DEFAULT_POLICIES = ("masnaa", "fifo-backfill", "las")
PORTAL_TWIN_GPUS = 256
"""The factory a page's workload is made for (its largest gang); the cluster replayed
is sized for the form's load, and never smaller than the largest job."""


@dataclass(frozen=True, slots=True)
class TwinForm:
    jobs: int
    seed: int
    tenants: int
    load: float
    policies: tuple[str, ...]
    replays: int = 1


def run_twin(form: TwinForm) -> dict[str, Any]:
    from masnaa.sim.compare import compare
    from masnaa.sim.loaders import TraceSource, load_trace
    from masnaa.sim.records import EngineConfig
    from masnaa.sim.shape import size_for

    source = TraceSource(seed=form.seed, jobs=form.jobs, capacity_gpus=PORTAL_TWIN_GPUS,
                         target_load=form.load, tenants=form.tenants)
    trace = load_trace("synthetic", source)
    sizing = size_for(trace, load=form.load)
    return compare(trace, list(form.policies), sizing, EngineConfig(), repeats=form.replays)


def charts(doc: dict[str, Any], lang: Lang) -> list[Any]:
    policies = doc["policies"]
    hours = lambda v: lang.number(v / 3600, 1)  # noqa: E731
    utilisation = [
        Series(p["label"], [
            (i * p["series"]["bin_seconds"], u) for i, u in enumerate(p["series"]["utilisation"])
        ])
        for p in policies
    ]
    cdf = []
    for p in policies:
        q = p["series"]["jct_quantiles"]
        cdf.append(Series(p["label"], [(v, i / (len(q) - 1)) for i, v in enumerate(q)]))
    def short_hours(v: float) -> str:
        h = v / 3600
        return lang.number(h, 2 if h < 1 else 1 if h < 10 else 0)

    titles = (
        lang.gettext("GPU utilisation over time (hours)"),
        lang.gettext("Share of jobs finished within a time (hours, log)"),
    )
    return [
        (titles[0], line_chart(utilisation, title=titles[0], fmt_x=hours, fmt_y=lang.percent,
                               y_max=1.0)),
        (titles[1], line_chart(cdf, title=titles[1], fmt_x=short_hours, fmt_y=lang.percent,
                               log_x=True, y_max=1.0)),
    ]


def _read(raw: str, kind: type, lo: float, hi: float) -> Any:
    """A number typed in the form, or ``None`` when it is not one in [lo, hi]."""
    try:
        value = kind(raw.strip().replace(",", "."))
    except ValueError:
        return None
    return value if lo <= value <= hi else None


@router.get("/ops/twin")
async def twin(
    page: PageDep,
    jobs: Annotated[str, Query(max_length=64)] = "2000",
    seed: Annotated[str, Query(max_length=64)] = "0",
    tenants: Annotated[str, Query(max_length=64)] = "6",
    load: Annotated[str, Query(max_length=64)] = "0.9",
    replays: Annotated[str, Query(max_length=64)] = "1",
    policy: Annotated[list[str] | None, Query(max_length=len(POLICIES))] = None,
    run: bool = False,
) -> Response:
    page.operator()
    values = {"jobs": jobs, "seed": seed, "tenants": tenants, "load": load, "replays": replays}
    bounds: dict[str, tuple[int | float, int | float]] = {
        "jobs": (100, MAX_JOBS), "seed": (0, 2**31), "tenants": (1, 50), "load": (0.1, 2.0),
        "replays": (1, MAX_REPLAYS),
    }
    parsed = {
        name: _read(values[name], float if name == "load" else int, lo, hi)
        for name, (lo, hi) in bounds.items()
    }
    errors = {
        name: page._("Enter a number from %(lo)s to %(hi)s.", lo=page.lang.number(lo, 1 if
                     name == "load" else 0), hi=page.lang.number(hi, 1 if name == "load" else 0))
        for name, (lo, hi) in bounds.items()
        if parsed[name] is None
    }
    if not errors and parsed["jobs"] * parsed["replays"] > MAX_JOB_REPLAYS:
        most = MAX_JOB_REPLAYS // parsed["jobs"]
        errors["replays"] = page._(
            "With %(jobs)s jobs, at most %(n)s replays: fewer jobs allow more.",
            jobs=page.lang.number(parsed["jobs"]), n=page.lang.number(most),
        )
    # Checkboxes name each policy once; a hand-made URL may repeat one. With every box
    # unticked the form sends none: asked to run, that is an error, not the defaults.
    chosen = tuple(dict.fromkeys(p for p in policy or () if p in POLICIES))
    if not run and not policy:
        chosen = DEFAULT_POLICIES
    elif not chosen:
        errors["policy"] = page._("Choose at least one policy.")
    doc = None
    if run and not errors:
        form = TwinForm(parsed["jobs"], parsed["seed"], parsed["tenants"], parsed["load"], chosen,
                        parsed["replays"])
        doc = await run_in_threadpool(run_twin, form)
    return page.render(
        "ops_twin.html",
        status=422 if errors else 200,
        values=values,
        errors=errors,
        chosen=chosen,
        all_policies=sorted(POLICIES),
        oracle={name: bool(getattr(cls, "oracle", False)) for name, cls in POLICIES.items()},
        doc=doc,
        charts=charts(doc, page.lang) if doc else [],
        tenants=tenant_rows(doc) if doc else [],
        spread=spread_rows(doc, page.lang) if doc else [],
        tenant_spread=tenant_spread_cells(doc, page.lang) if doc else {},
        max_replays=MAX_REPLAYS,
    )


def spread_rows(doc: dict[str, Any], lang: Lang) -> list[tuple[str, list[str]]]:
    """Per policy, the cells of the replays table: its mean JCT, p99 wait, utilisation
    and Jain's index over the replays, each ``mean (min – max)`` (none for one replay)."""
    spread = doc.get("spread")
    if spread is None:
        return []
    hours, jain = _hours(lang), lambda v: lang.number(v, 3)
    columns = (("jct_mean", hours), ("queueing_p99", hours), ("utilisation", lang.percent),
               ("jain", jain))
    return [
        (label, [range_cell(figures[name], fmt) for name, fmt in columns])
        for label, figures in spread["policies"].items()
    ]


def tenant_spread_cells(doc: dict[str, Any], lang: Lang) -> dict[str, list[str]]:
    """Per tenant, a cell per policy: its mean JCT over the replays, their range, and
    its mean fair ratio (none for one replay)."""
    spread = doc.get("spread")
    if spread is None:
        return {}
    hours = _hours(lang)
    out: dict[str, list[str]] = {}
    for p in doc["policies"]:
        for name, r in spread["tenants"][p["label"]].items():
            ratio = r["fair_ratio"]["mean"]
            share = "—" if ratio is None else lang.percent(ratio)
            jct = r["jct_mean"]
            cell = "—" if jct["mean"] is None else f"{range_cell(jct, hours)}, {share}"
            out.setdefault(name, []).append(cell)
    return out


def _hours(lang: Lang) -> Callable[[float], str]:
    """Seconds written as hours with two decimals, as the page's tables give them."""
    return lambda v: lang.number(v / 3600, 2)
