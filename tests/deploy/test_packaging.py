"""One import root: the wheel holds `ctxcloud` and nothing else at the top level, and every
package folder of the checkout is one of its packages."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

pytestmark = pytest.mark.deploy

# The card's folders and the import names setup.cfg maps them to.
FOLDERS = {"app": "ctxcloud", "plugins": "ctxcloud.plugins", "config": "ctxcloud.config"}


def declared_packages() -> set[str]:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    return set(setup["options"]["packages"].split())


def separate_distributions() -> list[Path]:
    """Plugin folders that are distributions of their own (their own pyproject.toml)."""
    return sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def test_every_package_folder_is_a_declared_package():
    found = set()
    apart = separate_distributions()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if any(init.is_relative_to(dist) for dist in apart):
                continue  # packaged on its own, installed only where needed
            relative = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in relative:
                found.add(".".join((name, *relative)))
    assert found == declared_packages()


@pytest.mark.slow
def test_the_wheel_installs_only_ctxcloud(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("ctxcloud-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top_level = {Path(name).parts[0] for name in names if not name.startswith("ctxcloud-")}
    assert top_level == {"ctxcloud"}
    assert "ctxcloud/__init__.py" in names
    assert "ctxcloud/plugins/context/__init__.py" in names
    assert "ctxcloud/config/default.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "ctxcloud = ctxcloud.console:main" in text
    assert "storage_local = ctxcloud.plugins.storage_local" in text
