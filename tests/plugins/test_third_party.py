"""A third-party plugin package, found through its entry point, extends ctxcloud unchanged."""

from __future__ import annotations

import ast

import pytest

from ctxcloud import ConfigError, create_app
from tests.stack import migrated_app
from tests.support.factories import bearer, make_platform_key, make_tenant
from tests.support.fakedist import installed_distribution

# Plugin loading problems are configuration errors (ctxcloud's PluginError is one).
PluginError = ConfigError

# A complete third-party plugin, written against the public toolkit alone (`ctxcloud`): routes,
# a storage backend, an auth method, a permission veto, and a tenant quota of its own that the
# tenant config API lists and its route enforces, on a table of its own.
ACME_PLUGIN = '''
import marshmallow as ma
from flask.views import MethodView

from ctxcloud import (
    Actor,
    BaseModel,
    Blueprint,
    Count,
    Migration,
    ObjectInfo,
    ObjectNotFound,
    Quota,
    StorageBackend,
    Unauthorized,
    check_quota,
    current_actor,
    database,
    hookimpl,
    limit,
    new_id,
    requires,
    tenancy,
)
import peewee

blp = Blueprint("acme", __name__, url_prefix="/api/v1/acme", description="ACME extras")


class GreetingSchema(ma.Schema):
    greeting = ma.fields.String()


class Greeting(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)

    class Meta:
        table_name = "acme_greeting"


def _create_greetings(migrator, db):
    class Greeting(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)

        class Meta:
            database = db
            table_name = "acme_greeting"

    db.create_tables([Greeting])


@blp.route("/hello")
class Hello(MethodView):
    @requires("acme:greet")
    @blp.response(200, GreetingSchema)
    def get(self):
        """Say hello"""
        return {"greeting": "hello from acme"}


@blp.route("/waves")
class Waves(MethodView):
    @requires("acme:greet")
    @limit("2/minute", key_func=lambda: current_actor().id, scope="waves")
    @blp.response(201, GreetingSchema)
    def post(self):
        """Wave (twice a minute per user)"""
        return {"greeting": "wave"}


@blp.route("/greetings")
class Greetings(MethodView):
    @requires("acme:greet")
    @blp.response(201, GreetingSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    def post(self):
        """Keep a greeting (at most the tenant's max_greetings)"""
        tenant = current_actor().tenant
        with database.atomic():
            used = Greeting.select().where(Greeting.tenant_id == tenant.id).count
            check_quota(tenant, "max_greetings", used)
            Greeting.create(id=new_id("grt"), tenant_id=tenant.id)
        return {"greeting": "kept"}


class MemoryStorage(StorageBackend):
    name = "acme-memory"

    def __init__(self):
        self.objects = {}

    def put(self, key, chunks):
        data = b"".join(chunks)
        self.objects[key] = data
        return len(data)

    def get(self, key, start=0, end=None):
        if key not in self.objects:
            raise ObjectNotFound(key)
        data = self.objects[key]
        return iter([data[start:None if end is None else end + 1]])

    def head(self, key):
        return ObjectInfo(key, len(self.objects[key])) if key in self.objects else None

    def delete(self, key):
        return self.objects.pop(key, None) is not None

    def list(self, prefix=""):
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))

    def check(self):
        pass


@hookimpl
def config_defaults():
    return {"ACME_MAX_GREETINGS": 2}


@hookimpl
def tenant_options():
    return [
        Quota(
            "max_greetings",
            Count(0),
            default="ACME_MAX_GREETINGS",
            description="Greetings the tenant may keep",
            example=10,
        )
    ]


@hookimpl
def database_migrations():
    return [
        Migration("acme.0001_greetings", _create_greetings, depends_on=("tenants.0001_initial",))
    ]


@hookimpl
def register_blueprints(app):
    return [blp]


@hookimpl
def storage_backends():
    return {"acme-memory": lambda config: MemoryStorage()}


@hookimpl
def register_permissions():
    return {"acme:greet": "Receive ACME greetings."}


@hookimpl
def authenticate(request):
    header = request.headers.get("X-Acme-User")
    if header is None:
        return None
    user, _, slug = header.partition("@")
    tenant = tenancy.tenant_by_slug(slug) if slug else None
    if user not in ("alice", "mallory"):
        raise Unauthorized()
    return Actor(kind="user", id=user, tenant_id=tenant.id if tenant else "t-acme",
                 role="member", permissions=frozenset({"acme:greet"}), tenant=tenant)


@hookimpl
def permission_allowed(actor, action, resource):
    # A veto: mallory holds the permission but ACME refuses her anyway.
    if actor.id == "mallory":
        return False
    return None
'''


@pytest.fixture
def acme(tmp_path):
    with installed_distribution(
        tmp_path / "site",
        "acme-ctxcloud",
        {"acme": "acme_ctxcloud"},
        {"acme_ctxcloud/__init__.py": ACME_PLUGIN},
    ) as root:
        yield root


def make_app(tmp_path, **config):
    return create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "data"), **config})


def test_the_plugin_uses_nothing_but_the_public_toolkit():
    imported = {
        node.module
        for node in ast.walk(ast.parse(ACME_PLUGIN))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {m for m in imported if m.startswith("ctxcloud")} == {"ctxcloud"}


def test_third_party_plugin_adds_routes_backend_auth_and_veto(acme, tmp_path):
    app = make_app(tmp_path, STORAGE_BACKEND="acme-memory")
    client = app.test_client()
    # Its blueprint is served and documented in OpenAPI with its permission.
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["paths"]["/api/v1/acme/hello"]["get"]["x-permission"] == "acme:greet"
    # Its auth method and its permission work; the veto wins over the default allow.
    assert client.get("/api/v1/acme/hello").status_code == 401
    assert client.get("/api/v1/acme/hello", headers={"X-Acme-User": "eve"}).status_code == 401
    ok = client.get("/api/v1/acme/hello", headers={"X-Acme-User": "alice"})
    assert ok.status_code == 200 and ok.get_json() == {"greeting": "hello from acme"}
    denied = client.get("/api/v1/acme/hello", headers={"X-Acme-User": "mallory"})
    assert denied.status_code == 403 and denied.get_json()["code"] == "forbidden"
    # Its own rate limit, per user, on top of every caller's budget.
    for _ in range(2):
        assert (
            client.post("/api/v1/acme/waves", headers={"X-Acme-User": "alice"}).status_code == 201
        )
    spent = client.post("/api/v1/acme/waves", headers={"X-Acme-User": "alice"})
    assert spent.status_code == 429 and spent.get_json()["code"] == "rate_limited"
    assert int(spent.headers["Retry-After"]) > 0
    assert client.get("/api/v1/acme/hello", headers={"X-Acme-User": "alice"}).status_code == 200
    # Its storage backend is the one the core uses.
    storage = app.extensions["ctxcloud"].storage
    assert type(storage).__name__ == "MemoryStorage"
    storage.put("a/b", [b"x"])
    assert client.get("/api/v1/health").get_json()["checks"]["storage"] == "ok"


def test_third_party_plugin_declares_a_tenant_quota_listed_and_enforced(acme, app_config):
    with migrated_app(app_config) as app:
        client = app.test_client()
        platform = bearer(make_platform_key(app)[1])
        tenant = make_tenant(app, "greeters")
        # The quota is in the tenant config API (default from the plugin's setting) and OpenAPI.
        url = f"/api/v1/tenants/{tenant.id}/config"
        assert client.get(url, headers=platform).get_json()["quotas"]["max_greetings"] == 2
        spec = client.get("/api/v1/openapi.json").get_json()
        assert "max_greetings" in spec["components"]["schemas"]["DeclaredQuotas"]["properties"]
        # Enforced: the third greeting passes the quota, and nothing is kept.
        user = {"X-Acme-User": "alice@greeters"}
        for _ in range(2):
            assert client.post("/api/v1/acme/greetings", headers=user).status_code == 201
        refused = client.post("/api/v1/acme/greetings", headers=user)
        assert refused.status_code == 403
        problem = refused.get_json()
        assert (problem["code"], problem["quota"], problem["limit"]) == (
            "quota_exceeded",
            "max_greetings",
            2,
        )
        # The platform changes it like any quota, validated by the plugin's own field.
        bad = client.patch(url, json={"quotas": {"max_greetings": -1}}, headers=platform)
        assert bad.status_code == 422 and "max_greetings" in bad.get_json()["errors"]["quotas"]
        raised = client.patch(url, json={"quotas": {"max_greetings": 3}}, headers=platform)
        assert raised.status_code == 200, raised.get_json()
        assert client.post("/api/v1/acme/greetings", headers=user).status_code == 201
        # It is listed with its distribution, version and hooks.
        listed = client.get("/api/v1/-/plugins", headers=platform).get_json()["plugins"]
        acme_entry = next(p for p in listed if p["name"] == "acme")
        assert (acme_entry["distribution"], acme_entry["version"]) == ("acme-ctxcloud", "1.0.0")
        assert {"tenant_options", "storage_backends"} <= set(acme_entry["hooks"])


def test_disabling_a_plugin_by_name_removes_its_routes(acme, tmp_path):
    app = make_app(tmp_path, DISABLED_PLUGINS="acme")
    client = app.test_client()
    assert client.get("/api/v1/acme/hello", headers={"X-Acme-User": "alice"}).status_code == 404
    assert "/api/v1/acme/hello" not in client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "acme" in app.extensions["ctxcloud"].blocked_plugins


def test_disabling_a_builtin_plugin_by_name_removes_it(tmp_path):
    # Without storage_local the default backend is gone: start-up says what is available.
    with pytest.raises(ConfigError, match="'local' is not provided"):
        make_app(tmp_path, DISABLED_PLUGINS="storage_local")


def test_unknown_backend_name_fails_start_up_clearly(tmp_path):
    available = r"CTXCLOUD_STORAGE_BACKEND='nope'.*available: .*\blocal\b"
    with pytest.raises(ConfigError, match=available):
        make_app(tmp_path, STORAGE_BACKEND="nope")


def test_two_backends_of_one_name_fail_start_up(tmp_path):
    source = """
from ctxcloud import hookimpl
@hookimpl
def storage_backends():
    return {"local": lambda config: None}
"""
    with installed_distribution(
        tmp_path / "site", "dup-backend", {"dup": "dup_backend"}, {"dup_backend.py": source}
    ):
        with pytest.raises(PluginError, match="two plugins provide the storage backend 'local'"):
            make_app(tmp_path)


def test_two_blueprints_on_one_prefix_fail_start_up(tmp_path):
    source = """
from flask_smorest import Blueprint
from ctxcloud import hookimpl
blp = Blueprint("imposter", __name__, url_prefix="/api/v1/health")
@hookimpl
def register_blueprints(app):
    return [blp]
"""
    with installed_distribution(
        tmp_path / "site",
        "imposter",
        {"imposter": "imposter_plugin"},
        {"imposter_plugin.py": source},
    ):
        with pytest.raises(ConfigError, match="both claim the prefix '/api/v1/health'"):
            make_app(tmp_path)


def test_unknown_hook_name_fails_start_up(tmp_path):
    source = """
from ctxcloud import hookimpl
@hookimpl
def register_blueprint(app):  # typo: the hook is register_blueprints
    return []
"""
    with installed_distribution(
        tmp_path / "site", "typo", {"typo": "typo_plugin"}, {"typo_plugin.py": source}
    ):
        with pytest.raises(PluginError, match="unknown hook"):
            make_app(tmp_path)


def test_two_distributions_claiming_one_plugin_name_fail_start_up(tmp_path):
    with installed_distribution(
        tmp_path / "site",
        "impostor-storage",
        {"storage_local": "impostor_storage"},
        {"impostor_storage.py": "x = 1\n"},
    ):
        with pytest.raises(PluginError, match="two plugins are named 'storage_local'"):
            make_app(tmp_path)


def test_a_route_requiring_an_unregistered_permission_fails_start_up(tmp_path):
    source = """
from flask.views import MethodView
from flask_smorest import Blueprint
from ctxcloud import hookimpl
from ctxcloud.auth import requires
blp = Blueprint("sloppy", __name__, url_prefix="/api/v1/sloppy")
@blp.route("")
class Sloppy(MethodView):
    @requires("sloppy:typo")
    def get(self):
        return {}
@hookimpl
def register_blueprints(app):
    return [blp]
"""
    with installed_distribution(
        tmp_path / "site", "sloppy", {"sloppy": "sloppy_plugin"}, {"sloppy_plugin.py": source}
    ):
        with pytest.raises(ConfigError, match="unregistered permission 'sloppy:typo'"):
            make_app(tmp_path)


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    with installed_distribution(
        tmp_path / "site",
        "broken",
        {"broken": "broken_plugin"},
        {"broken_plugin.py": "raise ImportError('missing libfoo')\n"},
    ):
        with pytest.raises(PluginError, match="plugin 'broken'.*missing libfoo"):
            make_app(tmp_path)


def test_config_defaults_hook_sits_beneath_every_other_layer(tmp_path):
    source = """
from ctxcloud import hookimpl
@hookimpl
def config_defaults():
    return {"ACME_COLOUR": "blue", "ACME_SIZE": 3}
"""
    with installed_distribution(
        tmp_path / "site",
        "defaults",
        {"defaults": "defaults_plugin"},
        {"defaults_plugin.py": source},
    ):
        app = make_app(tmp_path, ACME_SIZE=7)
    assert app.config["ACME_COLOUR"] == "blue"
    assert app.config["ACME_SIZE"] == 7


def test_two_apps_share_no_plugin_manager_or_database(tmp_path):
    first = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "one")})
    second = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "two")})
    a, b = first.extensions["ctxcloud"], second.extensions["ctxcloud"]
    assert a.pm is not b.pm
    assert a.database is not b.database and a.database.database != b.database.database
    from ctxcloud.db import database

    with first.app_context():
        assert database.obj is a.database
    with second.app_context():
        assert database.obj is b.database
