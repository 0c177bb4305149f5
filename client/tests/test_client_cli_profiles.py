"""`ctx login`'s profiles: a 0600 file in a 0700 folder (or the keyring), env overrides,
secrets from stdin only and never printed."""

from __future__ import annotations

import io
import json
import stat
import sys
import types

import pytest

from ctxcloud_client import cli
from ctxcloud_client.cli_errors import CommandError
from ctxcloud_client.profiles import Profile, load_profile, profiles_path, save_profile

SECRET = "ctx_SECRETSECRET"


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    for name in ("CTX_URL", "CTX_API_KEY", "CTX_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CTX_CONFIG_DIR", str(tmp_path / "config" / "ctx"))
    monkeypatch.setenv("CTX_NO_KEYRING", "1")
    return {"CTX_CONFIG_DIR": str(tmp_path / "config" / "ctx"), "CTX_NO_KEYRING": "1"}


def test_the_file_is_0600_in_a_0700_folder(env):
    assert save_profile(Profile("default", "http://a", api_key=SECRET), env) == "file"
    path = profiles_path(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    save_profile(Profile("ci", "http://b", client_id="ctxc_1", client_secret="s3"), env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_profile(None, env) == Profile("default", "http://a", api_key=SECRET)
    assert load_profile("ci", env).client_kwargs() == {"client_id": "ctxc_1", "client_secret": "s3"}
    assert SECRET not in repr(load_profile(None, env))


def test_environment_overrides(env):
    save_profile(Profile("default", "http://a", api_key=SECRET), env)
    save_profile(Profile("other", "http://o", api_key="ctx_other"), env)
    assert load_profile(None, {**env, "CTX_PROFILE": "other"}).url == "http://o"
    assert load_profile(None, {**env, "CTX_URL": "http://z/"}).url == "http://z"
    assert load_profile(None, {**env, "CTX_API_KEY": "ctx_env"}).api_key == "ctx_env"
    # Both set: no file needed at all.
    bare = {"CTX_CONFIG_DIR": env["CTX_CONFIG_DIR"] + "-none"}
    both = load_profile(None, {**bare, "CTX_URL": "http://e", "CTX_API_KEY": "ctx_e"})
    assert (both.url, both.api_key) == ("http://e", "ctx_e")
    with pytest.raises(CommandError, match="ctx login"):
        load_profile(None, bare)
    with pytest.raises(CommandError, match="CTX_API_KEY"):
        load_profile(None, {**bare, "CTX_URL": "http://e"})


def test_a_working_keyring_holds_the_secret_and_the_file_only_a_marker(env, monkeypatch):
    store: dict = {}
    fake = types.ModuleType("keyring")
    fake.get_keyring = lambda: object()
    fake.set_password = lambda service, user, secret: store.__setitem__((service, user), secret)
    fake.get_password = lambda service, user: store.get((service, user))
    backends = types.ModuleType("keyring.backends")
    fail = types.ModuleType("keyring.backends.fail")
    fail.Keyring = type("Keyring", (), {})
    monkeypatch.setitem(sys.modules, "keyring", fake)
    monkeypatch.setitem(sys.modules, "keyring.backends", backends)
    monkeypatch.setitem(sys.modules, "keyring.backends.fail", fail)
    with_keyring = {**env, "CTX_NO_KEYRING": ""}
    assert save_profile(Profile("default", "http://a", api_key=SECRET), with_keyring) == "keyring"
    assert SECRET not in profiles_path(env).read_text()
    assert load_profile(None, with_keyring).api_key == SECRET
    # A keyring that refuses: the file takes the secret.
    fake.set_password = lambda *args: (_ for _ in ()).throw(RuntimeError("locked"))
    assert save_profile(Profile("default", "http://a", api_key=SECRET), with_keyring) == "file"
    assert load_profile(None, with_keyring).api_key == SECRET


def test_login_reads_the_secret_from_stdin_checks_it_and_never_prints_it(
    env, api, monkeypatch, capsys
):
    api.get("/auth/whoami").respond(
        200, json={"type": "api_key", "id": "key_1", "tenant": {"slug": "acme"}, "permissions": []}
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    code = cli.main(["login", "--url", "http://ctx.test", "--api-key-stdin", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and SECRET not in out + err
    answer = json.loads(out)
    assert answer["actor"] == {"type": "api_key", "id": "key_1", "tenant": "acme"}
    assert answer["secret_stored_in"] == "file"
    assert api.calls.last.request.headers["Authorization"] == f"Bearer {SECRET}"
    assert load_profile(None, env).api_key == SECRET


def test_login_with_a_refused_key_saves_nothing(env, api, monkeypatch, capsys):
    api.get("/auth/whoami").respond(
        401,
        json={"status": 401, "code": "unauthorized", "detail": "Bad key.", "request_id": "r-1"},
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    assert cli.main(["login", "--url", "http://ctx.test", "--api-key-stdin"]) == 1
    err = capsys.readouterr().err
    assert "Bad key." in err and "r-1" in err and SECRET not in err
    assert not profiles_path(env).exists()


def test_secrets_never_come_from_argv(env, capsys):
    with pytest.raises(SystemExit) as usage:
        cli.main(["login", "--url", "http://x", "--api-key", SECRET])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        cli.main(["login", "--url", "http://x", "--client-id", "ctxc_1"])
    assert usage.value.code == 2
