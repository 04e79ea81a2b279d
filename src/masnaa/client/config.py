"""Where the CLI finds its server and token: ``$MASNAA_HOME/credentials.toml``.

Format (TOML, written by ``masnaa up`` on first run, mode 0600)::

    url = "http://127.0.0.1:8642"
    token = "msn_..."

``MASNAA_URL`` and ``MASNAA_TOKEN`` override the file, field by field.
``MASNAA_HOME`` defaults to ``~/.masnaa``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_FILE = "credentials.toml"


def masnaa_home() -> Path:
    return Path(os.environ.get("MASNAA_HOME") or Path.home() / ".masnaa")


def credentials_path(home: Path | None = None) -> Path:
    return (home or masnaa_home()) / CREDENTIALS_FILE


@dataclass(frozen=True, slots=True)
class Credentials:
    url: str
    token: str


class CredentialsMissing(RuntimeError):
    """No server URL or token is configured."""


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_credentials(url: str, token: str, home: Path | None = None) -> Path:
    """Store ``url`` and ``token`` for this machine's CLI (owner-only file)."""
    path = credentials_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"url = {_quote(url)}\ntoken = {_quote(token)}\n")
    os.replace(tmp, path)
    return path


def read_credentials(home: Path | None = None) -> Credentials:
    """The URL and token to use, from the environment or the credentials file."""
    url = os.environ.get("MASNAA_URL")
    token = os.environ.get("MASNAA_TOKEN")
    path = credentials_path(home)
    if (url is None or token is None) and path.exists():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        url = url or data.get("url")
        token = token or data.get("token")
    if not url or not token:
        raise CredentialsMissing(
            f"no Masnaa server configured: run `masnaa up` on this machine, or set "
            f"MASNAA_URL and MASNAA_TOKEN, or write url and token to {path}"
        )
    return Credentials(url=str(url), token=str(token))
