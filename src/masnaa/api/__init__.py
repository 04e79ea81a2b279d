"""The HTTP API under ``/api/v1``: FastAPI app factory, routers, schemas, auth, errors.

Routes are thin: they authenticate, open one transaction, call the service
layer (``masnaa.service.jobs`` / ``masnaa.service.tenancy``) and render. See
``docs/api.md``.
"""

from masnaa.api.app import create_app
from masnaa.api.settings import Settings

__all__ = ["Settings", "create_app"]
