"""``masnaa admin``: tenants, projects, users, tokens, nodes and quotas.

Each resource is a sub-command with ``list`` and the changes its role allows
(the API enforces who may do what; these verbs only ask). Tables by default,
``--json`` for scripts.
"""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from masnaa.cli.jobs import JsonFlag, ago, api, fail, out, parse_duration
from masnaa.client import MasnaaError

admin = typer.Typer(help="Administer tenants, projects, users, tokens, nodes and quotas.",
                    no_args_is_help=True)
tenants = typer.Typer(help="Organisations using the factory.", no_args_is_help=True)
projects = typer.Typer(help="Projects of a tenant (jobs are charged to one).", no_args_is_help=True)
users = typer.Typer(help="People and their roles.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens (shown once, hashed at rest).", no_args_is_help=True)
nodes = typer.Typer(help="Nodes of the factory; drain and undrain.", no_args_is_help=True)
quotas = typer.Typer(help="Guaranteed GPUs per tenant, site and GPU type.", no_args_is_help=True)
for _name, _sub in (
    ("tenants", tenants), ("projects", projects), ("users", users), ("tokens", tokens),
    ("nodes", nodes), ("quotas", quotas),
):
    admin.add_typer(_sub, name=_name)

TenantFilter = Annotated[str | None, typer.Option(help="Only this tenant's.")]
ReasonOption = Annotated[str, typer.Option(help="Why, for the node's history and the audit log.")]


def _print(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("none")
        return
    table = Table(box=None, header_style="bold")
    for col in columns:
        table.add_column(col.upper().replace("_", " "), overflow="fold")
    now = time.time()
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            if col.endswith("_at"):
                cells.append(ago(value, now))
            elif isinstance(value, dict):
                cells.append(", ".join(f"{k}={v}" for k, v in value.items()) or "-")
            elif isinstance(value, list):
                cells.append(",".join(str(v) for v in value) or "-")
            else:
                cells.append("-" if value is None or value == "" else str(value))
        table.add_row(*cells)
    out.print(table)


# --- tenants -----------------------------------------------------------------


@tenants.command("list")
def tenants_list(as_json: JsonFlag = False) -> None:
    """Tenants: their kind, home country and fair-share weight."""
    with api() as c:
        _print(c.tenants(), ["name", "kind", "country", "share", "created_at"], as_json)


@tenants.command("create")
def tenants_create(
    name: str,
    kind: Annotated[str, typer.Option(help="university, research-institute, startup, ...")] = (
        "university"
    ),
    country: Annotated[str, typer.Option(help="ISO 3166 alpha-2 home country.")] = "MA",
    share: Annotated[float, typer.Option(help="Fair-share weight.")] = 1.0,
) -> None:
    """Create a tenant (a university, institute or start-up that holds quotas)."""
    with api() as c:
        t = c.create_tenant(name, kind=kind, country=country.upper(), share=share)
    out.print(f"tenant {t['name']} created ({t['kind']}, {t['country']}, share {t['share']})")


# --- projects -------------------------------------------------------------------


@projects.command("list")
def projects_list(
    tenant: TenantFilter = None, as_json: JsonFlag = False
) -> None:
    """Projects, the unit jobs are charged to, per tenant."""
    with api() as c:
        _print(c.projects(tenant=tenant), ["tenant", "name", "created_at"], as_json)


@projects.command("create")
def projects_create(
    name: str,
    tenant: Annotated[str | None, typer.Option(help="Operators must name it.")] = None,
) -> None:
    """Create a project in a tenant (tenant admins: in their own)."""
    with api() as c:
        p = c.create_project(name, tenant=tenant)
    out.print(f"project {p['tenant']}/{p['name']} created")


# --- users -----------------------------------------------------------------------


@users.command("list")
def users_list(
    tenant: TenantFilter = None, as_json: JsonFlag = False
) -> None:
    """Users with their role and tenant."""
    with api() as c:
        _print(c.users(tenant=tenant), ["name", "role", "tenant", "email", "created_at"], as_json)


@users.command("create")
def users_create(
    name: str,
    role: Annotated[str, typer.Option(help="member, tenant-admin or operator.")] = "member",
    tenant: Annotated[str | None, typer.Option(
        help="The tenant it belongs to; none for an operator.")] = None,
    email: Annotated[str | None, typer.Option(help="Where notices about it go.")] = None,
    with_token: Annotated[
        bool, typer.Option("--token", help="Also issue a token and print it.")
    ] = False,
) -> None:
    """Create a user; --token also issues a token for them."""
    with api() as c:
        u = c.create_user(name, role=role, tenant=tenant, email=email)
        out.print(f"user {u['name']} created ({u['role']} of {u['tenant'] or 'the factory'})")
        if with_token:
            t = c.issue_token(user=name, label="created with the user")
            out.print(f"token (shown once): {t['token']}")


# --- tokens ----------------------------------------------------------------------


@tokens.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option(help="Only this user's.")] = None,
    as_json: JsonFlag = False
) -> None:
    """API tokens (their prefix only), with expiry, revocation and last use."""
    with api() as c:
        _print(
            c.tokens(user=user),
            ["id", "user", "prefix", "label", "created_at", "expires_at", "revoked_at",
             "last_used_at"],
            as_json,
        )


@tokens.command("issue")
def tokens_issue(
    user: Annotated[str | None, typer.Option(help="Default: yourself.")] = None,
    ttl: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d; default: none.")] = None,
    label: Annotated[str, typer.Option(help="What the token is for, e.g. a laptop.")] = "",
) -> None:
    """Issue an API token and print it once."""
    with api() as c:
        try:
            t = c.issue_token(
                user=user, ttl_seconds=parse_duration(ttl) if ttl else None, label=label
            )
        except MasnaaError as exc:
            if exc.field != "ttl_seconds":
                raise
            fail(_as_ttl_option(exc.message), exc.code)
    out.print(f"token {t['id']} for {t['user']}" + (
        f", expires {ago(t['expires_at'])}" if t["expires_at"] else ""
    ))
    typer.echo(t["token"])


def _as_ttl_option(message: str) -> str:
    """The API's sentence about ``ttl_seconds``, in the words of this command, whose
    user typed ``--ttl`` (a duration such as 30d: seconds get an ``s``)."""
    message = re.sub(r"ttl_seconds of at most (\d+)\b", r"--ttl of at most \1s", message)
    return message.replace("ttl_seconds", "--ttl")


@tokens.command("revoke")
def tokens_revoke(token_id: int) -> None:
    """Revoke a token by its id (see tokens list); it stops working at once."""
    with api() as c:
        t = c.revoke_token(token_id)
    out.print(f"token {t['id']} of {t['user']} revoked")


# --- nodes -----------------------------------------------------------------------


@nodes.command("list")
def nodes_list(
    site: Annotated[str | None, typer.Option(help="Only this site's.")] = None,
    as_json: JsonFlag = False
) -> None:
    """Nodes with their site, GPUs and state (up, drained, down)."""
    with api() as c:
        _print(
            c.nodes(site=site),
            ["name", "site", "gpu_type", "gpu_count", "state", "reason", "virtual"],
            as_json,
        )


EvacuateFlag = Annotated[
    bool,
    typer.Option(
        "--evacuate/--no-evacuate",
        " /--let-finish",
        help="Move the running jobs elsewhere (the default: each is preempted with its "
        "class's grace to checkpoint and requeued where its data may go), or let them finish.",
    ),
]


@nodes.command("drain")
def nodes_drain(
    node: str, reason: ReasonOption = "", evacuate: EvacuateFlag = True
) -> None:
    """No new job starts on NODE; its running jobs move elsewhere unless --let-finish."""
    with api() as c:
        n = c.drain(node, reason, evacuate=evacuate)
    out.print(f"node {n['name']}: {n['state']}" + (f" ({n['reason']})" if n["reason"] else ""))
    moved = n.get("evacuated") or []
    if moved:
        out.print(f"asked to move: {', '.join(moved)}", markup=False)


@nodes.command("undrain")
def nodes_undrain(node: str, reason: ReasonOption = "") -> None:
    """Let jobs start on NODE again."""
    with api() as c:
        n = c.undrain(node, reason)
    out.print(f"node {n['name']}: {n['state']}")


# --- quotas ----------------------------------------------------------------------


@quotas.command("list")
def quotas_list(
    tenant: TenantFilter = None, as_json: JsonFlag = False
) -> None:
    """Quotas per tenant × site × GPU type: nominal, borrowing and lending limits."""
    with api() as c:
        _print(
            c.quotas(tenant=tenant),
            ["tenant", "site", "gpu_type", "nominal", "borrowing_limit", "lending_limit"],
            as_json,
        )


_KEEP = object()
"""A limit option left out: the quota keeps its current value."""


def _limit(text: str | None, option: str) -> Any:
    """GPUs, ``None`` for 'none' (no limit), or ``_KEEP`` when the option was left out."""
    if text is None:
        return _KEEP
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a number of GPUs: give one such as 8, or 'none' to remove "
            "the limit", param_hint=option) from None


_KEEP_HELP = ("Left out: keep the current value (a new quota: {default}); 'none' removes "
              "the limit.")


@quotas.command("set")
def quotas_set(
    tenant: str,
    site: str,
    gpu_type: str,
    nominal: Annotated[int, typer.Argument(help="GPUs the tenant is always entitled to.")],
    borrowing_limit: Annotated[str | None, typer.Option(
        metavar="GPUS|none",
        help="Most GPUs it may borrow beyond nominal from idle ones. "
        + _KEEP_HELP.format(default="no limit"))] = None,
    lending_limit: Annotated[str | None, typer.Option(
        metavar="GPUS|none",
        help="Most of its idle nominal GPUs others may borrow. "
        + _KEEP_HELP.format(default="all of them"))] = None,
) -> None:
    """Set a tenant's quota of one GPU type at one site (GPUs).

    A limit left out keeps its current value, so changing the nominal alone does not
    lift the tenant's ceiling; give --borrowing-limit none (or --lending-limit none)
    to remove a limit."""
    borrow, lend = _limit(borrowing_limit, "--borrowing-limit"), _limit(
        lending_limit, "--lending-limit")
    with api() as c:
        if borrow is _KEEP or lend is _KEEP:
            # The API's PUT sets the whole quota: read what to keep first.
            now = next((q for q in c.quotas(tenant=tenant) if (q["tenant"], q["site"],
                        q["gpu_type"]) == (tenant, site, gpu_type)), {})
            borrow = now.get("borrowing_limit") if borrow is _KEEP else borrow
            lend = now.get("lending_limit") if lend is _KEEP else lend
        q = c.set_quota(
            tenant=tenant, site=site, gpu_type=gpu_type, nominal=nominal,
            borrowing_limit=borrow, lending_limit=lend,
        )
    limits = ", ".join(
        f"{what} {'no limit' if q[key] is None else q[key]}"
        for what, key in (("borrowing", "borrowing_limit"), ("lending", "lending_limit"))
    )
    out.print(
        f"quota of {q['tenant']} at {q['site']}: {q['nominal']} × {q['gpu_type']} ({limits})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")
