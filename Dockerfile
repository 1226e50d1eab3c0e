# syntax=docker/dockerfile:1
#
# ClaudeCodeProxy gateway image (SPEC §10: multi-stage, non-root, health-checks /health).
#
# Layout: the build stage builds a wheel from the checkout and installs it into a venv at
# /opt/venv, like any Python package (SPEC §9). The wheel carries `sql/`, `migrations/`,
# `docs/openapi.yaml` and the dashboard export inside the package (setup.py copies them to
# gateway/_shipped/; gateway/resources.py finds them), so the runtime stage needs only
# /opt/venv: no source tree, no editable install.

# --- Dashboard build stage (placeholder) -------------------------------------------------
# The Next.js dashboard (SPEC §8, static export) will be built here by a later issue:
#
#   FROM node:20-slim AS dashboard
#   WORKDIR /dashboard
#   COPY dashboard/package.json dashboard/package-lock.json ./
#   RUN npm ci
#   COPY dashboard/ ./
#   RUN npm run build                       # static export into /dashboard/out
#
# and the build stage will add, before the wheel is built (so the wheel carries it):
#
#   COPY --from=dashboard /dashboard/out /src/dashboard/out

# --- Python build stage -------------------------------------------------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src

# Dependencies first, in their own layer: setup.cfg changes far less often than the code.
# With no package directories copied yet, `pip install .` installs only install_requires.
# (README.md* is a glob so the build also works before the README exists.)
COPY setup.cfg pyproject.toml README.md* ./
RUN pip install --no-cache-dir .

# The whole build context (.dockerignore keeps tests, infra and local state out), then the
# wheel, installed over the dependency-only install of the same version.
COPY . ./
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir --no-deps --force-reinstall /wheels/claudecodeproxy-*.whl \
    && python -c "import gateway.db as d; assert d.SQL_DIR.is_dir() and d.MIGRATIONS_DIR.is_dir(), d.SQL_DIR"

# --- Runtime stage --------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed, non-root uid so volume permissions and the ECS task are predictable.
RUN groupadd --system --gid 10001 ccproxy \
    && useradd --system --uid 10001 --gid ccproxy --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin ccproxy

COPY --from=build /opt/venv /opt/venv

# The code stays root-owned in /opt/venv (read-only to the gateway); only the data
# directory is writable: usage journal while the database is away, embedded PostgreSQL
# when no CCPROXY_DATABASE_URL is set (the default CCPROXY_DATA_DIR is ./.ccproxy).
RUN mkdir -p /app/.ccproxy && chown ccproxy:ccproxy /app/.ccproxy

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# slim has no curl; the standard library is enough. urlopen raises (exit 1) on non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["ccproxy", "serve", "--host", "0.0.0.0", "--port", "8000"]
