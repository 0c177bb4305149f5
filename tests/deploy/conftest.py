"""Deployment artefacts are checked with the real tools, installed from PyPI by the test extra."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ctxcloud"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def signing_keys(*kids: str, algorithm: str = "ES256") -> dict[str, str]:
    """A value of CTXCLOUD_JWT_SIGNING_KEYS (before json.dumps): one fresh private key per kid,
    as PKCS#8 PEM, the form `ctxcloud keys new-signing-key` prints (ES256: EC P-256; EdDSA:
    Ed25519)."""

    def pem() -> str:
        if algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = ed25519.Ed25519PrivateKey.generate()
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    return {kid: pem() for kid in kids}
