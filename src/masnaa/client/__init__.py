"""The Python SDK of the Masnaa API: ``MasnaaClient`` over httpx, ``MasnaaError``.

``MasnaaClient.from_config()`` reads the URL and token from
``$MASNAA_HOME/credentials.toml`` (see ``masnaa.client.config``).
"""

from masnaa.client.client import MasnaaClient, MasnaaError
from masnaa.client.config import Credentials, read_credentials, write_credentials

__all__ = ["Credentials", "MasnaaClient", "MasnaaError", "read_credentials", "write_credentials"]
