"""The Helm chart, linted and rendered by Helm's own code (helm-python-sdk), every manifest
validated against the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail)."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import CHART, ROOT, signing_keys

pytestmark = pytest.mark.deploy

# The newest Kubernetes whose schemas kubernetes-validate ships, and the oldest the chart
# supports (Chart.yaml kubeVersion).
LATEST_KUBE = kubernetes_validate.utils.latest_version()
OLDEST_KUBE = "1.27.0"
KUBE_VERSIONS = sorted({OLDEST_KUBE, LATEST_KUBE})
PRODUCTION_VALUES = CHART / "values-production.example.yaml"
RELEASE = "ctxcloud"
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error
# Token signing keys as `ctxcloud keys new-signing-key` prints them (merged: several keys).
ES256_KEYS = signing_keys("20260101-0a1b2c3d", "20260701-4e5f6a7b")
EDDSA_KEYS = signing_keys("20260101-8c9d0e1f", algorithm="EdDSA")


def render(values: dict | None = None, **options) -> dict[str, list[dict]]:
    """Manifests by template file name (NOTES.txt left out), as parsed YAML documents."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace="ctxcloud", **options)
    out: dict[str, list[dict]] = {}
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        if docs:
            out[Path(path).name] = docs
    return out


def notes(values: dict | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace="ctxcloud")
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def objects(manifests: dict[str, list[dict]]) -> list[dict]:
    return [doc for docs in manifests.values() for doc in docs]


def one(manifests: dict[str, list[dict]], kind: str, name: str | None = None) -> dict:
    """The one object of `kind` (of that name: the service's ConfigMap is "ctxcloud", the
    proxy's "ctxcloud-proxy")."""
    if kind == "ConfigMap" and name is None:
        name = RELEASE
    found = [
        doc
        for doc in objects(manifests)
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def volumes(manifests: dict[str, list[dict]]) -> dict[str, dict]:
    """The Deployment's volumes by name."""
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    return {volume["name"]: volume for volume in pod["volumes"]}


def containers(manifests: dict[str, list[dict]]) -> dict[str, dict]:
    """The Deployment's containers by name."""
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    return {container["name"]: container for container in pod["containers"]}


def production_values() -> dict:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


def assert_valid(manifests: dict[str, list[dict]], version: str) -> list[str]:
    validated = []
    for doc in objects(manifests):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message}")
        validated.append(doc["kind"])
    return validated


# ---- lint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values_file", [None, PRODUCTION_VALUES, "no-proxy"], ids=["default", "production", "no-proxy"]
)
def test_helm_lint_strict_finds_no_warning_or_error(values_file):
    if values_file == "no-proxy":
        values = {"proxy": {"enabled": False}}
    else:
        values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{LATEST_KUBE}")
    assert report["total_charts_linted"] == 1
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert not problems and not report["errors"], json.dumps(report, indent=2)


def test_chart_metadata():
    with helm.Chart.load(CHART) as chart:
        meta = chart.metadata
        assert chart.schema is not None
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "ctxcloud"
    assert meta["type"] == "application"
    from ctxcloud.version import VERSION

    assert meta["appVersion"] == VERSION


# ---- render + validate -----------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_default_values_render_valid_manifests(version):
    manifests = render()
    kinds = sorted(assert_valid(manifests, version))
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",  # the proxy's nginx.conf
            "Deployment",
            "Job",
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_production_example_renders_valid_manifests(version):
    manifests = render(production_values())
    kinds = sorted(assert_valid(manifests, version))
    # existingSecret: the chart renders no Secret of its own.
    assert "Secret" not in kinds
    for kind in ("Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "PodDisruptionBudget"):
        assert kind in kinds
    assert kinds.count("Service") == 2  # the API and the metrics Service


def test_every_option_on_renders_valid_manifests():
    values = {
        "replicaCount": 2,
        "image": {"digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"team": "ctx"},
        "podLabels": {"tier": "api"},
        "serviceAccount": {"annotations": {"example.com/role": "r"}},
        "service": {"type": "LoadBalancer", "annotations": {"a": "b"}},
        "metrics": {"service": {"enabled": True, "annotations": {"c": "d"}}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tls": [{"secretName": "tls", "hosts": ["ctxcloud.example.com"]}],
        },
        "config": {
            "s3": {
                "bucket": "b",
                "endpointUrl": "https://s3.example.com",
                "region": "r",
                "prefix": "p/",
                "addressingStyle": "path",
            },
            "activeMasterKey": "k2",
            "jwtAlgorithm": "EdDSA",
            "disabledPlugins": "audit_log",
            "extraEnv": {"CTXCLOUD_MAX_JSON_BYTES": "1048576"},
        },
        "gunicorn": {"workers": 3, "accessLog": True},
        "secrets": {
            "masterKeys": '{"k1": "' + base64.b64encode(b"k" * 32).decode() + '"}',
            "jwtSigningKeys": json.dumps(EDDSA_KEYS),
            "apiKeyPepper": "pepper",
            "databaseUrl": "postgresql://u:p@db:5432/ctxcloud",
            "redisUrl": "redis://redis:6379/0",
            "awsAccessKeyId": "AKIA",
            "awsSecretAccessKey": "secret",
        },
        "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "k", "operator": "Exists"}]}
                    ]
                }
            }
        },
        "priorityClassName": "high",
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "extraEnvFrom": [{"configMapRef": {"name": "more"}}],
    }
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    container = containers(manifests)["ctxcloud"]
    assert container["image"] == "ctxcloud@sha256:" + "a" * 64
    config = one(manifests, "ConfigMap")["data"]
    assert config["GUNICORN_WORKERS"] == "3"
    assert config["GUNICORN_ACCESSLOG"] == "-"
    assert config["CTXCLOUD_MAX_JSON_BYTES"] == "1048576"
    assert config["CTXCLOUD_S3_ADDRESSING_STYLE"] == "path"
    assert config["CTXCLOUD_JWT_ALGORITHM"] == "EdDSA"
    secret = one(manifests, "Secret")["data"]
    assert json.loads(base64.b64decode(secret["CTXCLOUD_JWT_SIGNING_KEYS"])) == EDDSA_KEYS
    assert set(secret) == {
        "CTXCLOUD_MASTER_KEYS",
        "CTXCLOUD_JWT_SIGNING_KEYS",
        "CTXCLOUD_API_KEY_PEPPER",
        "CTXCLOUD_DATABASE_URL",
        "CTXCLOUD_REDIS_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]


def _probe(container: dict, name: str) -> dict:
    return container[name]["httpGet"]


def _loopback_probe(container: dict, name: str) -> str:
    """The URL an exec probe fetches with Python's urllib inside the container."""
    command = container[name]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    (url,) = re.findall(r"urlopen\('([^']+)'", command[2])
    return url


def assert_hardened(pod_spec: dict, container: dict) -> None:
    pod = pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/var/lib/ctxcloud"}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    for name in mounts.values():
        assert "emptyDir" in volumes[name]


def assert_proxy_hardened(pod_spec: dict, proxy: dict) -> None:
    ctx = proxy["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in proxy["volumeMounts"]}
    assert set(mounts) == {"/etc/nginx/ctxcloud", "/tmp", "/var/cache/nginx"}
    assert mounts["/etc/nginx/ctxcloud"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert "configMap" in volumes[mounts["/etc/nginx/ctxcloud"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    # The body spool is on disk (an emptyDir without medium: Memory), never in RAM.
    spool = volumes[mounts["/var/cache/nginx"]["name"]]
    assert spool["emptyDir"].get("medium") != "Memory"


def test_three_replicas_render_deployment_hpa_pdb_and_migration_job():
    manifests = render({"replicaCount": 3, "autoscaling": {"enabled": True}})
    kinds = assert_valid(manifests, LATEST_KUBE)
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"):
        assert kind in kinds

    deployment = one(manifests, "Deployment")
    # The HPA owns the replica count: a Deployment value would reset it on every upgrade.
    assert "replicas" not in deployment["spec"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["maxReplicas"] >= 3
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }

    pod_spec = deployment["spec"]["template"]["spec"]
    container, proxy = pod_spec["containers"]
    assert (container["name"], proxy["name"]) == ("ctxcloud", "proxy")
    # gunicorn listens on the pod's loopback behind the proxy: probes run inside the container.
    live, ready = (
        "http://127.0.0.1:8000/api/v1/health/live",
        "http://127.0.0.1:8000/api/v1/health/ready",
    )
    assert _loopback_probe(container, "livenessProbe") == live
    assert _loopback_probe(container, "readinessProbe") == ready
    assert _loopback_probe(container, "startupProbe") == live
    assert _probe(proxy, "readinessProbe") == {"path": "/api/v1/health/live", "port": "http"}
    assert proxy["livenessProbe"]["tcpSocket"] == {"port": "http"}
    for each in (container, proxy):
        assert each["resources"]["requests"]["cpu"]  # the HPA's CPU utilisation needs both
        assert each["resources"]["limits"]
    assert_hardened(pod_spec, container)
    assert_proxy_hardened(pod_spec, proxy)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])

    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]

    job = one(manifests, "Job")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in hooks["helm.sh/hook-delete-policy"]
    job_pod = job["spec"]["template"]["spec"]
    (migrate,) = job_pod["containers"]
    assert migrate["args"] == ["ctxcloud", "db", "upgrade"]
    assert job_pod["restartPolicy"] == "Never"
    assert migrate["image"] == container["image"]
    # The same environment as the service.
    assert migrate["envFrom"] == container["envFrom"]
    assert_hardened(job_pod, migrate)


def test_replica_count_sets_the_deployment_without_autoscaling():
    manifests = render({"replicaCount": 3})
    assert one(manifests, "Deployment")["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in [d["kind"] for d in objects(manifests)]
    assert one(manifests, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_single_replica_gets_no_disruption_budget():
    kinds = [d["kind"] for d in objects(render({"replicaCount": 1}))]
    assert "PodDisruptionBudget" not in kinds


def test_migration_job_reads_config_and_secret_created_before_it():
    manifests = render()
    job_weight = int(one(manifests, "Job")["metadata"]["annotations"]["helm.sh/hook-weight"])
    for kind in ("ConfigMap", "Secret"):
        annotations = one(manifests, kind)["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(annotations["helm.sh/hook-weight"]) < job_weight


def test_without_migrations_config_and_secret_are_ordinary_resources():
    manifests = render({"migrations": {"enabled": False}})
    assert "Job" not in [d["kind"] for d in objects(manifests)]
    for kind in ("ConfigMap", "Secret"):
        assert "annotations" not in one(manifests, kind)["metadata"]
    assert "run `ctxcloud db upgrade` yourself" in notes({"migrations": {"enabled": False}})


def test_migration_pod_is_never_selected_by_the_service_or_pdb():
    manifests = render()
    selector = one(manifests, "Service")["spec"]["selector"]
    job_labels = one(manifests, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in selector.items())
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in selector.items())


def test_config_change_rolls_the_pods():
    def checksums(values):
        deployment = one(render(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    base = checksums(None)
    assert (
        checksums({"config": {"logLevel": "DEBUG"}})["checksum/config"] != base["checksum/config"]
    )
    assert (
        checksums({"secrets": {"jwtSecretKey": "new"}})["checksum/secret"]
        != base["checksum/secret"]
    )
    # Adding a signing key rolls every pod onto it (a rotation waits for that rollout).
    first_key = dict(list(ES256_KEYS.items())[:1])
    one_key = checksums({"secrets": {"jwtSigningKeys": json.dumps(first_key)}})
    two_keys = checksums({"secrets": {"jwtSigningKeys": json.dumps(ES256_KEYS)}})
    assert one_key["checksum/secret"] != two_keys["checksum/secret"]
    assert (
        checksums({"config": {"jwtAlgorithm": "EdDSA"}})["checksum/config"]
        != base["checksum/config"]
    )
    proxy_change = checksums({"proxy": {"clientHeaderTimeout": "5s"}})
    assert proxy_change["checksum/proxy-config"] != base["checksum/proxy-config"]


def test_existing_secret_replaces_the_charts_secret():
    # The chart's own values are ignored, not even checked (this is no JSON object of keys).
    ignored = {
        "existingSecret": "vault-synced",
        "jwtSecretKey": "ignored",
        "jwtSigningKeys": "ignored",
    }
    manifests = render({"secrets": ignored})
    kinds = [d["kind"] for d in objects(manifests)]
    assert "Secret" not in kinds
    container = containers(manifests)["ctxcloud"]
    assert {"secretRef": {"name": "vault-synced"}} in container["envFrom"]
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    assert "ignored" not in json.dumps(objects(manifests))


def test_secret_values_never_appear_in_plain_text():
    secret_value = "s3cr3t-jwt-value"
    manifests = render({"secrets": {"jwtSecretKey": secret_value}})
    assert secret_value not in json.dumps(objects(manifests))
    manifests = render({"secrets": {"jwtSigningKeys": json.dumps(ES256_KEYS)}})
    rendered = json.dumps(objects(manifests))
    for pem in ES256_KEYS.values():
        assert pem.splitlines()[1] not in rendered  # a line of the key's base64


def test_config_map_carries_settings_and_no_secret():
    data = one(render(production_values()), "ConfigMap")["data"]
    assert data["CTXCLOUD_ENV"] == "production"
    assert data["CTXCLOUD_JWT_ALGORITHM"] == "ES256"
    assert data["CTXCLOUD_STORAGE_BACKEND"] == "s3"
    assert data["CTXCLOUD_S3_BUCKET"] == "ctxcloud-prod-objects"
    # The ingress (trustedProxyHops: 1) and the pod's own proxy.
    assert data["CTXCLOUD_TRUSTED_PROXY_HOPS"] == "2"
    assert data["GUNICORN_BIND"] == "127.0.0.1:8000"
    assert data["METRICS_PORT"] == "9100"
    assert data["METRICS_HOST"] == "0.0.0.0"
    assert "GUNICORN_WORKERS" not in data  # null: derived from the CPU limit
    for name in data:
        assert not re.search(
            r"SECRET|PEPPER|MASTER_KEYS|SIGNING_KEYS|PASSWORD|DATABASE_URL", name
        ), name
    assert all(isinstance(value, str) for value in data.values())


def test_metrics_off_removes_the_listener():
    manifests = render({"metrics": {"enabled": False}})
    assert one(manifests, "ConfigMap")["data"]["METRICS_PORT"] == "0"
    assert "ports" not in containers(manifests)["ctxcloud"]  # behind the proxy: none at all
    manifests = render({"metrics": {"enabled": False}, "proxy": {"enabled": False}})
    assert [p["name"] for p in containers(manifests)["ctxcloud"]["ports"]] == ["http"]


ALL_SECRETS = {
    "masterKeys": '{"k1": "' + base64.b64encode(b"k" * 32).decode() + '"}',
    "jwtSigningKeys": json.dumps(ES256_KEYS),
    "apiKeyPepper": "pepper",
    "databaseUrl": "postgresql://u:p@db:5432/ctxcloud",
}


def missing_secrets(text: str) -> list[str]:
    """The values the NOTES' warning lists, e.g. ["secrets.masterKeys", ...]."""
    if "WARNING: the service refuses to start" not in text:
        return []
    block = text.split("WARNING: the service refuses to start", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  - (secrets\.\w+) ", block, re.M)


def test_notes_warn_about_missing_secrets():
    assert "CTXCLOUD_MASTER_KEYS" in notes()
    assert "WARNING" not in notes({"secrets": {"existingSecret": "managed"}})


@pytest.mark.parametrize("algorithm", ["", "ES256", "EdDSA"])
def test_notes_name_the_signing_keys_when_missing(algorithm):
    values = {"config": {"jwtAlgorithm": algorithm}}
    assert missing_secrets(notes(values)) == [
        "secrets.apiKeyPepper",
        "secrets.databaseUrl",
        "secrets.jwtSigningKeys",
        "secrets.masterKeys",
    ]
    assert "ctxcloud keys new-signing-key" in notes(values)
    # The shared secret is not needed: a complete set of values warns about nothing.
    assert "WARNING" not in notes({**values, "secrets": ALL_SECRETS})
    only_signing_keys_missing = {k: v for k, v in ALL_SECRETS.items() if k != "jwtSigningKeys"}
    text = notes({**values, "secrets": {**only_signing_keys_missing, "jwtSecretKey": "jwt"}})
    assert missing_secrets(text) == ["secrets.jwtSigningKeys"]


def test_notes_name_the_shared_secret_under_hs256():
    values = {"config": {"jwtAlgorithm": "HS256"}}
    missing = missing_secrets(notes(values))
    assert "secrets.jwtSecretKey" in missing and "secrets.jwtSigningKeys" not in missing
    assert "WARNING" in notes({**values, "secrets": ALL_SECRETS})
    complete = {k: v for k, v in ALL_SECRETS.items() if k != "jwtSigningKeys"}
    complete["jwtSecretKey"] = "jwt"
    assert "WARNING" not in notes({**values, "secrets": complete})


@pytest.mark.parametrize(
    ("algorithm", "variable"),
    [("", "CTXCLOUD_JWT_SIGNING_KEYS"), ("HS256", "CTXCLOUD_JWT_SECRET_KEY")],
)
def test_notes_say_what_an_existing_secret_must_hold(algorithm, variable):
    values = {"config": {"jwtAlgorithm": algorithm}, "secrets": {"existingSecret": "managed"}}
    text = notes(values)
    assert "WARNING" not in text  # the chart cannot see into it
    note = " ".join(text.split("NOTE: the Secret managed must hold", 1)[1].split("\n\n")[0].split())
    for name in ("CTXCLOUD_MASTER_KEYS", variable, "CTXCLOUD_API_KEY_PEPPER"):
        assert name in note
    other = {"CTXCLOUD_JWT_SIGNING_KEYS", "CTXCLOUD_JWT_SECRET_KEY"} - {variable}
    assert other.pop() not in note


# ---- token signing ---------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_signing_keys_go_into_the_secret_and_the_algorithm_into_the_config_map(version):
    values = {
        "config": {"jwtAlgorithm": "ES256"},
        "secrets": {"jwtSigningKeys": json.dumps(ES256_KEYS)},
    }
    manifests = render(values)
    assert_valid(manifests, version)
    secret = secret_data(manifests)
    assert json.loads(secret["CTXCLOUD_JWT_SIGNING_KEYS"]) == ES256_KEYS
    assert "CTXCLOUD_JWT_SECRET_KEY" not in secret  # not given, not rendered
    data = config_data(manifests)
    assert data["CTXCLOUD_JWT_ALGORITHM"] == "ES256"
    assert "CTXCLOUD_JWT_SIGNING_KEYS" not in data
    # Both the service and the migration Job read the Secret.
    secret_name = one(manifests, "Secret")["metadata"]["name"]
    for container in (containers(manifests)["ctxcloud"], job_container(manifests)):
        assert {"secretRef": {"name": secret_name}} in container["envFrom"]


def test_without_an_algorithm_the_service_default_applies():
    data = config_data(render())
    assert "CTXCLOUD_JWT_ALGORITHM" not in data  # unset: ES256, the service's default


def test_hs256_keeps_the_shared_secret():
    values = {"config": {"jwtAlgorithm": "HS256"}, "secrets": {"jwtSecretKey": "jwt"}}
    manifests = render(values)
    assert config_data(manifests)["CTXCLOUD_JWT_ALGORITHM"] == "HS256"
    assert secret_data(manifests)["CTXCLOUD_JWT_SECRET_KEY"] == "jwt"
    assert "CTXCLOUD_JWT_SIGNING_KEYS" not in secret_data(manifests)


@pytest.mark.parametrize(
    "value",
    [
        ES256_KEYS["20260101-0a1b2c3d"],  # a bare PEM, not the JSON object around it
        json.dumps(ES256_KEYS).replace("\\n", "\n"),  # line breaks not escaped in the JSON
        "{}",
        json.dumps(list(ES256_KEYS.values())),
        json.dumps({"k1": "not a key"}),
        json.dumps({"k1": {"pem": ES256_KEYS["20260101-0a1b2c3d"]}}),
    ],
    ids=["bare-pem", "raw-newlines", "empty", "array", "not-pem", "nested"],
)
def test_malformed_signing_keys_fail_the_render(value):
    values = {"secrets": {"jwtSigningKeys": value}}
    with pytest.raises(helm.HelmError) as failure:
        render(values)
    message = str(failure.value)
    assert "secrets.jwtSigningKeys must be a JSON object" in message
    assert "ctxcloud keys new-signing-key" in message
    # The message never repeats the value.
    assert ES256_KEYS["20260101-0a1b2c3d"].splitlines()[1] not in message
    assert "not a key" not in message
    # The schema takes any string: the check is the chart's, with its message.
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)


def test_signing_keys_accept_both_algorithms_and_a_trailing_newline():
    for keys in (ES256_KEYS, EDDSA_KEYS):
        # --set-file of the file `new-signing-key > keys.json` wrote keeps its last newline.
        value = json.dumps(keys) + "\n"
        secret = secret_data(render({"secrets": {"jwtSigningKeys": value}}))
        assert json.loads(secret["CTXCLOUD_JWT_SIGNING_KEYS"]) == keys


def test_existing_secret_comments_name_every_variable_the_charts_secret_holds():
    """Whoever manages the Secret learns from values.yaml (and the production example) which
    keys it holds: each variable the chart's own Secret can render."""
    every = {
        "masterKeys": "m",
        "jwtSigningKeys": json.dumps(ES256_KEYS),
        "jwtSecretKey": "j",
        "apiKeyPepper": "p",
        "databaseUrl": "postgresql://u:p@db/c",
        "redisUrl": "redis://r:6379/0",
        "awsAccessKeyId": "a",
        "awsSecretAccessKey": "s",
        "azureConnectionString": "c",
        "azureAccountKey": "k",
    }
    variables = set(secret_data(render({"secrets": every})))
    assert "CTXCLOUD_JWT_SIGNING_KEYS" in variables

    def comment_above(path: Path, key: str) -> str:
        lines = path.read_text().splitlines()
        number = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        above = []
        for line in reversed(lines[:number]):
            if not line.lstrip().startswith("#"):
                break
            above.append(line.lstrip("# "))
        return " ".join(reversed(above))

    comment = comment_above(CHART / "values.yaml", "existingSecret")
    assert sorted(v for v in variables if v not in comment) == []
    example = comment_above(PRODUCTION_VALUES, "existingSecret")
    for name in ("CTXCLOUD_MASTER_KEYS", "CTXCLOUD_JWT_SIGNING_KEYS", "CTXCLOUD_API_KEY_PEPPER"):
        assert name in example


# ---- values.yaml and values.schema.json ------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCont": 3},
        {"image": {"tga": "1.0"}},
        {"secrets": {"existingSecrets": "x"}},
        {"autoscaling": {"enable": True}},
        {"gunicorn": {"workers": 0}},
        {"config": {"logLevel": "LOUD"}},
        {"service": {"type": "Cluster"}},
        {"proxy": {"enable": False}},
        {"proxy": {"enabled": "yes"}},
        {"proxy": {"clientHeaderTimeout": "10 seconds"}},
        {"proxy": {"clientBodyTimeout": "0"}},
        {"proxy": {"maxEntryBodySize": "5GB"}},
        {"proxy": {"clientBodyBufferSize": "1g"}},
        {"proxy": {"workerProcesses": 0}},
        {"proxy": {"workerConnections": 100}},
        {"proxy": {"connectionsPerAddress": 0}},
        {"proxy": {"realIpFrom": "the ingress"}},
        {"proxy": {"realIpFrom": "10.0.0.0/8; allow all"}},
        {"proxy": {"image": {"digest": "sha256:short"}}},
        {"proxy": {"spool": {"sizeLimit": "lots"}}},
        {"config": {"storageBackend": ""}},
        {"config": {"storageBackend": "s3 bucket"}},
        {"config": {"gcs": {"buckett": "acme-ctxcloud"}}},
        {"config": {"gcs": {"bucket": "Acme_Bucket!"}}},
        {"config": {"gcs": {"chunkSize": 1000}}},
        {"config": {"gcs": {"chunkSize": 262144 * 3 + 1}}},
        {"config": {"gcs": {"chunkSize": "8MiB"}}},
        {"config": {"gcs": {"endpointUrl": "localhost:9023"}}},
        {"config": {"gcs": {"credentialsSecret": "gcs-key"}}},
        {"config": {"gcs": {"credentialsSecret": {"nam": "gcs-key"}}}},
        {"config": {"azure": {"acountUrl": "https://acmectx.blob.core.windows.net"}}},
        {"config": {"azure": {"container": "Ctx"}}},
        {"config": {"azure": {"container": "ctx--cloud"}}},
        {"config": {"azure": {"container": "ab"}}},
        {"config": {"azure": {"blockSize": 1024}}},
        {"config": {"azure": {"connectionString": "secret in the ConfigMap"}}},
        {"secrets": {"azureConnectionStrings": "x"}},
        {"config": {"jwtAlgorithm": "RS256"}},
        {"config": {"jwtAlgorithm": "es256"}},
        {"config": {"jwtAlgorithm": "none"}},
        {"config": {"jwtAlgoritm": "ES256"}},
        {"secrets": {"jwtSigningKey": "{}"}},
        {"secrets": {"jwtSigningKeys": {"k1": "-----BEGIN PRIVATE KEY-----"}}},
    ],
)
def test_schema_rejects_typos_and_bad_values(values):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmError):
            chart.render(values, name=RELEASE)


def test_schema_accepts_the_defaults_and_the_production_example():
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(None)
        chart.validate_schema(production_values())
        chart.validate_schema(copy.deepcopy(chart.values))


def test_every_values_key_is_commented():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        if not re.match(r"^\s*(- )?[A-Za-z][\w.-]*:", line):
            continue
        previous = next((p for p in reversed(lines[:number]) if p.strip()), "")
        if not previous.lstrip().startswith("#") and " # " not in line:
            undocumented.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert not undocumented, "\n".join(undocumented)


def test_every_values_key_is_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, spec: dict, path: str) -> None:
        for key, value in node.items():
            props = spec.get("properties", {})
            assert key in props, f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and props[key].get("properties"):
                walk(value, props[key], f"{path}{key}.")

    walk(values, schema, "")


# ---- the proxy sidecar -------------------------------------------------------------------


def named_ports(container: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}


def test_proxy_sidecar_fronts_gunicorn_by_default():
    manifests = render()
    pod = containers(manifests)
    assert list(pod) == ["ctxcloud", "proxy"]
    app, proxy = pod["ctxcloud"], pod["proxy"]
    # The Service's port reaches the proxy; gunicorn has no port on the pod's address.
    assert one(manifests, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert named_ports(proxy) == {"http": 8080}
    assert "http" not in named_ports(app)
    data = one(manifests, "ConfigMap")["data"]
    assert data["GUNICORN_BIND"] == "127.0.0.1:8000"
    assert data["GUNICORN_FORWARDED_ALLOW_IPS"] == "127.0.0.1"  # the proxy, in the pod
    assert data["CTXCLOUD_TRUSTED_PROXY_HOPS"] == "1"
    assert data["METRICS_HOST"] == "0.0.0.0"
    # nginx reads the rendered nginx.conf from the proxy ConfigMap, mounted read-only.
    conf_map = one(manifests, "ConfigMap", f"{RELEASE}-proxy")
    conf = conf_map["data"]["nginx.conf"]
    assert re.search(r"^\s*listen 8080 default_server;", conf, re.M)
    assert re.search(r"^\s*server 127\.0\.0\.1:8000;", conf, re.M)
    assert "${" not in conf
    command = proxy["command"]
    assert command[:3] == ["nginx", "-c", "/etc/nginx/ctxcloud/nginx.conf"]
    assert command[-2:] == ["-g", "daemon off;"]
    volumes = {
        v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    mount = next(m for m in proxy["volumeMounts"] if m["mountPath"] == "/etc/nginx/ctxcloud")
    assert volumes[mount["name"]]["configMap"]["name"] == conf_map["metadata"]["name"]
    assert proxy["image"] == "nginxinc/nginx-unprivileged:1.28-alpine"
    # The proxy keeps serving through the preStop pause, like gunicorn.
    assert proxy["lifecycle"] == app["lifecycle"]
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/proxy-config"])


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_without_the_proxy_gunicorn_faces_the_service(version):
    manifests = render({"proxy": {"enabled": False}, "config": {"trustedProxyHops": 1}})
    assert_valid(manifests, version)
    pod = containers(manifests)
    assert list(pod) == ["ctxcloud"]
    app = pod["ctxcloud"]
    assert named_ports(app)["http"] == 8000
    assert _probe(app, "livenessProbe") == {"path": "/api/v1/health/live", "port": "http"}
    assert _probe(app, "readinessProbe") == {"path": "/api/v1/health/ready", "port": "http"}
    assert _probe(app, "startupProbe") == {"path": "/api/v1/health/live", "port": "http"}
    data = one(manifests, "ConfigMap")["data"]
    assert data["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert data["CTXCLOUD_TRUSTED_PROXY_HOPS"] == "1"  # the ingress alone
    names = [doc["metadata"]["name"] for doc in objects(manifests) if doc["kind"] == "ConfigMap"]
    assert names == [RELEASE]
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/proxy-config" not in annotations
    assert set(volumes(manifests)) == {"tmp", "data"}


def test_without_the_proxy_the_notes_say_what_must_buffer():
    unbuffered = {
        "proxy": {"enabled": False},
        "secrets": {"existingSecret": "managed"},
        "ingress": {
            "enabled": True,
            "annotations": {"nginx.ingress.kubernetes.io/proxy-request-buffering": "off"},
        },
    }
    assert "WARNING: proxy.enabled is false" in notes(unbuffered)
    buffered = copy.deepcopy(unbuffered)
    buffered["ingress"]["annotations"] = {}
    text = notes(buffered)
    assert "WARNING" not in text and "must buffer whole" in text
    assert "proxy.enabled" not in notes({"secrets": {"existingSecret": "managed"}})


@pytest.mark.parametrize("proxy", [True, False], ids=["proxy", "no-proxy"])
def test_probes_and_the_service_name_ports_that_exist(proxy):
    manifests = render({"proxy": {"enabled": proxy}})
    pod = containers(manifests)
    for container in pod.values():
        ports = named_ports(container)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            handler = container.get(probe, {})
            for kind in ("httpGet", "tcpSocket"):
                if kind in handler:
                    assert handler[kind]["port"] in ports, (container["name"], probe)
    target = one(manifests, "Service")["spec"]["ports"][0]["targetPort"]
    owners = [name for name, container in pod.items() if target in named_ports(container)]
    assert owners == (["proxy"] if proxy else ["ctxcloud"])
    if proxy:
        assert named_ports(pod["proxy"])[target] == 8080


def test_proxy_values_fill_nginx_conf():
    values = {
        "proxy": {
            "workerProcesses": 3,
            "workerConnections": 1024,
            "clientHeaderTimeout": "5s",
            "clientBodyTimeout": "20s",
            "sendTimeout": "15s",
            "keepaliveTimeout": "10s",
            "keepaliveRequests": 50,
            "clientBodyBufferSize": "32k",
            "maxJsonBodySize": "8m",
            "maxEntryBodySize": "20g",
            "maxTempFileSize": "0",
            "connectionsPerAddress": 7,
            "upstreamKeepalive": 4,
            "upstreamKeepaliveTimeout": "3s",
            "proxyConnectTimeout": "2s",
            "proxySendTimeout": "120s",
            "proxyReadTimeout": "90s",
            "realIpFrom": "10.0.0.0/8",
        },
        "gunicorn": {"gracefulTimeout": 20},
    }
    conf = one(render(values), "ConfigMap", f"{RELEASE}-proxy")["data"]["nginx.conf"]
    expected = [
        "worker_processes 3;",
        "worker_rlimit_nofile 2048;",  # twice the connections
        "worker_connections 1024;",
        "worker_shutdown_timeout 20s;",  # gunicorn's graceful timeout
        "client_header_timeout 5s;",
        "client_body_timeout 20s;",
        "send_timeout 15s;",
        "keepalive_timeout 10s;",
        "keepalive_requests 50;",
        "client_body_buffer_size 32k;",
        "client_max_body_size 8m;",
        "client_max_body_size 20g;",
        "proxy_max_temp_file_size 0;",
        "limit_conn ctxcloud_per_address 7;",
        "keepalive 4;",
        "keepalive_timeout 3s;",
        "proxy_connect_timeout 2s;",
        "proxy_send_timeout 120s;",
        "proxy_read_timeout 90s;",
        "set_real_ip_from 10.0.0.0/8;",
    ]
    lines = {line.strip() for line in conf.splitlines()}
    assert [line for line in expected if line not in lines] == []
    default = one(render(), "ConfigMap", f"{RELEASE}-proxy")["data"]["nginx.conf"]
    assert "set_real_ip_from unix:;" in default  # no TCP peer is trusted by default


def test_proxy_image_digest_and_spool_volume():
    claim = {
        "ephemeral": {
            "volumeClaimTemplate": {
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "50Gi"}},
                }
            }
        }
    }
    values = {"proxy": {"image": {"digest": "sha256:" + "b" * 64}, "spool": {"volume": claim}}}
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    proxy = containers(manifests)["proxy"]
    assert proxy["image"] == "nginxinc/nginx-unprivileged@sha256:" + "b" * 64
    volumes = {
        v["name"]: v for v in one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["proxy-spool"] == {"name": "proxy-spool", **claim}
    default = {
        v["name"]: v for v in one(render(), "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert default["proxy-spool"]["emptyDir"] == {"sizeLimit": "10Gi"}


def test_graceful_stop_fits_the_grace_period():
    manifests = render()
    conf = one(manifests, "ConfigMap", f"{RELEASE}-proxy")["data"]["nginx.conf"]
    (shutdown,) = re.findall(r"worker_shutdown_timeout (\d+)s;", conf)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    prestop = int(containers(manifests)["proxy"]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > prestop + int(shutdown)


def test_production_example_keeps_the_proxy_and_bounds_the_ingress():
    values = production_values()
    manifests = render(values)
    conf = one(manifests, "ConfigMap", f"{RELEASE}-proxy")["data"]["nginx.conf"]
    assert "set_real_ip_from 10.0.0.0/8;" in conf  # the ingress controller's pods
    assert list(containers(manifests)) == ["ctxcloud", "proxy"]
    annotations = one(manifests, "Ingress")["metadata"]["annotations"]
    # The edge refuses what the proxy would refuse; the body limit is never "unlimited".
    assert (
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        == (values["proxy"]["maxEntryBodySize"])
    )
    # The ingress streams to the proxy (which buffers) only because the proxy is on.
    if annotations.get("nginx.ingress.kubernetes.io/proxy-request-buffering") == "off":
        assert values["proxy"]["enabled"] is True


@pytest.mark.parametrize(
    "proxy",
    [
        {"enabled": False},
        {"realIpFrom": "192.168.10.0/24"},
        {"realIpFrom": "fd00::/8"},
        {"realIpFrom": "10.1.2.3"},
        {"maxEntryBodySize": "50g", "maxTempFileSize": "0", "clientBodyBufferSize": "1m"},
        {"proxyReadTimeout": "2m", "clientHeaderTimeout": "500ms"},
        {"spool": {"sizeLimit": "100Gi", "volume": {"emptyDir": {}}}},
        {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}}},
    ],
)
def test_schema_accepts_proxy_settings(proxy):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({"proxy": proxy})
    assert_valid(render({"proxy": proxy}), LATEST_KUBE)


# ---- storage backends: gcs and azure ----------------------------------------------------------

GCS_KEY_SECRET = {"name": "ctxcloud-gcs-credentials", "key": "key.json"}
AZURE_URL = "https://acmectx.blob.core.windows.net"


def config_data(manifests: dict[str, list[dict]]) -> dict[str, str]:
    return one(manifests, "ConfigMap")["data"]


def secret_data(manifests: dict[str, list[dict]]) -> dict[str, str]:
    return {
        name: base64.b64decode(value).decode()
        for name, value in one(manifests, "Secret")["data"].items()
    }


def job_container(manifests: dict[str, list[dict]]) -> dict:
    (container,) = one(manifests, "Job")["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_gcs_settings_and_a_mounted_credentials_file(version):
    values = {
        "config": {
            "storageBackend": "gcs",
            "gcs": {
                "bucket": "acme-ctxcloud",
                "prefix": "prod/",
                "endpointUrl": "http://gcs-emulator:9023",
                "chunkSize": 16 * 1024 * 1024,
                "credentialsSecret": GCS_KEY_SECRET,
            },
        }
    }
    manifests = render(values)
    assert_valid(manifests, version)
    data = config_data(manifests)
    assert data["CTXCLOUD_STORAGE_BACKEND"] == "gcs"
    assert data["CTXCLOUD_GCS_BUCKET"] == "acme-ctxcloud"
    assert data["CTXCLOUD_GCS_PREFIX"] == "prod/"
    assert data["CTXCLOUD_GCS_ENDPOINT_URL"] == "http://gcs-emulator:9023"
    assert data["CTXCLOUD_GCS_CHUNK_SIZE"] == "16777216"  # a whole number, not 1.6777216e+07
    credentials = data["GOOGLE_APPLICATION_CREDENTIALS"]
    assert not [name for name in data if name.startswith("CTXCLOUD_AZURE_")]
    # The Secret's key is mounted read-only, as the file the variable names, into the service
    # and into the migration Job (both start ctxcloud with the same environment).
    pod_volumes = volumes(manifests)
    job_volumes = {
        volume["name"]: volume
        for volume in one(manifests, "Job")["spec"]["template"]["spec"]["volumes"]
    }
    for container, volume_set in (
        (containers(manifests)["ctxcloud"], pod_volumes),
        (job_container(manifests), job_volumes),
    ):
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "gcs-credentials"]
        assert mount["readOnly"] is True
        secret = volume_set["gcs-credentials"]["secret"]
        assert secret["secretName"] == GCS_KEY_SECRET["name"]
        (item,) = secret["items"]
        assert item["key"] == GCS_KEY_SECRET["key"]
        assert f"{mount['mountPath']}/{item['path']}" == credentials
        assert secret["defaultMode"] == 0o440
    # The proxy sidecar gets no credentials.
    assert "gcs-credentials" not in json.dumps(containers(manifests)["proxy"])


def test_gcs_with_workload_identity_mounts_no_file():
    annotation = {"iam.gke.io/gcp-service-account": "ctxcloud@acme.iam.gserviceaccount.com"}
    values = {
        "serviceAccount": {"annotations": annotation},
        "config": {"storageBackend": "gcs", "gcs": {"bucket": "acme-ctxcloud"}},
    }
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    assert one(manifests, "ServiceAccount")["metadata"]["annotations"] == annotation
    data = config_data(manifests)
    assert data["CTXCLOUD_GCS_BUCKET"] == "acme-ctxcloud"
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CTXCLOUD_GCS_CHUNK_SIZE",
        "CTXCLOUD_GCS_PREFIX",
    ):
        assert name not in data  # unset: the plugin's defaults and ADC's metadata server
    assert set(volumes(manifests)) == {"tmp", "data", "proxy-config", "proxy-tmp", "proxy-spool"}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_azure_with_an_account_key_keeps_the_key_in_the_secret(version):
    key = "c2VjcmV0LWFjY291bnQta2V5"
    values = {
        "config": {
            "storageBackend": "azure",
            "azure": {
                "container": "ctxcloud",
                "accountUrl": AZURE_URL,
                "prefix": "prod/",
                "blockSize": 4000 * 1024 * 1024,
            },
        },
        "secrets": {"azureAccountKey": key},
    }
    manifests = render(values)
    assert_valid(manifests, version)
    data = config_data(manifests)
    assert data["CTXCLOUD_STORAGE_BACKEND"] == "azure"
    assert data["CTXCLOUD_AZURE_CONTAINER"] == "ctxcloud"
    assert data["CTXCLOUD_AZURE_ACCOUNT_URL"] == AZURE_URL
    assert data["CTXCLOUD_AZURE_PREFIX"] == "prod/"
    assert data["CTXCLOUD_AZURE_BLOCK_SIZE"] == "4194304000"
    assert secret_data(manifests)["CTXCLOUD_AZURE_ACCOUNT_KEY"] == key
    # The key is a secret: never in the ConfigMap, never in plain text anywhere.
    assert "CTXCLOUD_AZURE_ACCOUNT_KEY" not in data
    assert "CTXCLOUD_AZURE_CONNECTION_STRING" not in data
    assert key not in json.dumps(objects(manifests))
    assert not [name for name in data if name.startswith(("CTXCLOUD_GCS_", "GOOGLE_"))]


def test_azure_with_a_connection_string_in_the_secret():
    connection = (
        "DefaultEndpointsProtocol=https;AccountName=acmectx;AccountKey=a2V5;"
        "EndpointSuffix=core.windows.net"
    )
    values = {
        "config": {"storageBackend": "azure", "azure": {"container": "ctxcloud"}},
        "secrets": {"azureConnectionString": connection},
    }
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    assert secret_data(manifests)["CTXCLOUD_AZURE_CONNECTION_STRING"] == connection
    data = config_data(manifests)
    assert "CTXCLOUD_AZURE_ACCOUNT_URL" not in data
    assert connection not in json.dumps(objects(manifests))
    # A new connection string rolls the pods, as any chart-managed secret does.
    rotated = copy.deepcopy(values)
    rotated["secrets"]["azureConnectionString"] = connection.replace("a2V5", "bmV3")

    def checksum(v):
        annotations = one(render(v), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/secret"]

    assert checksum(rotated) != checksum(values)


def test_azure_with_aks_workload_identity():
    values = {
        "serviceAccount": {
            "annotations": {
                "azure.workload.identity/client-id": "00000000-0000-0000-0000-0000000000aa"
            }
        },
        "podLabels": {"azure.workload.identity/use": "true"},
        "config": {
            "storageBackend": "azure",
            "azure": {"container": "ctxcloud", "accountUrl": AZURE_URL},
        },
    }
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    account = one(manifests, "ServiceAccount")
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]
    deployment = one(manifests, "Deployment")["spec"]["template"]
    assert deployment["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert deployment["spec"]["serviceAccountName"] == account["metadata"]["name"]
    # Only the account URL: DefaultAzureCredential signs in, no key anywhere.
    assert not [name for name in secret_data(manifests) if "AZURE" in name]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"config": {"storageBackend": "gcs"}},
            "config.storageBackend is gcs: set config.gcs.bucket (CTXCLOUD_GCS_BUCKET)",
        ),
        (
            {"config": {"storageBackend": "gcs", "gcs": {"credentialsSecret": GCS_KEY_SECRET}}},
            "config.storageBackend is gcs: set config.gcs.bucket (CTXCLOUD_GCS_BUCKET)",
        ),
        (
            {"config": {"storageBackend": "azure", "azure": {"accountUrl": AZURE_URL}}},
            "config.storageBackend is azure: set config.azure.container (CTXCLOUD_AZURE_CONTAINER)",
        ),
        (
            {"config": {"storageBackend": "azure", "azure": {"container": "ctxcloud"}}},
            "set exactly one of config.azure.accountUrl (with an identity or "
            "secrets.azureAccountKey) and secrets.azureConnectionString",
        ),
        (
            {
                "config": {
                    "storageBackend": "azure",
                    "azure": {"container": "ctxcloud", "accountUrl": AZURE_URL},
                },
                "secrets": {"azureConnectionString": "UseDevelopmentStorage=true"},
            },
            "set exactly one of config.azure.accountUrl and secrets.azureConnectionString, "
            "not both",
        ),
        (
            {
                "config": {"storageBackend": "azure", "azure": {"container": "ctxcloud"}},
                "secrets": {
                    "azureConnectionString": "UseDevelopmentStorage=true",
                    "azureAccountKey": "a2V5",
                },
            },
            "secrets.azureAccountKey needs config.azure.accountUrl",
        ),
    ],
    ids=[
        "gcs-no-bucket",
        "gcs-key-no-bucket",
        "azure-no-container",
        "azure-neither",
        "azure-both",
        "azure-stray-key",
    ],
)
def test_a_backend_that_cannot_start_fails_the_render(values, message):
    with pytest.raises(helm.HelmError) as failure:
        render(values)
    assert message in str(failure.value)
    # The schema itself accepts these values: the check is the chart's, with its message.
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)


def test_azure_connection_string_in_an_existing_secret_is_taken_on_trust():
    values = {
        "config": {"storageBackend": "azure", "azure": {"container": "ctxcloud"}},
        "secrets": {"existingSecret": "ctxcloud-secrets", "azureAccountKey": "ignored"},
    }
    manifests = render(values)
    assert_valid(manifests, LATEST_KUBE)
    assert "Secret" not in [doc["kind"] for doc in objects(manifests)]
    text = notes(values)
    assert "ctxcloud-secrets must hold CTXCLOUD_AZURE_CONNECTION_STRING" in text
    assert "STORAGE_PLUGINS=storage_azure" in text


def test_notes_say_which_plugin_the_image_needs():
    gcs = {"config": {"storageBackend": "gcs", "gcs": {"bucket": "acme-ctxcloud"}}}
    assert "STORAGE_PLUGINS=storage_gcs" in notes(gcs)
    assert "STORAGE_PLUGINS" not in notes()


def test_every_backends_settings_render_whatever_the_chosen_backend():
    """`ctxcloud storage migrate --to gcs` reads the target's settings from the environment."""
    values = {
        "config": {
            "storageBackend": "s3",
            "s3": {"bucket": "old"},
            "gcs": {"bucket": "acme-ctxcloud"},
            "azure": {"container": "ctxcloud", "accountUrl": AZURE_URL},
        }
    }
    data = config_data(render(values))
    assert data["CTXCLOUD_STORAGE_BACKEND"] == "s3"
    assert data["CTXCLOUD_GCS_BUCKET"] == "acme-ctxcloud"
    assert data["CTXCLOUD_AZURE_CONTAINER"] == "ctxcloud"
    default = config_data(render())
    assert not [n for n in default if n.startswith(("CTXCLOUD_GCS_", "CTXCLOUD_AZURE_", "GOOGLE_"))]


@pytest.mark.parametrize("backend", ["s3", "local", "gcs", "azure", "acme_store", "acme-store"])
def test_schema_accepts_any_plugins_backend_name(backend):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({"config": {"storageBackend": backend}})


STORAGE_LINT_VALUES = {
    "gcs": {
        "config": {
            "storageBackend": "gcs",
            "gcs": {"bucket": "acme-ctxcloud", "credentialsSecret": GCS_KEY_SECRET},
        }
    },
    "azure": {
        "podLabels": {"azure.workload.identity/use": "true"},
        "config": {
            "storageBackend": "azure",
            "azure": {"container": "ctxcloud", "accountUrl": AZURE_URL},
        },
    },
}


@pytest.mark.parametrize("backend", sorted(STORAGE_LINT_VALUES))
def test_helm_lint_strict_with_each_cloud_backend(backend):
    report = helm.lint(
        CHART, STORAGE_LINT_VALUES[backend], strict=True, kube_version=f"v{LATEST_KUBE}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert not problems and not report["errors"], json.dumps(report, indent=2)


def deployment_doc_values() -> list[dict]:
    """The values examples of docs/deployment.md, "Storage backends in containers" (the
    compose override, a compose file, left out)."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text.split("## Storage backends in containers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, re.S | re.M)
    return [values for values in map(yaml.safe_load, blocks) if "services" not in values]


def test_deployment_docs_values_examples_are_valid_and_render():
    examples = deployment_doc_values()
    backends = [values["config"]["storageBackend"] for values in examples]
    assert backends.count("gcs") >= 2 and backends.count("azure") >= 2
    with helm.Chart.load(CHART) as chart:
        for values in examples:
            chart.validate_schema(values)
    for values in examples:
        manifests = render(values)
        assert_valid(manifests, LATEST_KUBE)
        assert config_data(manifests)["CTXCLOUD_STORAGE_BACKEND"] in ("gcs", "azure")
