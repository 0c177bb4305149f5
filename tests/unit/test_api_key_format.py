"""The API key format: a fixed start, a lookup prefix and a 256-bit secret."""

from __future__ import annotations

import pytest

from ctxcloud.plugins.auth_apikey.keys import (
    KEY_EXAMPLE,
    KEY_PATTERN,
    generate_key,
    key_hash,
    key_prefix,
)


def test_generated_keys_have_the_documented_shape():
    seen = set()
    for _ in range(200):
        prefix, key = generate_key()
        assert KEY_PATTERN.fullmatch(key) and key_prefix(key) == prefix
        assert len(key) == 56 and len(key.split("_", 2)[2]) == 43  # 32 random bytes
        seen.add(prefix)
    assert len(seen) == 200
    assert KEY_PATTERN.fullmatch(KEY_EXAMPLE)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "ctx_",
        "ctx_ABCDEFGH_" + "a" * 43,
        "ctx_abcdefgh_" + "a" * 42,
        "ctx_abcdefgh_" + "a" * 44,
        "ctx_abcdefgh-" + "a" * 43,
        "xtc_abcdefgh_" + "a" * 43,
        "ctx_abcdefgh_" + "a" * 42 + "=",
        " ctx_abcdefgh_" + "a" * 43,
        "ctx_abcdefgh_" + "a" * 42 + "\n",
    ],
)
def test_anything_else_is_not_a_key(candidate):
    assert key_prefix(candidate) is None


def test_the_hash_is_keyed():
    _, key = generate_key()
    assert key_hash(b"pepper-1", key) != key_hash(b"pepper-2", key)
    assert len(key_hash(b"pepper-1", key)) == 64
