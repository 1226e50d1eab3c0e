"""The README stays true: its settings table lists every setting, and its Quick start
has exactly the two commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import config

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    rows = set(re.findall(r"^\| `((?:CCPROXY_)?[A-Z][A-Z0-9_]+)` \|", README, re.M))
    assert rows == {s.env for s in config.SETTINGS}


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line for line in block.strip().splitlines() if line.strip()]
    assert commands == ["pip install -e . && ccproxy serve", "bash tests/run.sh"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "tests/run.sh" in ci
