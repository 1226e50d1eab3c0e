"""A build step only: the package metadata lives in setup.cfg (design card).

The queries, migrations, the OpenAPI document and the dashboard export stay at the top of
the repository; this copies them into the built package (`gateway/_shipped/`), where
`gateway.resources` finds them in an installed wheel.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from gateway import resources  # noqa: E402 - a leaf module; one list of what is shipped


class BuildPyWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout
        target = Path(self.build_lib) / "gateway" / resources.SHIPPED_DIR
        for relative in resources.SHIPPED:
            source = ROOT / relative
            if not source.exists():
                if relative in resources.REQUIRED:
                    raise SystemExit(f"cannot build: {source} is missing")
                continue
            destination = target / relative
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
