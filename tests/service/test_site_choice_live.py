"""Site choice in the live service: a real database, the accounting store's rate cards in
three currencies, a factory file's tenant preferences, a real control loop and real processes.

Three sites of 2×8 virtual GPUs: ma-1 (MAD), za-1 (ZAR), ke-1 (KES). In US dollars at the
day's rates za-1 is cheapest, ke-1 next and ma-1 dearest, although za-1's price has the
largest number: only a converted comparison puts it first. The loop re-reads the rate
cards every pass here (``price_interval=0``), so a new price counts at once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from live_loop import drive
from masnaa.factory import apply_factory
from masnaa.factory.spec import FactoryError, parse_factory
from masnaa.service import jobs, residency
from masnaa.service.loop import ControlLoop, LoopConfig
from masnaa.service.metrics import Metrics
from masnaa.service.site_choice import load_preferences, load_prices
from masnaa.service.tenancy import Caller, bootstrap
from masnaa.store import accounting as t
from masnaa.store import models as m

from .conftest import Database

GPU = "h100-80gb"
FACTORY: dict[str, Any] = {
    "sites": [
        {"name": "ma-1", "country": "MA", "currency": "MAD"},
        {"name": "za-1", "country": "ZA", "currency": "ZAR"},
        {"name": "ke-1", "country": "KE", "currency": "KES"},
    ],
    "gpu_types": [{"name": GPU}],
    "nodes": [
        {"site": s, "gpu_type": GPU, "gpus": 8, "count": 2, "prefix": f"{s}-n", "virtual": True}
        for s in ("ma-1", "za-1", "ke-1")
    ],
    "tenants": [
        {"name": "nairobi", "country": "KE", "preferred_sites": ["ke-1", "ma-1"]},
    ],
}
PRICES = {"ma-1": ("30.00", "MAD"), "za-1": ("45.00", "ZAR"), "ke-1": ("380.00", "KES")}
RATES = {"MAD": "10.0", "ZAR": "18.0", "KES": "130.0"}
"""Units per USD: ma-1 3.00, za-1 2.50, ke-1 2.92 USD per GPU-hour."""


class Live:
    def __init__(self, db: Database, home: Path, caller: Caller) -> None:
        self.db, self.home, self.caller = db, home, caller

    def submit(self, project: str = "local/default", **spec: Any) -> str:
        with self.db.sessions() as s, s.begin():
            done = jobs.submit_batch(
                s,
                self.caller,
                [jobs.JobSpec(project=project, command=["sleep", "30"], gpus_per_task=8, **spec)],
                now=time.time(),
            )
            return done.jobs[0].id

    def row(self, job_id: str) -> m.Job:
        with self.db.sessions() as s:
            return s.scalars(select(m.Job).where(m.Job.id == job_id)).one()

    def admitted_reason(self, job_id: str) -> str:
        with self.db.sessions() as s:
            return s.scalars(
                select(m.JobEvent.reason).where(
                    m.JobEvent.job_id == job_id, m.JobEvent.code == "admitted"
                )
            ).one()


@pytest.fixture
def live(database: Database, tmp_path: Path) -> Live:
    with database.sessions() as s, s.begin():
        apply_factory(s, parse_factory(FACTORY))
        bootstrap(s)
        op = s.scalars(select(m.User).where(m.User.role == m.Role.OPERATOR.value)).one()
        caller = Caller(op.id, op.name, m.Role.OPERATOR, None, None, 0)
        for site, (amount, currency) in PRICES.items():
            s.add(t.PriceRow(site=site, gpu_type=GPU, valid_from=date(2026, 1, 1),
                             amount=amount, currency=currency))
        for currency, per_usd in RATES.items():
            s.add(t.ExchangeRateRow(day=date(2026, 1, 1), currency=currency, per_usd=per_usd))
    home = tmp_path / "home"
    home.mkdir()
    return Live(database, home, caller)


@pytest.fixture
def loop(live: Live) -> Iterator[ControlLoop]:
    running = ControlLoop(
        LoopConfig(db_url=live.db.url, home=live.home, tick=0.05, kill_grace=0.3,
                   cancel_grace=0.3, price_interval=0.0),
        engine=live.db.engine, metrics=Metrics(),
    )
    running.start()
    yield running
    with live.db.sessions() as s, s.begin():
        for job_id in s.scalars(select(m.Job.id).where(m.Job.state.in_(
                ["pending", "admitted", "running"]))):
            jobs.cancel(s, live.caller, job_id, now=time.time())
    drive(running, lambda: all(
        live.row(j).state == "cancelled" for j in _ids(live)), timeout=20.0)
    running.release_lease()
    running.close()


def _ids(live: Live) -> list[str]:
    with live.db.sessions() as s:
        return list(s.scalars(select(m.Job.id).where(m.Job.state != "succeeded")))



def placed(live: Live, loop: ControlLoop, job_id: str) -> str:
    drive(loop, lambda: live.row(job_id).state in ("admitted", "running"))
    site = live.row(job_id).site
    assert site is not None
    return site


def test_prices_come_from_the_rate_cards_in_one_unit(live: Live) -> None:
    with live.db.sessions() as s:
        got = load_prices(s, time.time())
        prefs = load_preferences(s)
    assert got.unit == "USD" and got.left_out == ()
    assert got.prices == pytest.approx(
        {("ma-1", GPU): 3.0, ("za-1", GPU): 2.5, ("ke-1", GPU): 380 / 130})
    assert prefs == {"nairobi": ("ke-1", "ma-1")}


def test_anywhere_goes_to_the_cheapest_then_preferred_then_never_outside_its_sites(
    live: Live, loop: ControlLoop
) -> None:
    # "Anywhere allowed": the cheapest site in dollars, with the reason on its admission.
    a = live.submit()
    assert placed(live, loop, a) == "za-1"
    reason = live.admitted_reason(a)
    assert "site za-1 rather than" in reason and "it is cheaper: 2.50 per GPU-hour" in reason

    # Moroccan health data may not leave Morocco: ma-1 although it is the dearest.
    with live.db.sessions() as s, s.begin():
        data = residency.register_dataset(
            s, live.caller,
            residency.DatasetIn(name="scans", home_site="ma-1", data_class="health",
                                tenant="local"),
            now=time.time())
    bound = live.submit(datasets=[data.row.id])
    assert live.row(bound).sites == ["ma-1"]
    assert placed(live, loop, bound) == "ma-1"
    assert "rather than" not in live.admitted_reason(bound)  # one eligible site: no choice

    # Named sites: the cheaper of the two named, never the cheapest unnamed one (za-1).
    named = live.submit(sites=["ma-1", "ke-1"])
    assert placed(live, loop, named) == "ke-1"

    # The tenant's preference beats price: ke-1 first, while it has room.
    pref = live.submit(project="nairobi/default")
    assert placed(live, loop, pref) == "ke-1"
    assert "prefers it" in live.admitted_reason(pref)

    # ke-1 is full: the next preferred site, ma-1, not the cheaper za-1.
    spill = live.submit(project="nairobi/default")
    assert placed(live, loop, spill) == "ma-1"


def test_a_preference_for_an_unknown_site_is_refused_with_its_path() -> None:
    bad = {**FACTORY, "tenants": [{"name": "x", "preferred_sites": ["mars-1"]}]}
    with pytest.raises(FactoryError) as err:
        parse_factory(bad)
    assert err.value.path == "tenants[0].preferred_sites[0]" and "unknown site" in str(err.value)
    twice = {**FACTORY, "tenants": [{"name": "x", "preferred_sites": ["ma-1", "ma-1"]}]}
    with pytest.raises(FactoryError, match="listed twice"):
        parse_factory(twice)


def test_applying_the_factory_again_keeps_preferences_and_clears_a_dropped_one(
    database: Database,
) -> None:
    with database.sessions() as s, s.begin():
        first = apply_factory(s, parse_factory(FACTORY))
    assert first.created["site preferences"] == 1
    with database.sessions() as s, s.begin():
        assert not apply_factory(s, parse_factory(FACTORY)).changed
    cleared = {**FACTORY, "tenants": [{"name": "nairobi", "country": "KE"}]}
    with database.sessions() as s, s.begin():
        assert apply_factory(s, parse_factory(cleared)).updated["site preferences"] == 1
    with database.sessions() as s:
        assert load_preferences(s) == {}


def test_a_new_rate_card_counts_from_the_next_read(live: Live, loop: ControlLoop) -> None:
    first = live.submit()
    assert placed(live, loop, first) == "za-1"
    # ma-1 drops to 20 MAD (2.00 USD) from today: now the cheapest.
    today = datetime.now(UTC).date()  # prices are dated in UTC days
    with live.db.sessions() as s, s.begin():
        old = s.get(t.PriceRow, ("ma-1", GPU, date(2026, 1, 1)))
        assert old is not None
        old.valid_to = today
        s.add(t.PriceRow(site="ma-1", gpu_type=GPU, valid_from=today, amount="20.00",
                         currency="MAD"))
    second = live.submit()
    assert placed(live, loop, second) == "ma-1"
    assert "2.00 per GPU-hour" in live.admitted_reason(second)
