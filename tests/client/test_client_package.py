"""The client installs on its own: a fresh venv, `pip install ./client` with the repository's
pins, and the package imports with none of the server's dependencies beside it."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

SERVER_ONLY = ("flask", "peewee", "boto3")


def test_the_client_installs_alone_with_its_pins(tmp_path):
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    installed = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            str(ROOT / "client"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, ctxcloud_client\n"
        "print(json.dumps({'version': ctxcloud_client.__version__,"
        " 'client': callable(ctxcloud_client.Client),"
        f" 'absent': [n for n in {SERVER_ONLY!r} if u.find_spec(n) is None],"
        " 'dists': sorted(d.metadata['Name'].lower() for d in m.distributions())}))"
    )
    ran = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # not the checkout, whose folders could be imported from the cwd
    )
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["client"] and found["version"] == "0.1.0"
    assert found["absent"] == list(SERVER_ONLY)
    assert "httpx" in found["dists"] and "ctxcloud-client" in found["dists"]
    assert not {"flask", "peewee", "boto3", "ctxcloud"} & set(found["dists"])
    # The `ctx` command works from that install alone: its help, and a clear usage error.
    ctx = target / "bin" / "ctx"
    helped = subprocess.run(
        [str(ctx), "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert helped.returncode == 0, helped.stderr
    assert "push" in helped.stdout and "pull" in helped.stdout
    misused = subprocess.run(
        [str(ctx), "push"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert misused.returncode == 2, (misused.returncode, misused.stderr)
    # The type information ships with it.
    typed = subprocess.run(
        [
            str(python),
            "-c",
            "import ctxcloud_client, pathlib; "
            "print((pathlib.Path(ctxcloud_client.__file__).parent / 'py.typed').is_file())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    assert typed.stdout.strip() == "True"
