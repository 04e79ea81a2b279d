"""A regulator's report from the audit log (PURE): who touched a country's data, where, why.

Owns: ``regulator_report`` (rows for one country and period), its CSV and
JSON renderings, and ``check_request``: which country and period a report may
be asked for (the API and the offline command both refuse with its codes).

A row is one (placement or download) × one datum under the country: the time,
the job, the site and its country, the datum, the rule and the legal basis
recorded at the time. The period is half-open: ``start <= at < end``.
The report carries the chain head it was built from, so a regulator can later
check that the log still holds exactly what was reported (``verify(anchor=)``).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from masnaa.audit.chain import AuditAction, AuditRecord, format_time
from masnaa.policy.rules import RuleSet

COLUMNS = ("at", "seq", "action", "job_id", "tenant", "site", "site_country", "in_country",
           "data_id", "data_class", "rule_id", "legal_basis", "actor")


@dataclass(frozen=True, slots=True)
class ReportRow:
    at: str
    seq: int
    action: str
    job_id: str | None
    tenant: str | None
    site: str | None
    site_country: str | None
    in_country: bool
    data_id: str
    data_class: str | None
    rule_id: str | None
    legal_basis: str | None
    actor: str


@dataclass(frozen=True, slots=True)
class RegulatorReport:
    country: str
    regulator: str | None
    law: str | None
    start: datetime
    end: datetime
    rows: tuple[ReportRow, ...]
    chain_head: tuple[int, str] | None

    def summary(self) -> dict[str, Any]:
        jobs = {r.job_id for r in self.rows if r.job_id}
        return {
            "jobs": len(jobs),
            "rows": len(self.rows),
            "in_country": sum(r.in_country for r in self.rows),
            "abroad": sum(not r.in_country for r in self.rows),
            "by_site": dict(sorted(Counter(r.site or "-" for r in self.rows).items())),
        }


class ReportRefused(ValueError):
    """A report that cannot be built as asked; ``code`` is stable and machine-readable:
    ``invalid-period`` (no timezone, or ``end`` not after ``start``) or
    ``unknown-country`` (the rules have no entry for it)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def check_request(country: str, start: datetime, end: datetime, rules: RuleSet) -> str:
    """``country`` in capitals when a report for it over ``[start, end)`` means something;
    else ``ReportRefused``.

    An empty report for a country the rules do not know, or for a period that ends
    before it starts, would read as "no job touched its data", which is not what is
    known.
    """
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ReportRefused("invalid-period", "since and until must carry a timezone "
                            "(e.g. 2026-11-01T00:00:00Z)")
    if not end > start:
        raise ReportRefused("invalid-period", f"until ({end.isoformat()}) must come after "
                            f"since ({start.isoformat()})")
    code = country.upper()
    if code not in rules.countries:
        raise ReportRefused("unknown-country", f"country {country!r} has no residency rules: "
                            f"use one of {', '.join(sorted(rules.countries))}", field="country")
    return code


def regulator_report(records: Iterable[AuditRecord], country: str, start: datetime,
                     end: datetime, rules: RuleSet | None = None,
                     jurisdictions: Mapping[str, Iterable[str]] | None = None
                     ) -> RegulatorReport:
    """Placements and downloads in ``[start, end)`` that touched data under ``country``.

    A datum's jurisdictions come from the record itself (``details["data"]``),
    else from ``jurisdictions`` (e.g. the dataset registry) when given.
    """
    known = {k: set(v) for k, v in (jurisdictions or {}).items()}
    rows: list[ReportRow] = []
    last: AuditRecord | None = None
    for r in records:
        last = r
        if r.action not in (AuditAction.PLACEMENT, AuditAction.DOWNLOAD):
            continue
        if not (start <= r.at < end):
            continue
        data: Mapping[str, Any] = r.details.get("data") or {}
        per_data = _per_data_findings(r, country)
        for data_id in r.data_ids:
            info = data.get(data_id) or {}
            under: set[str] = set(info.get("jurisdictions") or known.get(data_id) or ())
            if country not in under:
                continue
            rule_id, basis, cls = per_data.get(data_id, (r.rule_id, r.legal_basis, None))
            if r.action == AuditAction.DOWNLOAD:
                dest = r.details.get("destination_country")
                if not r.details.get("allowed", False):
                    continue
            else:
                dest = r.details.get("site_country")
            rows.append(ReportRow(
                at=format_time(r.at), seq=r.seq, action=r.action,
                job_id=r.details.get("job_id"), tenant=r.details.get("tenant"), site=r.site,
                site_country=dest, in_country=dest == country, data_id=data_id,
                data_class=cls or ",".join(info.get("classes") or []) or None,
                rule_id=rule_id, legal_basis=basis, actor=r.actor))
    rule = rules.countries.get(country) if rules else None
    return RegulatorReport(country, rule.regulator if rule else None, rule.law if rule else None,
                           start, end, tuple(rows),
                           (last.seq, last.hash) if last is not None else None)


def _per_data_findings(r: AuditRecord, country: str
                       ) -> dict[str, tuple[str | None, str | None, str | None]]:
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for f in r.details.get("findings") or []:
        if f.get("jurisdiction") == country and f.get("data_id") not in out:
            out[f["data_id"]] = (f.get("rule_id"), f.get("basis"), f.get("class"))
    return out


def render_json(report: RegulatorReport) -> str:
    return json.dumps({
        "country": report.country,
        "regulator": report.regulator,
        "law": report.law,
        "period": {"start": format_time(report.start), "end": format_time(report.end)},
        "chain_head": None if report.chain_head is None
        else {"seq": report.chain_head[0], "hash": report.chain_head[1]},
        "summary": report.summary(),
        "rows": [asdict(r) for r in report.rows],
    }, indent=2, sort_keys=True, ensure_ascii=False)


def render_csv(report: RegulatorReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in report.rows:
        row = asdict(r)
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return out.getvalue()
