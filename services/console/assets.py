"""The console's static files, shipped in the package and read once at start."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from stepforge.services.console.web import Response

_TYPES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# A URL carries the digest of its file, so a browser may keep it for good.
_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: str
    version: str


class StaticAssets:
    """The static files by name, each served under a URL that changes with
    its content."""

    def __init__(self) -> None:
        folder = resources.files("stepforge.services.console").joinpath("static")
        self._assets = {}
        for name, content_type in _TYPES.items():
            body = folder.joinpath(name).read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            self._assets[name] = _Asset(body, content_type, version)

    def url(self, name: str) -> str:
        """The path a page links `name` by."""
        return f"/static/{name}?v={self._assets[name].version}"

    def response(self, name: str) -> Response | None:
        """The file, or None when there is no such static file."""
        asset = self._assets.get(name)
        if asset is None:
            return None
        return Response(
            200, asset.body, asset.content_type, [("Cache-Control", _CACHE_CONTROL)]
        )
