"""Accounting verbs of the ``masnaa`` command: ``alloc``, ``burn`` and ``statement``.

- ``masnaa alloc request|list|show|review|award|tranche|supplement|extend|close|
  exchange|member|progress``:
  the allocation lifecycle (``/api/v1/allocations``); ``masnaa alloc
  request-supplement ID``: a member asks for more GPU-time on a live
  allocation (reviewed, then granted with ``award``); ``masnaa alloc report``:
  the funders' report (or, with ``--operator 2026-11``, the operator report);
- ``masnaa burn [--project P]``: per allocation, the balance, the daily
  burn-down and the projected exhaustion date (``/api/v1/accounting/usage``).
  It is not called ``usage`` because ``masnaa usage`` already reports
  GPU-hours per project from the jobs (``cli.jobs``);
- ``masnaa statement --tenant T --period 2026-11 [--format json|csv|html]``.

GPU-hours per pool are written ``SITE:GPU_TYPE=HOURS``, e.g.
``ma-1:h100-sxm-80gb=500``. Errors print the API's sentence and code (exit 1).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from masnaa.cli.jobs import api, fail, out
from masnaa.client import MasnaaClient, MasnaaError

alloc = typer.Typer(help="Allocations: request, review, award and inspect.", no_args_is_help=True)

Pools = Annotated[
    list[str] | None,
    typer.Option("--gpu-hours", "-g", help="SITE:GPU_TYPE=HOURS (repeat for several pools)."),
]
Credits = Annotated[str, typer.Option("--credits", help="Abstract credits (exchanged later).")]


def parse_pools(pools: list[str] | None) -> list[dict[str, str]]:
    rows = []
    for text in pools or []:
        where, _, hours = text.partition("=")
        site, _, gpu = where.partition(":")
        if not (site and gpu and hours):
            raise typer.BadParameter(f"{text!r}: write SITE:GPU_TYPE=HOURS, e.g. ma-1:h100=500")
        rows.append({"site": site, "gpu_type": gpu, "hours": hours})
    return rows


def _print_allocation(a: dict[str, Any]) -> None:
    out.print(
        f"[bold]{a['id']}[/bold]  {a['project']}  tier {a['tier']}  [bold]{a['state']}[/bold]"
    )
    out.print(f"  {a['start']} → {a['expires']}   PI {next(iter(a['members']), '-')}")
    out.print(
        f"  balance {a['balance_gpu_hours']} GPU-h   burn {a['burn_gpu_hours_per_day']} GPU-h/day"
        f"   projected exhaustion {a['projected_exhaustion'] or '-'}"
    )
    out.print(
        f"  tranches {a['tranches']['released']}/{a['tranches']['total']}"
        f"   supplements {a['supplements']}"
    )
    for p in a["remaining"]:
        out.print(f"  {p['site']}:{p['gpu_type']}  left {p['gpu_hours']} GPU-h")
    if a.get("renewal_of"):
        out.print(f"  renewal of {a['renewal_of']}")
    if a.get("supplement_of"):
        out.print(f"  supplement request for {a['supplement_of']}")
    if a.get("rejection"):
        why = a["rejection"]
        out.print(f"  rejected at step {why['step']}: {why['reason'] or '(no reason given)'}")
    if a.get("reviews"):
        for r in a["reviews"]:
            verdict = "approved" if r["approve"] else "rejected"
            out.print(f"  review {r['step']}: {verdict} by {r['reviewer']}")


def _show(client: MasnaaClient, alloc_id: str) -> None:
    _print_allocation(client._call("GET", f"/allocations/{alloc_id}"))


@alloc.command("request")
def request(
    project: Annotated[str, typer.Option(help="Project (or tenant/project).")],
    tier: Annotated[str, typer.Option(help="Tier, e.g. gateway, innovator, open-call.")],
    justification: Annotated[str, typer.Option(help="What the GPU-time is for.")],
    gpu_hours: Pools = None,
    credits: Credits = "0",
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); today.")] = None,
    days: Annotated[int, typer.Option(help="Duration in days.")] = 90,
    renewal_of: Annotated[str | None, typer.Option(
        "--renewal-of", metavar="ALLOC_ID",
        help="Renew this allocation of the same project: the request is linked to it, so "
        "reviewers see its record. It must have been awarded (awarded, active, exhausted "
        "or expired); one still in review cannot be renewed.")] = None,
) -> None:
    """Request an allocation (you become its PI), or with --renewal-of a renewal."""
    body: dict[str, Any] = {
        "project": project,
        "tier": tier,
        "gpu_hours": parse_pools(gpu_hours),
        "credits": credits,
        "start": start or date.today().isoformat(),
        "duration_days": days,
        "justification": justification,
    }
    if renewal_of is not None:
        body["renewal_of"] = renewal_of
    with api() as client:
        _print_allocation(client._call("POST", "/allocations", json=body))


@alloc.command("list")
def list_(project: Annotated[str | None, typer.Option(help="Only this project.")] = None) -> None:
    """Allocations you can see, with their balances."""
    with api() as client:
        rows = client._call("GET", "/allocations", params={"project": project} if project else None)
    table = Table(box=None, header_style="bold")
    for col in ("ID", "PROJECT", "TIER", "STATE", "EXPIRES", "BALANCE GPU-H", "EXHAUSTS"):
        table.add_column(col)
    for a in rows:
        table.add_row(
            a["id"],
            a["project"],
            a["tier"],
            a["state"],
            a["expires"],
            a["balance_gpu_hours"],
            a["projected_exhaustion"] or "-",
        )
    out.print(table if rows else "no allocations")


@alloc.command("show")
def show(alloc_id: str) -> None:
    """One allocation: balance, tranches, remaining per pool (reviews for reviewers)."""
    with api() as client:
        _show(client, alloc_id)


@alloc.command("review")
def review(
    alloc_id: str,
    step: Annotated[str, typer.Option(help="admin-check, technical or merit.")],
    approve: Annotated[bool, typer.Option("--approve/--reject", help="The verdict.")] = True,
    comment: Annotated[str, typer.Option(help="What the applicant reads with it.")] = "",
) -> None:
    """Review the current step of a request (reviewers)."""
    with api() as client:
        _print_allocation(
            client._call(
                "POST",
                f"/allocations/{alloc_id}/reviews",
                json={"step": step, "approve": approve, "comment": comment},
            )
        )


@alloc.command("award")
def award(
    alloc_id: str,
    gpu_hours: Pools = None,
    credits: Annotated[
        str | None, typer.Option("--credits", help="Abstract credits (exchanged later).")
    ] = None,
) -> None:
    """Award an approved request: what it asked for, or the -g/--credits given
    (the award may differ from the request; operators).

    For an approved supplement request, this grants it: the GPU-time is added to the
    allocation it names."""
    body: dict[str, Any] = {}
    if gpu_hours:
        body["gpu_hours"] = parse_pools(gpu_hours)
    if credits is not None:
        body["credits"] = credits
    with api() as client:
        _print_allocation(client._call("POST", f"/allocations/{alloc_id}/award", json=body))


@alloc.command("supplement")
def supplement(alloc_id: str, gpu_hours: Pools = None, credits: Credits = "0") -> None:
    """Add a supplement directly, without a request (operators)."""
    with api() as client:
        _print_allocation(
            client._call(
                "POST",
                f"/allocations/{alloc_id}/supplements",
                json={"gpu_hours": parse_pools(gpu_hours), "credits": credits},
            )
        )


@alloc.command("request-supplement")
def request_supplement(
    alloc_id: str,
    justification: Annotated[str, typer.Option(help="Why more GPU-time is needed.")],
    gpu_hours: Pools = None,
    credits: Credits = "0",
) -> None:
    """Ask for a supplement to a live allocation you are a member of (reviewed like a request)."""
    body = {"gpu_hours": parse_pools(gpu_hours), "credits": credits, "justification": justification}
    with api() as client:
        _print_allocation(
            client._call("POST", f"/allocations/{alloc_id}/supplement-requests", json=body)
        )


@alloc.command("tranche")
def tranche(alloc_id: str) -> None:
    """Release the next tranche (operators; may need a progress report first)."""
    with api() as client:
        _print_allocation(client._call("POST", f"/allocations/{alloc_id}/tranches"))


@alloc.command("progress")
def progress(
    alloc_id: str,
    text: Annotated[str, typer.Option(help="What was done with the GPU-time.")],
    product: Annotated[list[str] | None, typer.Option(help="A DOI or other product.")] = None,
) -> None:
    """File a progress report (PI, co-PI, manager)."""
    with api() as client:
        _print_allocation(
            client._call(
                "POST",
                f"/allocations/{alloc_id}/reports",
                json={"text": text, "products": product or []},
            )
        )


@alloc.command("extend")
def extend(
    alloc_id: str, expires: Annotated[str, typer.Option(help="New expiry, YYYY-MM-DD.")]
) -> None:
    """Extend the expiry (operators; capped by the tier)."""
    with api() as client:
        _print_allocation(
            client._call("POST", f"/allocations/{alloc_id}/extension", json={"expires": expires})
        )


@alloc.command("close")
def close(
    alloc_id: str,
    reason: Annotated[str, typer.Option(help="Why, for its history.")] = "closed",
) -> None:
    """Close an allocation (PI or operator)."""
    with api() as client:
        _print_allocation(
            client._call("POST", f"/allocations/{alloc_id}/close", json={"reason": reason})
        )


@alloc.command("exchange")
def exchange(
    alloc_id: str,
    credits: Annotated[str, typer.Option(help="Credits to exchange.")],
    pool: Annotated[str, typer.Option(help="SITE:GPU_TYPE to receive GPU-hours in.")],
) -> None:
    """Exchange released credits for GPU-hours of a pool at the operator's rate."""
    site, _, gpu = pool.partition(":")
    body = {"credits": credits, "site": site, "gpu_type": gpu}
    with api() as client:
        _print_allocation(client._call("POST", f"/allocations/{alloc_id}/exchange", json=body))


@alloc.command("member")
def member(
    alloc_id: str,
    user: Annotated[str, typer.Option(help="Who joins it.")],
    role: Annotated[str, typer.Option(help="co-pi, allocation-manager or member.")] = "member",
) -> None:
    """Add a co-PI, allocation manager or member."""
    with api() as client:
        _print_allocation(
            client._call(
                "POST", f"/allocations/{alloc_id}/members", json={"user": user, "role": role}
            )
        )


@alloc.command("report")
def report(
    programme: Annotated[str, typer.Option(help="Funders' report of this programme.")] = "research",
    operator: Annotated[
        str | None, typer.Option("--operator", help="Operator report of this month instead.")
    ] = None,
) -> None:
    """Funders' report (awarded, used, lapsed, burn, projected exhaustion) or operator report
    (revenue and utilisation by site, GPU type and tenant kind), as CSV (operators)."""
    with api() as client:
        if operator is not None:
            params = {"period": operator, "format": "csv"}
            response = client._http.get("/reports/operator", params=params)
        else:
            params = {"programme": programme, "format": "csv"}
            response = client._http.get("/reports/funders", params=params)
        _raise_for(response)
    print(response.text, end="")


def _raise_for(response: Any) -> None:
    if response.status_code < 400:
        return
    try:
        e = response.json()["error"]
    except (ValueError, KeyError):
        fail(response.text[:500], f"http-{response.status_code}")
    raise MasnaaError(e["code"], e["message"], response.status_code, e.get("field"))


def burn(
    project: Annotated[str | None, typer.Option(help="Only this project.")] = None,
    days: Annotated[int, typer.Option(help="Days of burn-down to draw.")] = 14,
) -> None:
    """Allocation burn-down: balance, GPU-hours per day, projected exhaustion."""
    with api() as client:
        got = client._call(
            "GET", "/accounting/usage", params={"project": project} if project else None
        )
    if not got["allocations"]:
        out.print("no allocations")
    for a in got["allocations"]:
        _print_allocation(a)
        series = a.get("burn_down", [])[-days:]
        top = max((p["remaining_gpu_seconds"] for p in series), default=0) or 1
        for p in series:
            left = max(0, p["remaining_gpu_seconds"])
            bar = "█" * round(30 * left / top)
            out.print(f"    {p['day']}  {bar:<30} {left / 3600:.1f} GPU-h left")


def statement(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    period: Annotated[str, typer.Option(help="A month, e.g. 2026-11.")],
    format: Annotated[str, typer.Option(help="json, csv or html.")] = "csv",
    locale: Annotated[str, typer.Option(help="en, fr or ar (html).")] = "en",
) -> None:
    """A tenant's statement for a month, printed to stdout."""
    with api() as client:
        response = client._http.get(
            f"/statements/{tenant}",
            params={"period": period, "format": format, "locale": locale},
        )
        _raise_for(response)
    if format == "json":
        out.print_json(json.dumps(response.json()))
    else:
        print(response.text)


def register(app: typer.Typer) -> None:
    app.add_typer(alloc, name="alloc")
    app.command("burn")(burn)
    app.command("statement")(statement)
