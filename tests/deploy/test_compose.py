"""docker-compose.yml and .env.example: the stack, its order of start, and every setting."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.deploy import proxyconf
from tests.deploy.conftest import ROOT, signing_keys

pytestmark = pytest.mark.deploy

SERVICES = {"app", "proxy", "migrate", "postgres", "redis", "minio", "minio-init"}
# Settings the service needs on this stack, each from .env.
REQUIRED_APP_ENV = (
    "CTXCLOUD_DATABASE_URL",
    "CTXCLOUD_REDIS_URL",
    "CTXCLOUD_STORAGE_BACKEND",
    "CTXCLOUD_S3_ENDPOINT_URL",
    "CTXCLOUD_S3_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "CTXCLOUD_MASTER_KEYS",
    "CTXCLOUD_JWT_SIGNING_KEYS",
    "CTXCLOUD_API_KEY_PEPPER",
)
# Secrets the example must leave empty: no working secret is ever committed.
SECRETS = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "CTXCLOUD_MASTER_KEYS",
    "CTXCLOUD_JWT_SIGNING_KEYS",
    "CTXCLOUD_JWT_SECRET_KEY",
    "CTXCLOUD_API_KEY_PEPPER",
    "CTXCLOUD_AZURE_CONNECTION_STRING",
    "CTXCLOUD_AZURE_ACCOUNT_KEY",
)
# The gcs and azure backends' settings the chart also takes (config.gcs, config.azure, and the
# two Azure secrets): passed through from .env, empty (unset) unless a deployment sets them.
CLOUD_STORAGE_ENV = (
    "CTXCLOUD_GCS_BUCKET",
    "CTXCLOUD_GCS_PREFIX",
    "CTXCLOUD_GCS_ENDPOINT_URL",
    "CTXCLOUD_GCS_CHUNK_SIZE",
    "CTXCLOUD_AZURE_CONTAINER",
    "CTXCLOUD_AZURE_CONNECTION_STRING",
    "CTXCLOUD_AZURE_ACCOUNT_URL",
    "CTXCLOUD_AZURE_ACCOUNT_KEY",
    "CTXCLOUD_AZURE_PREFIX",
    "CTXCLOUD_AZURE_BLOCK_SIZE",
)
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def read_dotenv(path: Path) -> dict[str, str]:
    """A .env file as NAME -> raw value (compose's dotenv syntax: NAME=value, # comments)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert match, f"{path.name}:{number}: not NAME=value: {line!r}"
        name, value = match.groups()
        assert name not in values, f"{path.name} defines {name} twice"
        values[name] = value
    return values


def compose_reads(raw: str) -> str:
    """The value compose takes from a .env line's raw value, for the two forms .env.example
    recommends (compose-go's dotenv parser): in single quotes, the text between them exactly,
    backslashes included; unquoted, the rest of the line up to an inline " #" comment, trailing
    blanks dropped, with ${...} interpolated (so a "$" must not occur). Double quotes expand
    escapes such as \\n, which a JSON value with PEM keys cannot take: refused here."""
    assert not raw.startswith('"'), "in double quotes compose turns each \\n into a line break"
    if raw.startswith("'"):
        assert raw.endswith("'") and len(raw) > 1, raw
        return raw[1:-1]
    assert "$" not in raw, "compose would interpolate it"
    return raw.split(" #", 1)[0].rstrip()


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    """.env.example as NAME -> raw value."""
    return read_dotenv(ROOT / ".env.example")


def test_the_stack_has_every_service(services):
    assert set(services) == SERVICES
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["minio-init"]["image"].startswith("minio/mc")


def test_app_and_migrate_run_the_image_built_here(services):
    for name in ("app", "migrate"):
        assert services[name]["build"]["context"] == "."
    assert services["app"]["image"] == services["migrate"]["image"]
    assert services["migrate"]["command"] == ["ctxcloud", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert "command" not in services["app"], "the app runs the image's gunicorn CMD"


def test_start_order_waits_for_health_and_one_shots(services):
    app = services["app"]["depends_on"]
    assert app["migrate"]["condition"] == "service_completed_successfully"
    assert app["minio-init"]["condition"] == "service_completed_successfully"
    assert app["postgres"]["condition"] == "service_healthy"
    assert app["redis"]["condition"] == "service_healthy"
    migrate = services["migrate"]["depends_on"]
    assert migrate["postgres"]["condition"] == "service_healthy"
    assert migrate["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_long_running_services_have_healthchecks(services):
    for name in ("app", "proxy", "postgres", "redis", "minio"):
        check = services[name]["healthcheck"]
        assert check["test"] and check["interval"] and check["retries"], name
    assert "/api/v1/health/live" in " ".join(services["app"]["healthcheck"]["test"])
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_minio_init_creates_the_bucket_and_a_scoped_key(services):
    script = " ".join(services["minio-init"]["command"])
    assert 'mc mb --ignore-existing "local/$$CTXCLOUD_S3_BUCKET"' in script
    assert "mc admin user add" in script and "policy attach" in script


def test_app_gets_every_required_setting_from_env(services):
    env = services["app"]["environment"]
    assert env["CTXCLOUD_ENV"] == "production"
    for name in REQUIRED_APP_ENV:
        assert name in env, name
        match = REFERENCE.fullmatch(str(env[name]))
        assert match and match.group(1) == name, f"{name} must come from .env as ${{{name}}}"
    assert services["migrate"]["environment"] == {
        k: v for k, v in env.items() if k in services["migrate"]["environment"]
    }
    for name in REQUIRED_APP_ENV:
        assert name in services["migrate"]["environment"], name


def test_secrets_must_be_set_or_compose_refuses(services):
    env = services["app"]["environment"]
    for name in ("CTXCLOUD_MASTER_KEYS", "CTXCLOUD_JWT_SIGNING_KEYS", "CTXCLOUD_API_KEY_PEPPER"):
        assert REFERENCE.fullmatch(env[name]).group(2) == ":?", name


def test_token_signing_settings(services, env_example):
    """The signing keys are required; the algorithm (empty: the service's ES256) and the HS256
    shared secret are optional, passed through empty unless .env sets them."""
    for service in ("app", "migrate"):
        env = services[service]["environment"]
        keys = REFERENCE.fullmatch(env["CTXCLOUD_JWT_SIGNING_KEYS"])
        assert keys.group(1) == "CTXCLOUD_JWT_SIGNING_KEYS" and keys.group(2) == ":?"
        assert "new-signing-key" in keys.group(3)  # compose's refusal says how to make one
        for name in ("CTXCLOUD_JWT_ALGORITHM", "CTXCLOUD_JWT_SECRET_KEY"):
            match = REFERENCE.fullmatch(env[name])
            assert match and match.group(1) == name, name
            assert (match.group(2), match.group(3)) == (":-", ""), f"{name}: optional, empty"
    assert env_example["CTXCLOUD_JWT_ALGORITHM"] == ""  # the default stack: ES256
    # .env.example says how to make the keys, right above the variable.
    lines = (ROOT / ".env.example").read_text().splitlines()
    number = lines.index("CTXCLOUD_JWT_SIGNING_KEYS=")
    comment = []
    for line in reversed(lines[:number]):
        if not line.startswith("#"):
            break
        comment.append(line)
    assert "ctxcloud keys new-signing-key" in "\n".join(comment)


def test_defaults_point_the_service_at_the_compose_stack(env_example, services):
    env = services["app"]["environment"]
    assert env_example["CTXCLOUD_STORAGE_BACKEND"] == "s3"
    assert env_example["CTXCLOUD_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "@postgres:5432/" in env_example["CTXCLOUD_DATABASE_URL"]
    assert "@redis:6379/" in env_example["CTXCLOUD_REDIS_URL"]
    assert REFERENCE.fullmatch(env["CTXCLOUD_S3_ENDPOINT_URL"]).group(3) == "http://minio:9000"


def test_every_referenced_variable_is_in_env_example(env_example):
    text = (ROOT / "docker-compose.yml").read_text()
    referenced = {m.group(1) for m in REFERENCE.finditer(text.replace("$$", ""))}
    assert referenced, "the compose file takes its settings from .env"
    missing = sorted(referenced - set(env_example))
    assert not missing, f".env.example lacks {missing}"
    # And .env.example's own references resolve to names defined above them.
    seen: list[str] = []
    for name, value in env_example.items():
        for ref in REFERENCE.finditer(value):
            assert ref.group(1) in seen, f"{name} refers to {ref.group(1)} before it is defined"
        seen.append(name)


def test_the_docs_generator_fills_every_secret_compose_requires(tmp_path, services):
    """docs/deployment.md's generator, run on a copy of .env.example, leaves no required
    variable empty and writes values compose reads as the service needs them: the signing key
    comes from `ctxcloud keys new-signing-key` in the image compose runs (here a stand-in
    `docker` that prints what the command prints, and a log line on stderr)."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text.split("## Docker Compose quick start", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"python3 - <<'EOF'\n(.*?)^ *EOF$", section, re.S | re.M)
    image = REFERENCE.fullmatch(services["app"]["image"]).group(3)  # ctxcloud:local
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"assert sys.argv[1:] == ['run', '--rm', {image!r}, 'ctxcloud', 'keys',"
        " 'new-signing-key'], sys.argv\n"
        'print(\'{"level": "WARNING", "message": "a log line"}\', file=sys.stderr)\n'
        f"print(json.dumps({signing_keys('20260101-0a1b2c3d')!r}))\n"
    )
    docker.chmod(0o755)
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(ROOT / ".env.example", work / ".env")
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=work,
        env={**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"},
        check=True,
        timeout=60,
    )
    env = read_dotenv(work / ".env")
    assert (work / ".env").stat().st_mode & 0o777 == 0o600
    compose_text = (ROOT / "docker-compose.yml").read_text()
    required = {m.group(1) for m in REFERENCE.finditer(compose_text) if m.group(2) == ":?"}
    assert "CTXCLOUD_JWT_SIGNING_KEYS" in required
    assert sorted(name for name in required if not env[name]) == []
    for name in SECRETS:
        if name != "CTXCLOUD_JWT_SECRET_KEY" and name not in CLOUD_STORAGE_ENV:
            assert env[name], f"{name} left empty"
    assert env["CTXCLOUD_JWT_SECRET_KEY"] == ""  # HS256 only
    (pem,) = json.loads(compose_reads(env["CTXCLOUD_JWT_SIGNING_KEYS"])).values()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    (master,) = json.loads(compose_reads(env["CTXCLOUD_MASTER_KEYS"])).values()
    assert len(base64.b64decode(master)) == 32


def test_env_example_commits_no_secret(env_example):
    for name in SECRETS:
        assert env_example[name] == "", f"{name} must be empty in .env.example"


def test_real_env_file_is_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


def test_app_container_is_hardened(services):
    app = services["app"]
    assert app["read_only"] is True
    assert app["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in app["security_opt"]
    assert "/tmp" in app["tmpfs"]
    assert any(v.endswith(":/var/lib/ctxcloud") for v in app["volumes"])
    assert app["environment"]["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    # Metrics are published on loopback only, and the API not at all (the proxy is the entry).
    assert app["ports"] == ["127.0.0.1:${CTXCLOUD_METRICS_PORT:-9100}:9100"]
    assert app["environment"]["GUNICORN_BIND"] == "0.0.0.0:8000"  # on the compose network


# ---- the buffering proxy -------------------------------------------------------------------


def test_only_the_proxy_publishes_the_api(services):
    published = {
        name: service.get("ports", []) for name, service in services.items() if "ports" in service
    }
    assert published["proxy"] == ["${CTXCLOUD_HTTP_PORT:-8000}:8080"]
    assert set(published) == {"proxy", "app"}
    assert all(port.startswith("127.0.0.1:") for port in published["app"])


def test_proxy_runs_the_charts_nginx_template(services):
    proxy = services["proxy"]
    source, target, mode = proxy["volumes"][0].split(":")
    assert (ROOT / source).resolve() == proxyconf.TEMPLATE  # the chart's file, not a copy
    assert (target, mode) == ("/etc/nginx/templates/nginx.conf.template", "ro")
    env = proxy["environment"]
    # The image's entrypoint writes /tmp/nginx.conf from it; nginx is started on that file.
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"] == "/tmp"
    assert env["NGINX_ENVSUBST_FILTER"] == "^NGINX_"
    assert proxy["command"][:3] == ["nginx", "-c", "/tmp/nginx.conf"]
    assert proxy["command"][-2:] == ["-g", "daemon off;"]
    assert env["NGINX_UPSTREAM"] == "app:8000"
    # Every placeholder of the template has a value here, and nothing else is set.
    filled = {name for name in env if not name.startswith("NGINX_ENVSUBST_")}
    assert filled == proxyconf.placeholders()
    assert proxy["depends_on"]["app"]["condition"] == "service_healthy"
    assert "/api/v1/health/live" in " ".join(proxy["healthcheck"]["test"])
    assert "8080" in " ".join(proxy["healthcheck"]["test"])


def test_proxy_container_is_hardened(services, compose):
    proxy = services["proxy"]
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in proxy["security_opt"]
    assert "user" not in proxy  # the unprivileged image's own non-root user
    assert proxy["image"].startswith("${CTXCLOUD_PROXY_IMAGE:-nginxinc/nginx-unprivileged:")
    assert proxy["tmpfs"] == ["/tmp"]  # the pid file and the rendered nginx.conf
    # Request bodies are spooled to a named volume (disk), not to the tmpfs (memory).
    spool = next(v for v in proxy["volumes"] if v.endswith(":/var/cache/nginx"))
    assert spool.split(":")[0] in compose["volumes"]
    assert proxy["ulimits"]["nofile"]["soft"] >= 2 * 4096


def test_app_trusts_exactly_the_proxy_hop(services, env_example):
    env = services["app"]["environment"]
    assert REFERENCE.fullmatch(env["CTXCLOUD_TRUSTED_PROXY_HOPS"]).group(3) == "1"
    assert env_example["CTXCLOUD_TRUSTED_PROXY_HOPS"] == "1"


def test_proxy_defaults_match_env_example_and_the_chart(services, env_example):
    """Each knob's compose default, its .env.example value and the chart's default agree, so the
    two deployments start from the same nginx.conf."""
    env = services["proxy"]["environment"]
    for name, raw in env.items():
        match = REFERENCE.fullmatch(str(raw))
        if match and match.group(1) == name:
            assert env_example[name] == match.group(3), name
    compose_defaults = proxyconf.render_compose()
    configured = proxyconf.render_compose(env_example)
    assert configured == compose_defaults  # .env.example changes nothing
    chart = proxyconf.render_chart()
    assert chart.replace("server 127.0.0.1:8000;", "server app:8000;") == compose_defaults


def test_incomplete_multipart_uploads_expire_on_minio(services):
    minio = services["minio"]["environment"]
    assert minio["MINIO_API_STALE_UPLOADS_EXPIRY"] == "24h"
    assert minio["MINIO_API_STALE_UPLOADS_CLEANUP_INTERVAL"] == "6h"
    # MinIO refuses the S3 lifecycle rule: minio-init does not try it (docs/storage.md).
    script = " ".join(services["minio-init"]["command"])
    assert "AbortIncompleteMultipartUpload" not in script


# ---- other storage backends: the plugins built in, their settings passed through -----------


def test_storage_plugins_build_argument_comes_from_env_and_is_empty_by_default(
    services, env_example
):
    for name in ("app", "migrate"):
        args = services[name]["build"]["args"]
        match = REFERENCE.fullmatch(args["STORAGE_PLUGINS"])
        assert match and match.group(1) == "STORAGE_PLUGINS", name
        assert (match.group(2), match.group(3)) == (":-", ""), "optional, empty by default"
    assert env_example["STORAGE_PLUGINS"] == ""  # the default stack: ctxcloud alone on MinIO
    # Every build argument compose passes is one the Dockerfile declares.
    dockerfile = (ROOT / "Dockerfile").read_text()
    for arg in services["app"]["build"]["args"]:
        assert re.search(rf"^ARG {arg}(=|$)", dockerfile, re.M), arg


def test_gcs_and_azure_settings_pass_through_from_env(services, env_example):
    documented = set(
        re.findall(
            r"`(CTXCLOUD_(?:GCS|AZURE)_[A-Z_]+)`", (ROOT / "docs/configuration.md").read_text()
        )
    )
    for service in ("app", "migrate"):
        env = services[service]["environment"]
        passed = {name for name in env if name.startswith(("CTXCLOUD_GCS_", "CTXCLOUD_AZURE_"))}
        assert passed == set(CLOUD_STORAGE_ENV), service
        assert passed <= documented, "each is a setting of docs/configuration.md"
        for name in passed:
            match = REFERENCE.fullmatch(env[name])
            assert match and match.group(1) == name, name
            # Never required: the default stack starts without any of them.
            assert (match.group(2), match.group(3)) == (":-", ""), name
    for name in CLOUD_STORAGE_ENV:
        assert env_example[name] == "", f"{name}: empty in .env.example (unset: MinIO stays)"
    # The default stack still stores on MinIO.
    app = services["app"]["environment"]
    assert REFERENCE.fullmatch(app["CTXCLOUD_STORAGE_BACKEND"]).group(3) == "s3"
    assert env_example["CTXCLOUD_STORAGE_BACKEND"] == "s3"


def test_gcs_credentials_override_in_the_docs(services):
    """docs/deployment.md's docker-compose.override.yml: the key file as a compose secret for
    both containers that start ctxcloud, named by GOOGLE_APPLICATION_CREDENTIALS."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    (block,) = [
        block
        for block in re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
        if block.startswith("# docker-compose.override.yml")
    ]
    override = yaml.safe_load(block)
    (secret,) = override["secrets"]
    key_file = Path(override["secrets"][secret]["file"])
    assert key_file.is_absolute() and not key_file.is_relative_to(ROOT), "keep keys out"
    assert set(override["services"]) == {"app", "migrate"} <= set(services)
    for service in override["services"].values():
        assert service["secrets"] == [secret]
        assert service["environment"] == {
            "GOOGLE_APPLICATION_CREDENTIALS": f"/run/secrets/{secret}"
        }
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/docker-compose.override.yml" in ignored
