"""The portal's static files (one CSS, one small script), served with content hashes.

Invariants:
- Files are read once at start-up; each URL carries the first 12 hex digits of
  the file's SHA-256 (``/static/portal.css?v=…``), so a changed file gets a new
  URL and an unchanged one may be cached for a year (``immutable``).
- Every answer has a strong ``ETag``; ``If-None-Match`` gets ``304`` with no body.
- Only the files in ``static/`` exist: a name outside that list is ``404``.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request, Response

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
YEAR = 365 * 86400


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    digest: str
    media_type: str


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    out: dict[str, Asset] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media.startswith("text/") or media.endswith("javascript"):
            media += "; charset=utf-8"
        out[path.name] = Asset(body, hashlib.sha256(body).hexdigest()[:12], media)
    return out


class Assets:
    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.files = load_assets(directory)

    def url(self, name: str) -> str:
        return f"{STATIC_PREFIX}{name}?v={self.files[name].digest}"

    def respond(self, request: Request, name: str) -> Response:
        asset = self.files.get(name)
        if asset is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        etag = f'"{asset.digest}"'
        versioned = request.query_params.get("v") == asset.digest
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={YEAR}, immutable" if versioned
            else "public, max-age=0, must-revalidate",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
