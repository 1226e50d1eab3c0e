"""Serves the dashboard's static export (`dashboard/out`, built by Next.js) under
`/dashboard/` as its own sub-application, outside the relay's Anthropic error shape.

Hashed assets under `_next/static/` never change their content, so browsers may keep
them a year; everything else (the HTML, the RSC payloads) is `no-cache`, so a new
export is seen on the next load. A client route such as `/dashboard/users/view` is
answered with its own `users/view/index.html` (the export uses trailing slashes), and
an unknown route with the export's 404 page.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from gateway import resources

PREFIX = "/dashboard"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# Security headers for every answer: the dashboard is never framed, never sniffed, and
# sends no referrer (its URLs hold user ids and filters).
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_TYPES = {".js": "text/javascript", ".txt": "text/plain", ".woff2": "font/woff2", ".map": "application/json"}

EXPORT_DIR = web.AppKey("dashboard_export_dir", Path)


def export_dir() -> Path:
    """Where the export is: the committed `dashboard/out` in a checkout, the wheel's
    copy in an installed package (gateway/resources.py knows which)."""
    return resources.dashboard_export()


def resolve(root: Path, tail: str) -> Path | None:
    """The file under `root` that answers `tail` (the path after `/dashboard/`, already
    percent-decoded), or None. Never a file outside `root`, never a dotfile."""
    if "\x00" in tail or "\\" in tail:
        return None
    parts = [p for p in tail.split("/") if p]
    if any(p.startswith(".") for p in parts):  # "..", ".", and .source-sha256
        return None
    rel = "/".join(parts)
    if not rel or tail.endswith("/"):
        candidates = [f"{rel}/index.html" if rel else "index.html"]
    else:
        candidates = [rel, f"{rel}/index.html", f"{rel}.html"]
    for candidate in candidates:
        path = (root / candidate).resolve()
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def _is_client_route(tail: str) -> bool:
    last = tail.rstrip("/").rsplit("/", 1)[-1]
    return "." not in last


def _file(path: Path, root: Path, status: int = 200) -> web.FileResponse:
    rel = path.relative_to(root).as_posix()
    headers = dict(_COMMON_HEADERS)
    headers["Cache-Control"] = IMMUTABLE if rel.startswith("_next/static/") else NO_CACHE
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers["Content-Type"] = content_type
    return web.FileResponse(path, status=status, headers=headers)


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, headers={**_COMMON_HEADERS, "Cache-Control": NO_CACHE, **headers})


async def serve(request: web.Request) -> web.StreamResponse:
    # Every outcome is a response, never a raised HTTPException, so no error middleware
    # above this sub-application reshapes it.
    if request.method not in ("GET", "HEAD"):
        return _text(405, "Method not allowed\n", Allow="GET, HEAD")
    root = request.app[EXPORT_DIR]
    if not (root / "index.html").is_file():
        return _text(503, "The dashboard is not built: run `npm --prefix dashboard run build`.\n")
    tail = request.match_info.get("tail", "")
    path = resolve(root, tail)
    if path is not None:
        return _file(path, root)
    not_found = root / "404.html"
    if _is_client_route(tail) and not_found.is_file():
        return _file(not_found, root, status=404)
    return _text(404, "Not found\n")


async def redirect_to_slash(request: web.Request) -> web.Response:
    location = PREFIX + "/" + (f"?{request.query_string}" if request.query_string else "")
    return web.Response(status=308, headers={**_COMMON_HEADERS, "Location": location})


def mount(app: web.Application, root: Path | None = None) -> None:
    """Adds `/dashboard` and the `/dashboard/…` sub-application to `app`."""
    sub = web.Application()
    sub[EXPORT_DIR] = (root or export_dir()).resolve()
    sub.router.add_route("*", "/{tail:.*}", serve)
    app.router.add_route("*", PREFIX, redirect_to_slash)
    app.add_subapp(PREFIX, sub)
