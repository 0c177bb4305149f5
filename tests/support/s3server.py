"""A real S3 endpoint for tests: moto_server on a free loopback port, stopped by PID.

    with moto_s3() as s3:                   # or the session-scoped `s3_server` fixture
        endpoint_url, bucket, env = s3      # env: fake AWS credentials and region
        s3.stop()                           # S3 is down: requests are refused
        s3.start()                          # back on the same port, bucket recreated

moto keeps everything in memory, so a restart loses every object (the bucket is created
again). ``config()`` gives the settings of an app on this server (for ``create_app``),
``environ()`` the same as CTXCLOUD_*/AWS_* variables (for a gunicorn subprocess), and
``aws_environment(env)`` points boto3's credential chain in this process at moto.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.server import free_port
from tests.support.server import stop as stop_process

__all__ = ["DEFAULT_BUCKET", "S3_ENV", "S3Server", "aws_environment", "moto_s3", "s3_server"]

DEFAULT_BUCKET = "ctxcloud-test"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _moto_server_command() -> str:
    path = Path(sys.executable).with_name("moto_server")
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install the test extras (moto[server])")
    return str(path)


@functools.cache
def _loader() -> Any:
    import botocore.session

    return botocore.session.Session().get_component("data_loader")


def _session() -> Any:
    """A fresh boto3 session that reuses the parsed service models (0.2 s saved per client)."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.register_component("data_loader", _loader())
    return boto3.session.Session(botocore_session=core)


class S3Server:
    """One moto_server process on 127.0.0.1:<port>, with a bucket; start/stop by PID."""

    def __init__(self, bucket: str = DEFAULT_BUCKET, port: int | None = None) -> None:
        self.bucket = bucket
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.env = dict(S3_ENV)
        self.process: subprocess.Popen | None = None
        self._admin: Any = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix=f"moto-{self.port}-", suffix=".log", delete=False
        )

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``endpoint_url, bucket, env``."""
        return iter((self.endpoint_url, self.bucket, self.env))

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint_url!r}, bucket={self.bucket!r})"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start moto_server (again, on the same port) and create the bucket."""
        if self.running:
            return
        self.process = subprocess.Popen(
            [_moto_server_command(), "-H", "127.0.0.1", "-p", str(self.port)],
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        self.create_bucket(self.bucket)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM moto's process group, SIGKILL if it lingers; S3 is down afterwards."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, timeout)

    def close(self) -> None:
        self.stop()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def client(self, **config: Any) -> Any:
        """A plain boto3 S3 client on this server (for setup and for looking behind a backend)."""
        from botocore.config import Config

        return _session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.env["AWS_SESSION_TOKEN"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            config=Config(**config),
        )

    @property
    def admin(self) -> Any:
        """One client kept for bucket set-up (it reconnects by itself after a restart)."""
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    def create_bucket(self, name: str) -> str:
        with suppress(self.admin.exceptions.BucketAlreadyOwnedByYou):
            self.admin.create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Empty the bucket (objects and unfinished multipart uploads), then delete it."""
        client = self.admin
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", ()):
                client.delete_object(Bucket=name, Key=item["Key"])
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", ()):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=name)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """App settings for STORAGE_BACKEND=s3 on this server; fail fast when it is down."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": self.bucket,
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_REGION": self.env["AWS_DEFAULT_REGION"],
            "S3_ADDRESSING_STYLE": "path",
            **overrides,
        }

    def environ(self, **overrides: Any) -> dict[str, str]:
        """The same as config(), as CTXCLOUD_* variables plus AWS_*: for a gunicorn subprocess."""
        settings = self.config(**overrides)
        return {**self.env, **{f"CTXCLOUD_{name}": str(value) for name, value in settings.items()}}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{self.log()}")
            try:
                requests.get(self.endpoint_url + "/moto-api/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto_server not ready after {timeout}s:\n{self.log()}")


@contextmanager
def moto_s3(bucket: str = DEFAULT_BUCKET) -> Iterator[S3Server]:
    """A started S3Server with its bucket, stopped (by PID) on exit."""
    server = S3Server(bucket)
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextmanager
def aws_environment(env: Mapping[str, str]) -> Iterator[None]:
    """Point boto3's default credential chain at moto's fake credentials, then restore."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto S3 server for the session, with AWS_* set to its fake credentials meanwhile.

    Tests share it: work under a unique prefix or bucket, clean up, and never stop it
    (use ``moto_s3()`` for a server of your own to take down).
    """
    with moto_s3() as server, aws_environment(server.env):
        yield server
