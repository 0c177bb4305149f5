"""A real Azure Blob endpoint for tests: Azurite on a free loopback port, stopped by PID.

    with azurite() as server:
        server.create_container("c-1234")
        server.config(AZURE_CONTAINER=...)  # app settings for STORAGE_BACKEND=azure
        server.stop()                       # the account is down: requests are refused
        server.start()                      # back on the same port, with its data

Azurite (npm, pinned below) is installed into the git-ignored .cache/azurite when missing, as
.ci/packages does on CI; no npm, or an install that fails, fails the tests (never a skip). It
keeps its data in a temporary folder, so a restart keeps every container and blob, as an
outage of the real service would. The account is Azurite's well-known development account.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import requests

from tests.support.server import ROOT, free_port
from tests.support.server import stop as stop_process

__all__ = [
    "ACCOUNT",
    "ACCOUNT_KEY",
    "AZURITE_VERSION",
    "Azurite",
    "azurite",
    "azurite_command",
    "container_name",
    "installed_version",
]

# The last Azurite release that runs on Node 20; .ci/packages installs the same one.
AZURITE_VERSION = "3.35.0"
INSTALL_DIR = ROOT / ".cache" / "azurite"
# Azurite's fixed development account (public, documented by Microsoft; it guards nothing).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def installed_version() -> str | None:
    """The version of the Azurite in .cache/azurite, or None if there is none."""
    package = INSTALL_DIR / "node_modules" / "azurite" / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def azurite_command() -> Path:
    """``azurite-blob`` of the pinned version, installed into .cache/azurite if missing.

    A lock serialises installs, so parallel test workers (xdist) install it once.
    """
    binary = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists() and installed_version() == AZURITE_VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is missing, so Azurite cannot be installed: run .ci/packages "
            "(it installs Node.js, npm and Azurite)"
        )
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    with open(INSTALL_DIR.parent / "azurite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (binary.exists() and installed_version() == AZURITE_VERSION):
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(INSTALL_DIR),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"azurite@{AZURITE_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0 or not binary.exists():
                raise RuntimeError(f"npm could not install Azurite:\n{result.stderr[-4000:]}")
    return binary


def container_name() -> str:
    """A fresh container name (Azure: 3-63 lower-case letters, digits, single hyphens)."""
    return f"t-{uuid.uuid4().hex[:24]}"


class Azurite:
    """One ``azurite-blob`` process on 127.0.0.1:<port>; start/stop by PID."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self.process: subprocess.Popen | None = None
        self.workspace = Path(tempfile.mkdtemp(prefix=f"azurite-{self.port}-"))
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix=f"azurite-{self.port}-", suffix=".log", delete=False
        )
        self._service: Any = None

    def __repr__(self) -> str:
        return f"Azurite({self.endpoint!r})"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self, timeout: float = 60) -> None:
        """Start Azurite (again, on the same port and workspace) and wait until it answers."""
        if self.running:
            return
        self.process = subprocess.Popen(
            [
                str(azurite_command()),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.workspace),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workspace,
        )
        self._wait_ready(timeout)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM Azurite's process group, SIGKILL if it lingers; the account is down after."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)

    def close(self) -> None:
        self.stop()
        if self._service is not None:
            self._service.close()
            self._service = None
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)
        shutil.rmtree(self.workspace, ignore_errors=True)

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def service(self) -> Any:
        """A plain BlobServiceClient on this account (set-up, and looking behind a backend)."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    @property
    def admin(self) -> Any:
        if self._service is None:
            self._service = self.service()
        return self._service

    def create_container(self, name: str | None = None) -> str:
        from azure.core.exceptions import ResourceExistsError

        name = name or container_name()
        with suppress(ResourceExistsError):
            self.admin.create_container(name)
        return name

    def delete_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with suppress(ResourceNotFoundError):
            self.admin.delete_container(name)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """App settings for STORAGE_BACKEND=azure on this account (AZURE_CONTAINER to add)."""
        return {
            "STORAGE_BACKEND": "azure",
            "AZURE_CONNECTION_STRING": self.connection_string,
            **overrides,
        }

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited:\n{self.log()}")
            try:
                # Unsigned: Azurite answers 403, which is enough to know it serves.
                requests.get(f"{self.endpoint}?comp=list", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Azurite not ready after {timeout}s:\n{self.log()}")


@contextmanager
def azurite() -> Iterator[Azurite]:
    """A started Azurite, stopped (by PID) and its workspace removed on exit."""
    server = Azurite()
    try:
        server.start()
        yield server
    finally:
        server.close()
