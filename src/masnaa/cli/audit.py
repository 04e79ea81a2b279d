"""``masnaa audit``: check the audit log offline and answer a regulator.

Owns the verbs ``audit verify FILE`` (exit 0 when the chain is intact, 1
naming the first broken record, 2 when the file cannot be read) and
``audit report FILE --country CC`` (CSV or JSON on stdout; 1 when the chain
is broken, 2 when the file or the rules cannot be read or the country or the
period is refused with the API's code: ``unknown-country``, ``invalid-period``).
Both read a JSON-lines audit file and need no server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

audit_app = typer.Typer(name="audit", help="Check the audit log and build regulator reports.",
                        no_args_is_help=True)


def _anchor(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter("expected SEQ:SHA256HEX, e.g. 41:9f86d081...")
    return int(seq), digest.lower()


@audit_app.command("verify")
def verify_cmd(
    file: Annotated[Path, typer.Argument(help="A JSON-lines audit log.")],
    anchor: Annotated[str | None, typer.Option(
        help="SEQ:HASH of a head published earlier; catches records cut off the end.")] = None,
) -> None:
    """Verify the hash chain of FILE; name the first broken record."""
    from masnaa.audit.jsonl import verify_file

    head = _anchor(anchor)
    try:
        result = verify_file(file, head)
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    if result.ok:
        tail = f"; head seq {result.head[0]} hash {result.head[1]}" if result.head else ""
        typer.echo(f"ok: {result.checked} records, chain intact{tail}")
        return
    typer.echo(f"BROKEN ({result.reason}): {result.message}", err=True)
    raise typer.Exit(1)


def _error(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _day(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@audit_app.command("report")
def report_cmd(
    file: Annotated[Path, typer.Argument(help="A JSON-lines audit log.")],
    country: Annotated[str, typer.Option(help="ISO code of the country whose data to report.")],
    since: Annotated[str, typer.Option(help="Start of the period (inclusive), YYYY-MM-DD.")],
    until: Annotated[str, typer.Option(help="End of the period (exclusive), YYYY-MM-DD.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    rules: Annotated[Path | None, typer.Option(help="Rules file (default: shipped).")] = None,
) -> None:
    """Which jobs touched COUNTRY's data in the period, where they ran, on which grounds."""
    from masnaa.audit.jsonl import read_records, verify_file
    from masnaa.audit.report import (
        ReportRefused,
        check_request,
        regulator_report,
        render_csv,
        render_json,
    )
    from masnaa.policy.loader import RulesError, load_rules

    if fmt not in ("csv", "json"):
        raise typer.BadParameter("--format is csv or json")
    start, end = _day(since), _day(until)
    try:
        rule_set = load_rules(rules)
        code = check_request(country, start, end, rule_set)
    except RulesError as exc:
        _error(f"{exc} ({exc.code})")
    except ReportRefused as refused:
        _error(f"{refused.message} ({refused.code})")
    try:
        check = verify_file(file)
        if not check.ok:
            typer.echo(f"refusing to report from a broken log: {check.message}", err=True)
            raise typer.Exit(1)
        records = read_records(file)
    except OSError as exc:
        _error(f"cannot read {file}: {exc.strerror}")
    report = regulator_report(records, code, start, end, rule_set)
    typer.echo(render_csv(report) if fmt == "csv" else render_json(report), nl=fmt == "json")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
