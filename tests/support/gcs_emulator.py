"""A real GCS endpoint for tests: gcp-storage-emulator in this process on a free loopback port.

with gcs_emulator("bucket-1") as emulator:
    emulator.config("bucket-1")   # app settings for STORAGE_BACKEND=gcs
    emulator.stop()               # the store is down: connections are refused
    emulator.start()              # back on the same port, empty, its buckets made again
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from ctxcloud_storage_gcs.settings import DEFAULTS
from gcp_storage_emulator.server import create_server
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from tests.support.server import free_port

__all__ = ["Emulator", "gcs_emulator"]


class Emulator:
    """gcp-storage-emulator in this process, in memory, on 127.0.0.1:<free port>.

    ``stop()`` takes it down (connections are refused), ``start()`` brings it back on the same
    port, empty (it keeps everything in memory), with its buckets created again.
    """

    def __init__(self, *buckets: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.buckets = list(buckets)
        self.server: Any = None

    def start(self, timeout: float = 10) -> None:
        if self.server is not None:
            return
        server = create_server("127.0.0.1", self.port, in_memory=True)
        server.start()
        self.server = server
        deadline = time.monotonic() + timeout
        while True:  # its health check: "/" answers "OK"
            try:
                if requests.get(self.url + "/", timeout=1).text == "OK":
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gcp-storage-emulator not answering on {self.url}")
            time.sleep(0.05)
        for bucket in self.buckets:
            self.create_bucket(bucket)

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def client(self) -> gcs.Client:
        """A plain SDK client on the emulator, to set up and to look behind the backend."""
        return gcs.Client(
            project="test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def create_bucket(self, name: str) -> str:
        if name not in self.buckets:
            self.buckets.append(name)
        self.client().create_bucket(name)
        return name

    def config(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """App settings for STORAGE_BACKEND=gcs on this emulator."""
        return {
            **DEFAULTS,
            "STORAGE_BACKEND": "gcs",
            "GCS_BUCKET": bucket,
            "GCS_ENDPOINT_URL": self.url,
            **overrides,
        }

    def names(self, bucket: str) -> list[str]:
        return sorted(blob.name for blob in self.client().list_blobs(bucket))


@contextmanager
def gcs_emulator(*buckets: str) -> Iterator[Emulator]:
    emulator = Emulator(*buckets)
    try:
        emulator.start()
        yield emulator
    finally:
        emulator.stop()
