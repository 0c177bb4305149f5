"""Small objects' ciphertext kept per process, so a hot small entry is not fetched each read.

An object never changes once written (its key is random and never reused), so the bytes
read from storage stay right for as long as anyone can ask for that key. Reading a small
entry from S3, GCS or Azure costs an HTTP round trip and the SDK's request building (most of
a 4 KiB GET's CPU on the production stack); here a whole read of an object of at most
``OBJECT_CACHE_MAX_OBJECT`` bytes keeps its **ciphertext**, as stored, up to
``OBJECT_CACHE_BYTES`` per process (least recently used first out; 0 turns it off).

Nothing else changes: every read still decrypts and authenticates (a corrupted object is
never served), the data key still comes from the tenant's keystore (a deleted tenant's
crypto-shredded objects stay unreadable), and a key is only asked for once the database
says an entry version names it, so an object removed by pruning or deletion is never
reached through the cache. Only whole reads fill it: a range read of an uncached object
goes to storage for just its segments.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class ObjectCache:
    def __init__(self, max_bytes: int, max_object: int) -> None:
        self.max_bytes = max_bytes
        self.max_object = max_object
        self.size = 0
        self.objects: OrderedDict[str, bytes] = OrderedDict()
        self.lock = threading.Lock()

    def keeps(self, plaintext_size: int) -> bool:
        return self.max_bytes > 0 and plaintext_size <= self.max_object

    def get(self, key: str) -> bytes | None:
        with self.lock:
            data = self.objects.get(key)
            if data is not None:
                self.objects.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self.lock:
            if key in self.objects:
                return
            self.objects[key] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, dropped = self.objects.popitem(last=False)
                self.size -= len(dropped)
