"""Tenants, people and prices for the allocation pages' tests, added to the shared factory.

The session's factory (``conftest.py``) is shared by every portal test, and a
grant-funded tenant is enforced from its first allocation request on. So these
tests use tenants of their own, never ``um6p``/``uon``:

- ``uca`` (university, Morocco), projects ``nlp`` and ``speech-{en,fr,ar}``
  (one per language of the browser flow, so its job charges its allocation),
  researcher ``salma``;
- ``atlas`` (start-up), project ``vision``, founder ``yassine`` (paid GPU-time);
- ``unilag`` (university), project ``bio``, researcher ``tunde`` (isolation);
- ``nadia``: a reviewer of the review steps who is not an operator;
- ``karim``: an operator who also reviews every step.

Prices: 30 MAD per H100-hour at ma-1 and 1,500 KES per A100-hour at ke-1
(added through the API unless a price for that pool already exists); tax
20 % on MAD and 16 % on KES unless a rate is set already.
"""

from __future__ import annotations

import time

from masnaa.accounting.instants import to_second
from masnaa.service import tenancy, terms
from masnaa.service.tenancy import Caller
from masnaa.service.tokens import issue_token
from masnaa.store import models as m

from .conftest import Factory

STEPS = ["admin-check", "technical", "merit"]
_done: set[str] = set()


def ensure_world(factory: Factory) -> Factory:
    """Add this module's tenants, people and prices once per factory."""
    if factory.url in _done:
        return factory
    now = time.time()
    op = Caller(user_id=0, user="ops", role=m.Role.OPERATOR, tenant_id=None, tenant=None,
                token_id=0)
    with factory.state.db.write() as s:
        for tenant, kind, project, user in (
            ("uca", "university", "nlp", "salma"),
            ("atlas", "startup", "vision", "yassine"),
            ("unilag", "university", "bio", "tunde"),
            ("funder", "public-body", "board", "nadia"),
        ):
            tenancy.create_tenant(s, op, name=tenant, kind=kind, country="MA", now=now)
            tenancy.create_project(s, op, name=project, tenant=tenant, now=now)
            tenancy.create_user(s, op, name=user, role="member", tenant=tenant, now=now)
            factory.tokens[user] = issue_token(s, op, user, now=now).secret
            tenancy.set_quota(s, op, tenant=tenant, site="ma-1", gpu_type="h100-sxm-80gb",
                              nominal=8, borrowing_limit=None, lending_limit=None)
        for lang in ("en", "fr", "ar"):  # one project per language of the browser flow
            tenancy.create_project(s, op, name=f"speech-{lang}", tenant="uca", now=now)
        tenancy.create_user(s, op, name="karim", role="operator", now=now)
        factory.tokens["karim"] = issue_token(s, op, "karim", now=now).secret
    with factory.client("ops") as c:
        for user in ("nadia", "karim"):
            r = c.put(f"/api/v1/reviewers/{user}", json={"steps": STEPS})
            assert r.status_code == 200, r.text
        have = {(p["site"], p["gpu_type"]) for p in c.get("/api/v1/prices").json()}
        wanted = [
            {"site": "ma-1", "gpu_type": "h100-sxm-80gb", "amount": "30.00", "currency": "MAD",
             "valid_from": "2020-01-01"},
            {"site": "ke-1", "gpu_type": "a100-80gb", "amount": "1500.00", "currency": "KES",
             "valid_from": "2020-01-01"},
        ]
        new = [p for p in wanted if (p["site"], p["gpu_type"]) not in have]
        if new:
            r = c.post("/api/v1/prices", json={"prices": new})
            assert r.status_code == 201, r.text
        # Tax rates replace the whole table from this month on: keep what others set.
        with factory.state.db.read() as s:
            now = to_second(factory.state.now())
            rates = {k: str(v) for k, v in terms.tax_rates(s, now).items()}
        rates.setdefault("MAD", "0.20")
        rates.setdefault("KES", "0.16")
        r = c.put("/api/v1/tax-rates", json={"rates": rates})
        assert r.status_code == 200, r.text
    _done.add(factory.url)
    return factory
