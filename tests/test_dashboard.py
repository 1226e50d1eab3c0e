"""The dashboard's static export: it is current (its source hash matches), and the
gateway serves it under /dashboard/ with the right cache headers, client-route
fallbacks, no path traversal, and answers of its own (not the relay's Anthropic shape)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway import dashboard
from tests.conftest import Gateway, start_site

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "dashboard"
# The same inputs as dashboard/scripts/source-hash.mjs; the two must stay identical.
SOURCE_DIRS = ("app", "components", "lib", "public")
SOURCE_FILES = ("package.json", "package-lock.json", "next.config.ts", "postcss.config.mjs", "tsconfig.json")


def source_hash(root: Path) -> str:
    files: list[str] = []
    for d in SOURCE_DIRS:
        if (root / d).is_dir():
            files += [p.relative_to(root).as_posix() for p in (root / d).rglob("*") if p.is_file()]
    files += list(SOURCE_FILES)
    total = hashlib.sha256()
    for rel in sorted(files):
        total.update(f"{rel}\0{hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode())
    return total.hexdigest()


def test_the_committed_export_was_built_from_the_current_dashboard_source() -> None:
    stamp = dashboard.export_dir() / ".source-sha256"
    assert stamp.is_file(), "dashboard/out is missing: run `npm --prefix dashboard run build`"
    assert stamp.read_text().strip() == source_hash(DASHBOARD), (
        "dashboard/out is stale: run `npm --prefix dashboard run build` and commit dashboard/out"
    )


def test_the_source_hash_changes_when_any_source_file_changes(tmp_path: Path) -> None:
    for rel in (*SOURCE_FILES, "app/page.tsx", "lib/format.ts"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    before = source_hash(tmp_path)
    (tmp_path / "lib/format.ts").write_text("changed")
    assert source_hash(tmp_path) != before
    (tmp_path / "public").mkdir()
    (tmp_path / "public/new.svg").write_text("<svg/>")
    assert source_hash(tmp_path) != before


def test_the_export_is_served_from_one_place_inside_the_repository() -> None:
    root = dashboard.export_dir()
    assert root == DASHBOARD / "out"
    assert (root / "index.html").is_file()
    assert (root / "login" / "index.html").is_file()


# --- serving, over a small export tree of our own --------------------------------------


@pytest.fixture
def export(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    (root / "_next/static/chunks").mkdir(parents=True)
    (root / "users/view").mkdir(parents=True)
    (root / "index.html").write_text("<html>overview</html>")
    (root / "404.html").write_text("<html>not found page</html>")
    (root / "users/index.html").write_text("<html>users</html>")
    (root / "users/view/index.html").write_text("<html>user page</html>")
    (root / "users/index.txt").write_text("rsc payload")
    (root / "_next/static/chunks/app-0a1b2c.js").write_text("console.log(1)")
    (root / ".source-sha256").write_text("abc\n")
    (tmp_path / "secret.txt").write_text("outside the export")
    return root


@pytest.fixture
async def site(export: Path) -> AsyncIterator[str]:
    app = web.Application()
    dashboard.mount(app, export)
    runner, url = await start_site(app)
    yield url
    await runner.cleanup()


async def test_hashed_assets_are_cached_for_a_year_and_html_is_revalidated(
    site: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{site}/dashboard/_next/static/chunks/app-0a1b2c.js") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert await r.text() == "console.log(1)"
    async with http.get(f"{site}/dashboard/") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["Content-Type"].startswith("text/html")
        assert r.headers["X-Frame-Options"] == "DENY"
        assert await r.text() == "<html>overview</html>"
    async with http.get(f"{site}/dashboard/users/index.txt?_rsc=1x2y") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-cache"


async def test_no_cache_html_revalidates_with_a_304(site: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{site}/dashboard/") as r:
        etag = r.headers["ETag"]
    async with http.get(f"{site}/dashboard/", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
        assert await r.read() == b""
    async with http.head(f"{site}/dashboard/users/") as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/dashboard/users", "<html>users</html>"),
        ("/dashboard/users/", "<html>users</html>"),
        ("/dashboard/users/view/?id=42", "<html>user page</html>"),
        ("/dashboard/users/view?id=42", "<html>user page</html>"),
    ],
)
async def test_a_client_route_gets_its_own_index_html(
    site: str, http: aiohttp.ClientSession, path: str, body: str
) -> None:
    async with http.get(site + path) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-cache"
        assert await r.text() == body


async def test_an_unknown_route_gets_the_export_404_page_and_an_unknown_asset_a_plain_404(
    site: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{site}/dashboard/no/such/page") as r:
        assert r.status == 404
        assert await r.text() == "<html>not found page</html>"
        assert r.headers["Cache-Control"] == "no-cache"
    async with http.get(f"{site}/dashboard/_next/static/chunks/gone.js") as r:
        assert r.status == 404
        assert "not found page" not in await r.text()


async def test_the_bare_prefix_redirects_to_the_slash_form(site: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{site}/dashboard", allow_redirects=False) as r:
        assert r.status == 308
        assert r.headers["Location"] == "/dashboard/"


async def _raw_get(url: str, target: str) -> tuple[int, bytes]:
    """A request line sent as written: clients normalise `..` away before sending."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize(
    "target",
    [
        "/dashboard/../secret.txt",
        "/dashboard/%2e%2e/secret.txt",
        "/dashboard/users/%2e%2e/%2e%2e/secret.txt",
        "/dashboard/..%2fsecret.txt",
        "/dashboard/%2e%2e%5csecret.txt",
        "/dashboard/.source-sha256",
        "/dashboard/users/%00index.html",
    ],
)
async def test_no_path_outside_the_export_or_dotfile_is_ever_served(site: str, target: str) -> None:
    status, data = await _raw_get(site, target)
    assert status in (400, 404)
    assert b"outside the export" not in data
    assert b"abc" not in data.split(b"\r\n\r\n", 1)[-1]


async def test_writes_are_refused_with_405_naming_the_allowed_methods(site: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{site}/dashboard/users/", data=b"x") as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET, HEAD"


async def test_a_missing_export_says_how_to_build_it(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    app = web.Application()
    dashboard.mount(app, tmp_path / "nothing")
    runner, url = await start_site(app)
    try:
        async with http.get(f"{url}/dashboard/") as r:
            assert r.status == 503
            assert "npm --prefix dashboard run build" in await r.text()
    finally:
        await runner.cleanup()


# --- the real gateway ---------------------------------------------------------------------


async def test_the_gateway_serves_the_real_export_outside_the_anthropic_error_shape(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/dashboard/") as r:
        assert r.status == 200
        html = await r.text()
        assert "/dashboard/_next/static/" in html
    asset = html.split('src="', 1)[1].split('"', 1)[0] if 'src="/dashboard/_next/static/' in html else None
    assert asset is not None and asset.startswith("/dashboard/_next/static/")
    async with http.get(gateway.url + asset) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    async with http.get(f"{gateway.url}/dashboard/no/such/page") as r:
        assert r.status == 404
        assert r.content_type == "text/html"  # the export's page, not {"type":"error",…}
    async with http.get(f"{gateway.url}/v1/nothing-here") as r:  # the relay keeps its shape
        assert r.status == 404
        assert (await r.json())["type"] == "error"


# --- the dashboard's own unit tests (formatting, ranges, report arithmetic, API client) ---


def test_the_dashboard_unit_tests_pass_under_node() -> None:
    if shutil.which("node") is None or not (DASHBOARD / "node_modules" / "tsx").is_dir():
        pytest.fail("node or dashboard/node_modules is missing: run `npm ci --prefix dashboard` (tests/run.sh does)")
    tests = sorted(str(p.relative_to(DASHBOARD)) for p in (DASHBOARD / "test").glob("*.test.ts"))
    assert len(tests) >= 4
    done = subprocess.run(
        ["node", "--import", "tsx", "--test", *tests],
        cwd=DASHBOARD,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "UTC"},
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
    passed = int(done.stdout.rsplit("# pass ", 1)[1].split()[0])
    assert passed >= 25, done.stdout[-2000:]
