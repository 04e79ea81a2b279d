"""Residency verbs of the ``masnaa`` command: data, artifacts, sites, audit, regulators.

``masnaa data register|list|show|grant|serving-copy|audit-verify|audit-export``,
``masnaa artifact register|list|download``, ``masnaa site-state SITE STATE``,
``masnaa regulator-report --country KE --since --until`` (all through the API,
with the credentials of ``masnaa jobs``), and ``masnaa sim-residency`` (the
multi-site twin scenario, offline). Errors print the API's sentence (which
names the rule, the law and the remedy for a residency refusal) and exit 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from masnaa.cli.jobs import JsonFlag, api, fail, out

data_app = typer.Typer(name="data", help="Register datasets and their transfer grounds.",
                       no_args_is_help=True)
artifact_app = typer.Typer(name="artifact", help="Outputs of jobs and their downloads.",
                           no_args_is_help=True)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    with api() as client:
        return client._call(method, path, **kwargs)


def _print_data(d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(d))
        return
    out.print(f"{d['id']}  {d['kind']} {d['name']!r} of {d['tenant']} (v{d['version']})",
              markup=False)
    out.print(f"  home site:     {d['home_site']}", markup=False)
    out.print(f"  jurisdictions: {', '.join(d['jurisdictions'])}", markup=False)
    out.print(f"  classes:       {', '.join(d['classes'])} (strictest {d['strictest_class']})",
              markup=False)
    if d["derived_from"]:
        out.print(f"  derived from:  {', '.join(d['derived_from'])} (job {d['job_id']})",
                  markup=False)
    if d["serving_copy_countries"]:
        out.print(f"  serving copy:  {', '.join(d['serving_copy_countries'])}", markup=False)
    for g in d["grounds"]:
        dest = ",".join(g["destinations"]) if g["destinations"] else "any"
        out.print(f"  ground:        {g['country']} {g['condition']} ({g['kind']}"
                  f"{', ' + g['reference'] if g['reference'] else ''}) to {dest}", markup=False)
    if d.get("note"):
        out.print(f"  note:          {d['note']}", markup=False)


@data_app.command("register")
def register_data(
    name: Annotated[str, typer.Argument(help="A name for the dataset.")],
    home_site: Annotated[str, typer.Option("--site", help="Where it is stored.")],
    data_class: Annotated[str, typer.Option("--class", help="personal, health, public, ...")],
    jurisdiction: Annotated[str | None, typer.Option(
        "--jurisdiction", help="Country whose law governs it (default: the site's).")] = None,
    owner: Annotated[str | None, typer.Option(
        "--owner", help="Who answers for it (default: yourself).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Operators: its tenant.")] = None,
    serving_copy: Annotated[list[str], typer.Option(
        "--serving-copy", help="Country where a serving copy stays (repeatable).")] = [],  # noqa: B006
    uri: Annotated[str, typer.Option("--uri", help="Where the bytes are.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register a dataset: masnaa data register clinic --site ke-1 --class health_care"""
    body: dict[str, Any] = {"name": name, "home_site": home_site, "data_class": data_class,
                            "serving_copy_countries": serving_copy, "uri": uri}
    for k, v in (("jurisdiction", jurisdiction), ("owner", owner), ("tenant", tenant)):
        if v is not None:
            body[k] = v
    _print_data(_call("POST", "/datasets", json=body), as_json)


@data_app.command("list")
def list_cmd(as_json: JsonFlag = False) -> None:
    """Datasets you can see."""
    rows = _call("GET", "/datasets")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for d in rows:
        out.print(f"{d['id']}  {d['name']:<24} {','.join(d['jurisdictions']):<6} "
                  f"{d['strictest_class']:<20} {d['home_site']:<8} v{d['version']}",
                  markup=False)


@data_app.command("show")
def show(data_id: str, as_json: JsonFlag = False) -> None:
    """One dataset or artifact, with its grounds."""
    _print_data(_call("GET", f"/datasets/{data_id}"), as_json)


@data_app.command("grant")
def grant(
    data_id: str,
    country: Annotated[str, typer.Option("--country", help="Jurisdiction it moves data out of.")],
    condition: Annotated[str, typer.Option("--condition", help="e.g. express_consent")],
    kind: Annotated[str, typer.Option("--kind", help="consent, authorisation, contract, ...")],
    reference: Annotated[str | None, typer.Option(
        "--reference", help="The document's number or link, for the auditor.")] = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="ISO time with zone, e.g. 2027-03-31T00:00:00Z")] = None,
    to: Annotated[list[str], typer.Option("--to", help="Destination country (repeatable).")] = [],  # noqa: B006
    as_json: JsonFlag = False,
) -> None:
    """Record a transfer ground (consent, a regulator's authorisation, a contract)."""
    body: dict[str, Any] = {"country": country, "condition": condition, "kind": kind,
                            "reference": reference, "expires": expires,
                            "destinations": to or None}
    _print_data(_call("POST", f"/datasets/{data_id}/grounds", json=body), as_json)


@data_app.command("serving-copy")
def serving_copy_cmd(data_id: str, country: str) -> None:
    """Record that a serving copy of the data stays in COUNTRY."""
    _print_data(_call("POST", f"/datasets/{data_id}/serving-copies",
                      json={"country": country}), False)


@data_app.command("audit-verify")
def audit_verify() -> None:
    """Verify the audit chain in the factory's database (operators)."""
    v = _call("GET", "/audit/verify")
    if v["ok"]:
        head = v["head"]
        tail = f"; head seq {head['seq']} hash {head['hash']}" if head else ""
        out.print(f"ok: {v['checked']} records, chain intact{tail}", markup=False)
        return
    fail(f"BROKEN ({v['reason']}): {v['message']}", "audit-broken")


@data_app.command("audit-export")
def audit_export(file: Annotated[Path, typer.Argument(help="Where to write the JSON lines.")]
                 ) -> None:
    """Write the audit chain to FILE; check it offline with `masnaa audit verify FILE`."""
    with api() as client:
        response = client._http.get("/audit/export")
    if response.status_code >= 400:
        fail(response.text[:500], f"http-{response.status_code}")
    file.write_bytes(response.content)
    lines = response.content.count(b"\n")
    out.print(f"wrote {lines} records to {file}", markup=False)


@artifact_app.command("register")
def artifact_register(
    job_id: str,
    name: Annotated[str, typer.Argument(help="A name for the output.")],
    uri: Annotated[str, typer.Option("--uri", help="Where the output lies.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register an output of JOB: it keeps every class and jurisdiction of the job's data."""
    _print_data(_call("POST", f"/jobs/{job_id}/artifacts", json={"name": name, "uri": uri}),
                as_json)


@artifact_app.command("list")
def artifact_list(as_json: JsonFlag = False) -> None:
    """Artifacts you can see."""
    rows = _call("GET", "/artifacts")
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for d in rows:
        out.print(f"{d['id']}  {d['name']:<24} {','.join(d['jurisdictions']):<8} "
                  f"{d['strictest_class']:<20} from {','.join(d['derived_from'])}",
                  markup=False)


@artifact_app.command("download")
def artifact_download(
    artifact_id: str,
    destination: Annotated[str, typer.Option("--to", help="Country it would go to.")],
    person_country: Annotated[str | None, typer.Option(
        "--from", help="Country you access it from.")] = None,
) -> None:
    """Ask to download an artifact to a country: refused (with the rule) where its law says no."""
    params = {"destination": destination}
    if person_country:
        params["person_country"] = person_country
    d = _call("GET", f"/artifacts/{artifact_id}/download", params=params)
    out.print(f"allowed: {d['artifact']} to {d['destination']} ({d['legal_basis']}); "
              f"uri {d['uri'] or '-'}; audit seq {d['audit_seq']}", markup=False)


def site_state(
    site: str,
    state: Annotated[str, typer.Argument(help="up, drained or unreachable")],
    reason: Annotated[str, typer.Option(
        "--reason", help="Why, for the site's history and the audit log.")] = "",
    evacuate: Annotated[bool | None, typer.Option(
        "--evacuate/--no-evacuate", " /--let-finish",
        help="With 'drained': move the running jobs (the default) or let them finish.")] = None,
) -> None:
    """Drain a site, mark it unreachable, or bring it back up (operators)."""
    body: dict[str, object] = {"state": state, "reason": reason}
    if evacuate is not None:
        body["evacuate"] = evacuate
    s = _call("POST", f"/sites/{site}/state", json=body)
    why = f" ({s['reason']})" if s["reason"] else ""
    out.print(f"{s['name']} ({s['country']}): {s['state']}{why}", markup=False)
    if s.get("evacuated"):
        out.print(f"asked to move: {', '.join(s['evacuated'])}", markup=False)


def regulator_report(
    country: Annotated[str, typer.Option("--country", help="ISO country code, e.g. KE")],
    since: Annotated[str, typer.Option("--since", help="ISO date/time, e.g. 2026-11-01")],
    until: Annotated[str, typer.Option("--until", help="ISO date/time (excluded)")],
    format: Annotated[str, typer.Option("--format", help="json or csv")] = "json",
) -> None:
    """Which jobs touched a country's data in a period, where, on which grounds (operators)."""
    params = {"country": country, "since": _zoned(since), "until": _zoned(until),
              "format": format}
    with api() as client:
        response = client._http.get("/regulator-report", params=params)
    if response.status_code >= 400:
        try:
            e = response.json()["error"]
            fail(e["message"], e["code"])
        except (ValueError, KeyError):
            fail(response.text[:500], f"http-{response.status_code}")
    typer.echo(response.text, nl=False)


def _zoned(text: str) -> str:
    """A date or time without a zone is read as UTC."""
    if len(text) == 10:
        return f"{text}T00:00:00Z"
    if text.endswith("Z") or "+" in text[10:] or text[10:].count("-"):
        return text
    return text + "Z"


SIM_MAX_JOBS = 1_000_000
"""The workload is drawn in memory and replayed two or three times: 5,000 jobs took 7 s
on the shared 2-vCPU machine (2026-11-28), so a million is already most of an hour, and
far above it numpy refuses the arrays ("Maximum allowed dimension exceeded")."""
SIM_MIN_LOAD = 0.001
"""Arrivals spread over offered GPU-time ÷ (load × GPUs): far below this the span
overflows a float (OverflowError), and a factory idle 99.9 % of the time shows nothing."""


def _scenario_option_errors(*, jobs: int, share: float, seed: int, load: float) -> list[str]:
    """What is wrong with sim-residency's numbers, one sentence each (nan and inf fail
    every comparison below, so each is refused as not being in its range)."""
    wrong = []
    if not 1 <= jobs <= SIM_MAX_JOBS:
        wrong.append(f"--jobs is between 1 and {SIM_MAX_JOBS:,} (got {jobs})")
    if not 0 <= share <= 1:
        wrong.append(f"--share is between 0 and 1 (got {share})")
    if seed < 0:
        wrong.append(f"--seed is 0 or more (got {seed})")
    if not (math.isfinite(load) and load >= SIM_MIN_LOAD):
        wrong.append(f"--load is a finite number of at least {SIM_MIN_LOAD:g} (got {load})")
    return wrong


def sim_residency(
    jobs: Annotated[int, typer.Option(
        "--jobs", help="Jobs in the workload (1 to 1,000,000).")] = 1000,
    share: Annotated[float, typer.Option(
        "--share", help="Share of jobs that read country-bound data (0 to 1).")] = 0.6,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the workload (0 or more).")] = 7,
    load: Annotated[float, typer.Option(
        "--load", help="Offered load of the factory (at least 0.001).")] = 0.85,
    policy: Annotated[str, typer.Option("--policy", help="Scheduling policy.")] = "masnaa",
    as_json: JsonFlag = False,
    prices: Annotated[bool, typer.Option(
        "--prices", help="Add a run that chooses among lawful sites by price.")] = False,
) -> None:
    """The cost of residency on five sites: utilisation and wait with and without it (offline)."""
    from masnaa.scheduler import POLICIES
    from masnaa.sim.residency_scenario import ScenarioConfig, render, run_scenario

    if policy not in POLICIES:
        fail(f"unknown policy {policy!r}: use one of {', '.join(sorted(POLICIES))}",
             "unknown-policy")
    wrong = _scenario_option_errors(jobs=jobs, share=share, seed=seed, load=load)
    if wrong:
        fail("; ".join(wrong), "invalid-option")
    result = run_scenario(ScenarioConfig(jobs=jobs, bound_share=share, seed=seed, load=load,
                                         policy=policy, price_aware=prices))
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        from rich.console import Console

        console = Console()
        head, table, foot = render(result)
        console.print(head, highlight=False)
        console.print(table)
        console.print(foot, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app)
    app.add_typer(artifact_app)
    app.command("site-state")(site_state)
    app.command("regulator-report")(regulator_report)
    app.command("sim-residency")(sim_residency)

