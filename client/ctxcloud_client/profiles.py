"""Where `ctx` keeps servers and credentials: named profiles in a user config file (0600, in a
0700 folder), the secret in the system keyring when one works; `CTX_URL`, `CTX_API_KEY` and
`CTX_PROFILE` override them."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxcloud_client.cli_errors import CommandError

PROFILES_FILE = "profiles.json"
DEFAULT_PROFILE = "default"
KEYRING_SERVICE = "ctxcloud-ctx"
IN_KEYRING = "keyring"  # the file's marker where the secret went to the keyring


@dataclass(frozen=True)
class Profile:
    """A server and one credential: an API key (or access token), or an OAuth 2 client."""

    name: str
    url: str
    api_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:  # never the secret
        kind = "client_id=" + repr(self.client_id) if self.client_id else "api_key=..."
        return f"Profile({self.name!r}, {self.url!r}, {kind})"

    def client_kwargs(self) -> dict[str, str]:
        if self.client_id is not None:
            return {"client_id": self.client_id, "client_secret": self.client_secret or ""}
        return {"api_key": self.api_key or ""}


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """`CTX_CONFIG_DIR`, else the platform's user config folder for `ctx`."""
    env = os.environ if env is None else env
    if env.get("CTX_CONFIG_DIR"):
        return Path(env["CTX_CONFIG_DIR"])
    import platformdirs

    return Path(platformdirs.user_config_dir("ctx", appauthor=False))


def profiles_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / PROFILES_FILE


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"profiles": {}}
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: unreadable profiles file ({exc}).") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        raise CommandError(f"{path}: malformed profiles file.")
    return raw


def _write_file(path: Path, data: dict[str, Any]) -> None:
    """Created 0600 in a 0700 folder, written whole (a temporary file renamed over it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    handle, temp = tempfile.mkstemp(prefix=".profiles-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _keyring(env: Mapping[str, str]) -> Any | None:
    """The `keyring` module when it is installed, not disabled (`CTX_NO_KEYRING=1`) and its
    backend is a real one; else None (the secret goes to the file)."""
    if env.get("CTX_NO_KEYRING", "") not in ("", "0"):
        return None
    try:
        import keyring  # optional: imported only here
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or "null" in type(backend).__module__.lower():
            return None
        return keyring
    except Exception:  # not installed, or a broken backend: the file will do
        return None


def _keyring_user(name: str, url: str) -> str:
    return f"{name}@{url}"


def save_profile(profile: Profile, env: Mapping[str, str] | None = None) -> str:
    """Store a profile; answer where its secret went: `"keyring"` or `"file"`."""
    env = os.environ if env is None else env
    path = profiles_path(env)
    data = _read_file(path)
    secret = profile.client_secret if profile.client_id is not None else profile.api_key
    entry: dict[str, Any] = {"url": profile.url}
    if profile.client_id is not None:
        entry["client_id"] = profile.client_id
    secret_field = "client_secret" if profile.client_id is not None else "api_key"
    where = "file"
    keyring = _keyring(env)
    if keyring is not None:
        try:
            keyring.set_password(KEYRING_SERVICE, _keyring_user(profile.name, profile.url), secret)
            entry[secret_field] = IN_KEYRING
            entry["secret_in"] = IN_KEYRING
            where = "keyring"
        except Exception:  # a keyring that refuses (locked, headless): fall back to the file
            where = "file"
    if where == "file":
        entry[secret_field] = secret
    data["profiles"][profile.name] = entry
    _write_file(path, data)
    return where


def load_profile(name: str | None = None, env: Mapping[str, str] | None = None) -> Profile:
    """The profile to use: `name`, else `CTX_PROFILE`, else `default`, with `CTX_URL` and
    `CTX_API_KEY` over it (with both set, no file is needed at all)."""
    env = os.environ if env is None else env
    name = name or env.get("CTX_PROFILE") or DEFAULT_PROFILE
    url_override = env.get("CTX_URL") or None
    key_override = env.get("CTX_API_KEY") or None
    if url_override and key_override:
        return Profile(name, url_override.rstrip("/"), api_key=key_override)
    path = profiles_path(env)
    entry = _read_file(path)["profiles"].get(name)
    if entry is None:
        if url_override or key_override:
            missing = "CTX_API_KEY" if url_override else "CTX_URL"
            raise CommandError(f"{missing} is not set, and there is no profile {name!r}.")
        raise CommandError(
            f"No profile {name!r} ({path}): run `ctx login --url URL --api-key-stdin`, "
            "or set CTX_URL and CTX_API_KEY."
        )
    url = (url_override or entry.get("url") or "").rstrip("/")
    if not url:
        raise CommandError(f"Profile {name!r} has no url.")
    if key_override:
        return Profile(name, url, api_key=key_override)
    secret_field = "client_secret" if entry.get("client_id") else "api_key"
    secret = entry.get(secret_field)
    if entry.get("secret_in") == IN_KEYRING:
        secret = None
        keyring = _keyring(env)
        if keyring is not None:
            with contextlib.suppress(Exception):
                secret = keyring.get_password(
                    KEYRING_SERVICE, _keyring_user(name, entry.get("url", ""))
                )
        if not secret:
            raise CommandError(
                f"Profile {name!r}: its secret is in the system keyring, which cannot be read "
                "now; run `ctx login` again."
            )
    if not isinstance(secret, str) or not secret:
        raise CommandError(f"Profile {name!r} has no credential; run `ctx login` again.")
    if entry.get("client_id"):
        return Profile(name, url, client_id=entry["client_id"], client_secret=secret)
    return Profile(name, url, api_key=secret)
