"""Where the files that travel with the package are: the SQL queries, the migrations, the
admin API's OpenAPI document and the dashboard's static export.

In a checkout (and an editable install) they sit at the top of the repository beside
`gateway/`, as the design card lays them out. A wheel carries copies inside the package,
under `gateway/_shipped/` (setup.py's build step puts them there), so an installed gateway
finds them without the checkout (SPEC §9: it installs like any Python package). A leaf
module: it imports nothing from the package, so setup.py can read `SHIPPED` too.
"""

from __future__ import annotations

from pathlib import Path

# What a wheel ships, relative to the top of the checkout. The first two must exist; the
# others are built into the wheel when present (the dashboard export is a build output).
SHIPPED = ("sql", "migrations", "docs/openapi.yaml", "dashboard/out")
REQUIRED = ("sql", "migrations")
SHIPPED_DIR = "_shipped"

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _located(relative: str) -> Path:
    shipped = _PACKAGE / SHIPPED_DIR / relative
    return shipped if shipped.exists() else _CHECKOUT / relative


def sql_dir() -> Path:
    """The `-- name:` query files (`sql/*.sql`)."""
    return _located("sql")


def migrations_dir() -> Path:
    """The yoyo migrations (`migrations/NNNN.slug.sql` and their rollbacks)."""
    return _located("migrations")


def openapi_spec() -> Path:
    """The admin API's handwritten `docs/openapi.yaml` (may be missing in a checkout that
    predates it: callers check `exists()`)."""
    return _located("docs/openapi.yaml")


def dashboard_export() -> Path | None:
    """The dashboard's static export (`dashboard/out/`), or None when it was not built."""
    path = _located("dashboard/out")
    return path if path.is_dir() else None
