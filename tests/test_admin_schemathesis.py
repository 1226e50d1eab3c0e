"""schemathesis over docs/openapi.yaml against a live gateway: every answer of every
documented operation must conform to the document (status, content type, headers, body
schema) and none may be a server error. Bounded: a few examples per operation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from admin_client import PASSWORD, AdminClient, make_admin
from conftest import REPO, Gateway

from gateway import admins

pytest.importorskip("schemathesis")

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


@pytest.fixture(autouse=True)
def quick_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # bcrypt's cost is the point in production; fuzzed logins would each pay it here.
    monkeypatch.setattr(admins, "BCRYPT_ROUNDS", 4)


@pytest.mark.timeout(180)
async def test_every_documented_operation_answers_as_documented(
    gateway: Gateway, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await make_admin(gateway.database, "root")
    api = AdminClient(http, gateway.url)
    assert (await api.login("root", PASSWORD))[0] == 200
    # Something for the ids the fuzzer tries first to find.
    _, team = await api.post("/admin/teams", {"name": "platform"})
    _, user = await api.post("/admin/users", {"name": "alice", "team_id": team["id"]})
    await api.post(f"/admin/users/{user['id']}/access-keys", {})
    await gateway.issue_key("bob")
    report = tmp_path / "report.ndjson"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(REPO / "docs" / "openapi.yaml"),
        "--url",
        gateway.url,
        "--header",
        f"Authorization: Bearer {api.token}",
        "--checks",
        CHECKS,
        "--max-examples",
        "4",
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",
        "--seed",
        "11",
        "--no-shrink",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
        cwd=tmp_path,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 150)
    text = out.decode(errors="replace")
    summary = "\n".join(text.splitlines()[-40:])
    (Path(os.environ.get("CCPROXY_SCHEMATHESIS_OUT", "/dev/null"))).write_text(text)
    print(summary)
    assert process.returncode == 0, summary
    tested = re.search(r"(\d+) (?:operations? )?(?:tested|selected)", text)
    assert tested is not None or "passed" in text, summary
    assert report.stat().st_size > 0
    json.loads(report.read_text().splitlines()[0])
