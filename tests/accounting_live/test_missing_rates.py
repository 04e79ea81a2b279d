"""A missing exchange rate through the real API and CLI: the statement and the operator
report still come out, in the site currency to the last minor unit; only the USD figures
that need the missing rate are empty (``null`` in JSON, "—" in CSV), and the statement
names the rate it lacks."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import TYPE_CHECKING

from masnaa.accounting.instants import at
from masnaa.store import accounting as t

from .test_cli import run

if TYPE_CHECKING:
    from tests.api.conftest import World

NOV = "2026-11"
T0 = at(date(2026, 11, 1))


def _usage(world: World, job: str, site: str, gpu_type: str, tenant: str, hours: int) -> None:
    """A record as the control loop stores it."""
    with world.server.state.db.write() as s:
        s.add(t.UsageRecordRow(job_id=job, attempt=0, start=T0, end=T0 + hours * 3600, gpus=1,
                               gpu_type=gpu_type, site=site, tenant=tenant,
                               project=f"{tenant}/llm", allocation_id=None))  # fmt: skip


def _priced(world: World, rates: list[dict[str, str]]) -> None:
    ops = world["ops"].client
    prices = [
        {"site": "ma-1", "gpu_type": "h100-sxm-80gb", "amount": "30.00", "currency": "MAD",
         "valid_from": "2026-01-01"},
        {"site": "ke-1", "gpu_type": "a100-80gb", "amount": "400.00", "currency": "KES",
         "valid_from": "2026-01-01"},
    ]  # fmt: skip
    assert ops.post("/api/v1/prices", json={"prices": prices}).status_code == 201
    assert ops.put("/api/v1/tax-rates", json={"rates": {"MAD": "0.2", "KES": "0.16"}}).is_success
    if rates:
        assert ops.post("/api/v1/exchange-rates", json={"rates": rates}).is_success
    _usage(world, "j-ma", "ma-1", "h100-sxm-80gb", "um6p", 10)
    _usage(world, "j-ke", "ke-1", "a100-80gb", "um6p", 3)


MAD_ZAR_ONLY = [
    {"day": "2026-11-01", "currency": "MAD", "per_usd": "10"},
    {"day": "2026-11-01", "currency": "ZAR", "per_usd": "18"},
]


def test_a_missing_rate_leaves_the_statement_whole_and_names_the_rate(world: World) -> None:
    _priced(world, MAD_ZAR_ONLY)
    r = world["um6p-admin"].client.get("/api/v1/statements/um6p", params={"period": NOV})
    assert r.status_code == 200, r.text
    kes, mad = r.json()
    # Own currency: 3 h × 400 less the university discount, taxed — as with every rate.
    assert (kes["currency"], kes["total_usd"]) == ("KES", None)
    assert [li["net_usd"] for li in kes["lines"]] == [None]
    (gap,) = kes["missing_exchange_rates"]
    assert (gap["currency"], gap["day"]) == ("KES", "2026-11-30")
    assert "KES/USD" in gap["message"]
    assert mad["missing_exchange_rates"] == [] and mad["total_usd"] is not None

    complete = [*MAD_ZAR_ONLY, {"day": "2026-11-01", "currency": "KES", "per_usd": "130"}]
    assert world["ops"].client.post(
        "/api/v1/exchange-rates", json={"rates": complete[2:]}
    ).is_success
    again = world["um6p-admin"].client.get("/api/v1/statements/um6p", params={"period": NOV})
    kes_full, mad_full = again.json()
    for key in ("subtotal", "tax", "total", "gross", "discount"):
        assert kes[key] == kes_full[key] and mad[key] == mad_full[key], key
    assert kes_full["total_usd"] is not None and kes_full["missing_exchange_rates"] == []


def test_the_operator_report_and_the_cli_show_a_dash(world: World) -> None:
    _priced(world, MAD_ZAR_ONLY)
    ops = world["ops"].client
    r = ops.get("/api/v1/reports/operator", params={"period": NOV})
    assert r.status_code == 200, r.text
    by_site = {row["site"]: row for row in r.json()}
    assert by_site["ke-1"]["revenue_usd"] is None
    assert by_site["ke-1"]["missing_exchange_rate"]["currency"] == "KES"
    assert by_site["ma-1"]["revenue_usd"] is not None
    assert by_site["ma-1"]["missing_exchange_rate"] is None
    report = ops.get("/api/v1/reports/operator", params={"period": NOV, "format": "csv"})
    rows = {x["site"]: x for x in csv.DictReader(io.StringIO(report.text))}
    assert rows["ke-1"]["revenue_usd"] == "—" and rows["ma-1"]["revenue_usd"] != "—"

    code, text, err = run(world, "um6p-admin", "statement", "--tenant", "um6p", "--period", NOV)
    assert code == 0, err
    assert "# missing_exchange_rate,KES,2026-11-30," in text
    assert "# total_usd,—,USD" in text
    code, text, err = run(world, "ops", "alloc", "report", "--operator", NOV)
    assert code == 0 and ",KES,—," in text, err
    html = world["um6p-admin"].client.get(
        "/api/v1/statements/um6p", params={"period": NOV, "format": "html", "locale": "fr"}
    )
    assert html.status_code == 200 and "Aucun taux de change KES/USD" in html.text


def test_without_any_rate_there_is_no_usd_view_and_nothing_missing(world: World) -> None:
    _priced(world, [])
    r = world["um6p-admin"].client.get("/api/v1/statements/um6p", params={"period": NOV})
    assert r.status_code == 200, r.text
    assert all(x["total_usd"] is None and x["missing_exchange_rates"] == [] for x in r.json())
