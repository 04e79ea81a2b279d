"""The factory description: what hardware, tenants and policies a factory has.

``spec`` validates a TOML file (or the local machine's discovered inventory)
into a ``FactorySpec``; ``apply`` upserts it into the store, idempotently.
"""

from masnaa.factory.apply import ApplyReport, apply_factory
from masnaa.factory.spec import FactoryError, FactorySpec, from_inventory, load_factory

__all__ = [
    "ApplyReport",
    "FactoryError",
    "FactorySpec",
    "apply_factory",
    "from_inventory",
    "load_factory",
]
