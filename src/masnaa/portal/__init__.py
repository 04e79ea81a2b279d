"""The web portal: researchers, start-ups and operators in their own language.

``mount_portal(app)`` adds the pages to an API application; everything the
portal reads or writes goes through ``masnaa.service`` with the signed-in
caller, exactly as the API does. See docs/portal.md.
"""

from masnaa.portal.router import build_portal_router, mount_portal

__all__ = ["build_portal_router", "mount_portal"]
