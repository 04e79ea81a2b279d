"""Property-based run over the whole published OpenAPI: no 5xx, every answer in the schema.

Each operation gets a modest number of generated requests (``EXAMPLES``), made
in turn as an operator, a member and a tenant admin, against the real server
(SQLite and PostgreSQL).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import schemathesis
from hypothesis import HealthCheck, settings

from masnaa.api import Settings, create_app

if TYPE_CHECKING:
    from tests.api.conftest import World

EXCLUDED = [
    # A schema-valid request may still be refused by the factory (an unknown
    # project, a name with capitals): those are 400s by design.
    schemathesis.checks.positive_data_acceptance,
    # Negative cases that drop the Authorization header are re-authorised by
    # the headers passed below; tests/api/test_bad_input.py covers rejection.
    schemathesis.checks.negative_data_rejection,
]
EXAMPLES = 10  # ~30 operations × 2 backends × 10 examples: about 20 s on an idle 2-core machine
ROLES = itertools.cycle(["ops", "um6p-alice", "um6p-admin"])  # alternate callers


def _published_schema() -> dict[str, Any]:
    """The OpenAPI document exactly as the app publishes it (no database needed)."""
    app = create_app(Settings(db_url="sqlite://", home=Path("."), log_dir=Path("."), migrate=False))
    return app.openapi()


schema = schemathesis.openapi.from_dict(_published_schema())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_within_its_schema(case: Any, world: World) -> None:
    who = next(ROLES)
    case.call_and_validate(
        base_url=world.server.url,
        headers={"Authorization": f"Bearer {world[who].token}"},
        excluded_checks=EXCLUDED,
    )
