"""Configuration layering and production's refusal to run on development defaults."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ctxcloud import create_app
from ctxcloud.settings import ConfigError
from ctxcloud.signing_keys import new_signing_key


def test_layers_apply_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXCLOUD_LOG_LEVEL", "ERROR")  # env beats config/testing.py
    monkeypatch.setenv("CTXCLOUD_DATABASE_POOL_SIZE", "3")  # parsed as JSON
    app = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), "DATABASE_POOL_TIMEOUT": 2})
    assert app.config["API_TITLE"] == "ctxcloud"  # config/default.py
    assert app.config["TESTING"] is True  # config/testing.py
    assert app.config["LOG_LEVEL"] == "ERROR"
    assert app.config["DATABASE_POOL_SIZE"] == 3
    assert app.config["DATABASE_POOL_TIMEOUT"] == 2  # the argument beats everything


def test_argument_beats_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXCLOUD_STORAGE_BACKEND", "nope")
    app = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), "STORAGE_BACKEND": "local"})
    assert app.config["STORAGE_BACKEND"] == "local"


def test_unknown_environment_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXCLOUD_ENV", "staging")
    with pytest.raises(ConfigError, match="CTXCLOUD_ENV='staging'"):
        create_app({"DATA_DIR": str(tmp_path)})


def test_production_refuses_to_start_naming_every_missing_secret(tmp_path):
    with pytest.raises(ConfigError) as info:
        create_app({"ENV": "production", "DATA_DIR": str(tmp_path)})
    message = str(info.value)
    for name in (
        "CTXCLOUD_MASTER_KEYS",
        "CTXCLOUD_JWT_SIGNING_KEYS",
        "CTXCLOUD_API_KEY_PEPPER",
        "CTXCLOUD_DATABASE_URL",
    ):
        assert name in message
    assert "CTXCLOUD_JWT_SECRET_KEY" not in message  # only the HS256 opt-in needs it
    assert not (tmp_path / "dev-secrets.json").exists()


def test_production_with_the_hs256_opt_in_needs_the_shared_secret_instead(tmp_path):
    with pytest.raises(ConfigError) as info:
        create_app({"ENV": "production", "DATA_DIR": str(tmp_path), "JWT_ALGORITHM": "HS256"})
    assert "CTXCLOUD_JWT_SECRET_KEY" in str(info.value)
    assert "CTXCLOUD_JWT_SIGNING_KEYS" not in str(info.value)


def test_production_starts_with_its_secrets(tmp_path):
    key = "A" * 43 + "="
    kid, pem = new_signing_key()
    app = create_app(
        {
            "ENV": "production",
            "DATA_DIR": str(tmp_path),
            "MASTER_KEYS": {"prod-1": key},
            "JWT_SIGNING_KEYS": json.dumps({kid: pem}),
            "API_KEY_PEPPER": "p" * 64,
            "DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3",
        }
    )
    assert app.extensions["ctxcloud"].keyring.active_id == "prod-1"
    assert list(app.extensions["ctxcloud"].signing_keys.private) == [kid]
    assert not (tmp_path / "dev-secrets.json").exists()


def test_development_generates_secrets_once_with_private_mode(tmp_path, caplog):
    first = create_app({"ENV": "development", "DATA_DIR": str(tmp_path)})
    path = tmp_path / "dev-secrets.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = create_app({"ENV": "development", "DATA_DIR": str(tmp_path)})
    assert first.config["JWT_SIGNING_KEYS"] == second.config["JWT_SIGNING_KEYS"]
    assert set(json.loads(path.read_text())) == {
        "MASTER_KEYS",
        "JWT_SECRET_KEY",  # for the HS256 opt-in
        "JWT_SIGNING_KEYS:ES256",
        "JWT_SIGNING_KEYS:EdDSA",
        "API_KEY_PEPPER",
    }


def test_bad_master_keys_are_refused_without_echoing_them(tmp_path):
    with pytest.raises(Exception) as info:
        create_app(
            {
                "ENV": "testing",
                "DATA_DIR": str(tmp_path),
                "MASTER_KEYS": {"k1": "c2VjcmV0LXRvby1zaG9ydA=="},
            }
        )
    assert "c2VjcmV0LXRvby1zaG9ydA" not in str(info.value)


def test_unsupported_database_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unsupported scheme 'mysql'"):
        create_app(
            {
                "ENV": "testing",
                "DATA_DIR": str(tmp_path),
                "DATABASE_URL": "mysql://root@localhost/x",
            }
        )


def test_processes_starting_together_share_one_set_of_generated_secrets(tmp_path):
    """gunicorn boots its workers at once: each must read the same generated secrets (two
    JWT secrets would make the workers refuse each other's tokens), and none may fail."""
    import multiprocessing

    from ctxcloud import dev_secrets

    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        results = pool.map(dev_secrets.load_or_create, [str(tmp_path / "data")] * 16)
    assert all(result == results[0] for result in results)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev-secrets.json",
        "dev-secrets.json.lock",
    ]
