"""It installs like any Python package (SPEC §9, issue 13 §3): a wheel built from the
checkout, installed in a fresh virtualenv, serves a request on a fresh data directory with
the embedded PostgreSQL, finding its queries and migrations inside the installed package."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import orjson
import pytest
from conftest import REPO, free_port

from bench.fake_anthropic import TEXT, FakeAnthropic
from gateway import resources

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}

# What a copy of the checkout leaves out: VCS data, build leftovers, local state.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", "node_modules", ".ccproxy", "build", "dist", "*.egg-info", "__pycache__", "cdk.out", ".*_cache", "results"
)


def _run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (so the build never writes into it)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE, symlinks=True)
    dist = work / "dist"
    # No build isolation: the build backend is the one installed (no download per run).
    _run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-w", dist, cwd=work)
    [built] = dist.glob("claudecodeproxy-*.whl")
    return built


def test_the_wheel_carries_the_queries_and_migrations_but_no_tests(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = f"gateway/{resources.SHIPPED_DIR}"
    for path in sorted((REPO / "sql").glob("*.sql")) + sorted((REPO / "migrations").glob("*.sql")):
        assert f"{shipped}/{path.parent.name}/{path.name}" in names, path
    assert "gateway/default_prices.json" in names
    assert "bench/__main__.py" in names  # `ccproxy bench` needs it
    assert not any(name.startswith(("tests/", "sql/", "migrations/", "infra/")) for name in names)
    for optional in ("docs/openapi.yaml", "dashboard/out"):
        present = (REPO / optional).exists()
        assert any(name.startswith(f"{shipped}/{optional}") for name in names) == present, optional


def test_a_build_without_the_queries_stops_with_a_message_naming_them(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE, symlinks=True)
    shutil.rmtree(source / "sql")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", tmp_path],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0
    assert "sql is missing" in done.stdout + done.stderr


async def test_the_wheel_installed_in_a_fresh_virtualenv_serves_a_request(
    wheel: Path, open_tmp: Path, fake: tuple[FakeAnthropic, str]
) -> None:
    venv = open_tmp / "venv"
    elsewhere = open_tmp / "elsewhere"  # cwd: neither the checkout nor its `gateway/`
    elsewhere.mkdir()
    # --system-site-packages: the dependencies come from this machine instead of a
    # download; the package itself is the wheel (asserted below).
    _run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=elsewhere)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel, cwd=elsewhere)
    where = _run(python, "-c", "import gateway, gateway.db as d; print(gateway.__file__, d.SQL_DIR)", cwd=elsewhere)
    package_file, sql_dir = (Path(line) for line in where.split())
    assert package_file.is_relative_to(venv), package_file
    assert sql_dir.is_relative_to(venv) and sql_dir.is_dir(), sql_dir

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CCPROXY_", "PYTHON"))}
    port = free_port()
    env.update(
        CCPROXY_DATA_DIR=str(open_tmp / "fresh-data"),
        CCPROXY_PLAN_BASE_URL=fake[1],
        CCPROXY_PORT=str(port),
        CCPROXY_USAGE_FLUSH_MS="20",
    )
    ccproxy = venv / "bin" / "ccproxy"
    log_path = open_tmp / "serve.log"
    with log_path.open("wb") as out:
        serve = subprocess.Popen([str(ccproxy), "serve"], cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(serve, port, log_path)
        _run(ccproxy, "users", "create", "alice", "--json", cwd=elsewhere, env=env)
        key = orjson.loads(_run(ccproxy, "keys", "issue", "--user", "alice", "--json", cwd=elsewhere, env=env))["key"]
        body = orjson.dumps(BODY)
        # In a thread: the fake plan answers on this test's event loop.
        status, answer = await asyncio.to_thread(_post, port, f"/ak/{key}/v1/messages", body)
        assert status == 200, answer
        assert orjson.loads(answer)["content"][0]["text"] == TEXT
        recent = _eventually_recent(ccproxy, elsewhere, env)
        print(f"\nwheel: {wheel.name}\ninstalled: {package_file}\nqueries: {sql_dir}\nserved: 200, usage row: {recent}")
    finally:
        serve.terminate()
        assert serve.wait(60) == 0, log_path.read_text()[-3000:]


def _wait_ready(serve: subprocess.Popen[bytes], port: int, log_path: Path, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert serve.poll() is None, f"ccproxy serve exited: {log_path.read_text()[-3000:]}"
        try:
            status, _ = _get(port, "/ready")
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"ccproxy serve did not become ready: {log_path.read_text()[-3000:]}")


def _exchange(port: int, raw: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _get(port: int, path: str) -> tuple[int, bytes]:
    return _exchange(port, f"GET {path} HTTP/1.0\r\n\r\n".encode())


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    head = (
        f"POST {path} HTTP/1.0\r\nx-api-key: sk-ant-wheel-test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return _exchange(port, head.encode() + body)


def _eventually_recent(ccproxy: Path, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        rows = orjson.loads(_run(ccproxy, "usage", "recent", "--json", cwd=cwd, env=env))
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    [row] = rows
    assert (row["provider"], row["status"], row["user"]) == ("plan", 200, "alice")
    return {k: row[k] for k in ("provider", "status", "input_tokens", "output_tokens")}


def test_the_runtime_imports_nothing_from_bench() -> None:
    """Only `ccproxy bench` loads the bench package (lazily, when it runs)."""
    modules = sorted(p.stem for p in (REPO / "gateway").glob("*.py") if p.stem not in ("__main__",))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('gateway.' + name)\n"
        "print(sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.')))\n"
    )
    out = _run(sys.executable, "-c", code, cwd=REPO)
    assert out.strip() == "[]"
    assert not (REPO / "gateway" / "usage_bench.py").exists()
    assert (REPO / "bench" / "usage_bench.py").exists()
