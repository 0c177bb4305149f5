"""The per-process caches of a tenant's hot rows and the data generations that keep them exact
(ctxcloud.tenancy.data_cache): a cached value serves only while its tenant's generation holds."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import peewee
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ctxcloud import BaseModel, create_app
from ctxcloud.ratelimit import parse_limit
from ctxcloud.ratelimit_storage import RedisWindows, batch
from ctxcloud.settings import ConfigError
from ctxcloud.tenancy import data_cache
from ctxcloud.tenancy.data_cache import (
    FileDataGenerations,
    RedisDataGenerations,
    TenantDataCache,
    data_caches,
    tenant_data_cache,
)
from tests.support import redisdb
from tests.unit.test_ratelimit_counters import RoundTrips

ROOT = Path(__file__).resolve().parents[2]


class Generations:
    """Counters of this test's own: what each process would read."""

    def __init__(self) -> None:
        self.values: dict[str, int | None] = {}

    def current(self, tenant_id: str) -> int | None:
        return self.values.get(tenant_id, 0)

    def bump(self, tenant_id: str) -> None:
        self.values[tenant_id] = (self.values.get(tenant_id) or 0) + 1


class Loads:
    """A loader that counts its calls and answers a new value each time."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"row{self.count}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(data_cache, "time", SimpleNamespace(monotonic=clock))  # this module's
    return clock


def test_a_value_is_kept_while_its_generation_holds():
    generations, load = Generations(), Loads()
    cache = TenantDataCache(generations, ttl=60, max_entries=10)
    assert [cache.get("tnt_a", "p", load) for _ in range(3)] == ["row1"] * 3
    assert load.count == 1
    generations.bump("tnt_b")  # another tenant's change
    assert cache.get("tnt_a", "p", load) == "row1" and load.count == 1
    generations.bump("tnt_a")
    assert cache.get("tnt_a", "p", load) == "row2" and load.count == 2
    assert cache.get("tnt_a", "p", load) == "row2" and load.count == 2


def test_keys_and_tenants_are_kept_apart():
    cache = TenantDataCache(Generations(), ttl=60, max_entries=10)
    assert cache.get("tnt_a", "p", lambda: "a/p") == "a/p"
    assert cache.get("tnt_b", "p", lambda: "b/p") == "b/p"
    assert cache.get("tnt_a", ("prj", "x.md"), lambda: "a/x") == "a/x"
    assert cache.get("tnt_a", "p", Loads()) == "a/p"
    assert cache.get("tnt_b", "p", Loads()) == "b/p"


def test_none_is_a_value_too():
    """A cached "no such row" holds while the generation does (a create raises it)."""
    generations, calls = Generations(), []
    cache = TenantDataCache(generations, ttl=60, max_entries=10)

    def load():
        calls.append(1)

    assert cache.get("tnt_a", "p", load) is None and cache.get("tnt_a", "p", load) is None
    assert len(calls) == 1
    generations.bump("tnt_a")
    assert cache.get("tnt_a", "p", lambda: "created") == "created"


def test_entries_expire_after_the_ttl(clock):
    load = Loads()
    cache = TenantDataCache(Generations(), ttl=30, max_entries=10)
    assert cache.get("tnt_a", "p", load) == "row1"
    clock.now += 29.9
    assert cache.get("tnt_a", "p", load) == "row1" and load.count == 1
    clock.now += 0.1  # 30 s after it was read
    assert cache.get("tnt_a", "p", load) == "row2" and load.count == 2


def test_a_ttl_of_zero_keeps_nothing():
    load = Loads()
    cache = TenantDataCache(Generations(), ttl=0, max_entries=10)
    assert [cache.get("tnt_a", "p", load) for _ in range(3)] == ["row1", "row2", "row3"]


def test_without_a_generation_every_read_loads_and_nothing_is_kept():
    """An unreadable generation (Redis down) leaves the cache unused, not trusted."""
    generations, load = Generations(), Loads()
    cache = TenantDataCache(generations, ttl=60, max_entries=10)
    generations.values["tnt_a"] = None
    assert [cache.get("tnt_a", "p", load) for _ in range(2)] == ["row1", "row2"]
    assert cache.entries == {}
    generations.values["tnt_a"] = 7  # readable again: the next read loads, then is kept
    assert cache.get("tnt_a", "p", load) == "row3"
    assert cache.get("tnt_a", "p", load) == "row3" and load.count == 3


def test_cached_false_always_loads_and_keeps_what_it_read():
    load = Loads()
    cache = TenantDataCache(Generations(), ttl=60, max_entries=10)
    assert cache.get("tnt_a", "p", load) == "row1"
    assert cache.get("tnt_a", "p", load, cached=False) == "row2"
    assert cache.get("tnt_a", "p", load, cached=False) == "row3"
    assert cache.get("tnt_a", "p", load) == "row3" and load.count == 3


def test_the_cache_is_bounded():
    cache = TenantDataCache(Generations(), ttl=60, max_entries=3)
    for i in range(10):
        assert cache.get("tnt_a", i, lambda i=i: i) == i
        assert len(cache.entries) <= 3
    load = Loads()
    assert cache.get("tnt_a", 9, load) == 9 and load.count == 0  # the newest is kept


def test_file_generations_are_shared_by_every_opener(tmp_path):
    path = str(tmp_path / "data" / "data-generations")
    one, two = FileDataGenerations(path), FileDataGenerations(path)  # as two processes would
    before = one.current("tnt_a")
    assert isinstance(before, int) and two.current("tnt_a") == before
    two.bump("tnt_a")
    assert one.current("tnt_a") == before + 1  # at once: a shared mapping, no I/O to read
    one.bump("tnt_a")
    assert two.current("tnt_a") == before + 2
    assert FileDataGenerations(path).current("tnt_a") == before + 2  # a process started later
    assert one.announced("tnt_a") == {}  # nothing for the rate limiter's round trip to read


def test_a_cache_on_the_file_sees_another_processs_change_at_once(tmp_path):
    path = str(tmp_path / "data-generations")
    here = TenantDataCache(FileDataGenerations(path), ttl=60, max_entries=10)
    there = FileDataGenerations(path)
    load = Loads()
    assert here.get("tnt_a", "p", load) == here.get("tnt_a", "p", load) == "row1"
    there.bump("tnt_a")
    assert here.get("tnt_a", "p", load) == "row2"


# With Redis ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_redis_counters_start_at_a_random_seed(redis_client):
    generations = RedisDataGenerations(redis_client, "t:")
    first = {tenant: generations.current(tenant) for tenant in ("tnt_a", "tnt_b")}
    assert first["tnt_a"] != first["tnt_b"]
    assert 0 not in first.values() and None not in first.values()
    assert redis_client.get("t:datagen:tnt_a") == str(first["tnt_a"]).encode()
    # Created once: every later read, by any process, answers the same.
    assert RedisDataGenerations(redis_client, "t:").current("tnt_a") == first["tnt_a"]


@pytest.mark.integration
def test_a_redis_raise_is_read_by_every_process(redis_client):
    here = RedisDataGenerations(redis_client, "t:")
    there = RedisDataGenerations(redis_client, "t:")  # as another process would
    before = here.current("tnt_a")
    there.bump("tnt_a")
    assert here.current("tnt_a") == before + 1  # read from Redis: no mirror to wait for
    here.bump("tnt_b")  # raising a counter never read creates it at a seed first
    assert there.current("tnt_b") not in (None, 0, 1)


@pytest.mark.integration
def test_a_redis_that_lost_its_data_never_matches_a_cached_value(redis_client):
    generations = RedisDataGenerations(redis_client, "t:")
    cache = TenantDataCache(generations, ttl=60, max_entries=10)
    load = Loads()
    before = generations.current("tnt_a")
    assert cache.get("tnt_a", "p", load) == cache.get("tnt_a", "p", load) == "row1"
    redisdb.flush(redis_client)  # Redis restarted empty (it keeps nothing on disk)
    after = generations.current("tnt_a")
    assert after is not None and after != before
    assert cache.get("tnt_a", "p", load) == "row2"


@pytest.mark.integration
def test_generations_are_read_once_per_request(redis_client, monkeypatch):
    import flask

    generations = RedisDataGenerations(redis_client, "t:")
    generations.current("tnt_a")  # the script loaded into this Redis
    app = flask.Flask(__name__)
    trips = RoundTrips(monkeypatch)
    with app.test_request_context():
        value = generations.current("tnt_a")
        assert [generations.current("tnt_a") for _ in range(5)] == [value] * 5
        assert trips.count == 1
        assert generations.announced("tnt_a") == {}  # already read: nothing to prefetch
        generations.bump("tnt_a")  # this request's own change: read on from the new value
        assert generations.current("tnt_a") == value + 1 and trips.count == 2
    with app.test_request_context():  # the next request reads Redis again
        announced = generations.announced("tnt_a")
        assert list(announced) == ["t:datagen:tnt_a"]
        generations.prefetched("tnt_a", {"t:datagen:tnt_a": str(value + 5).encode()})
        assert generations.current("tnt_a") == value + 5 and trips.count == 2


def unreachable() -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=1,  # nothing listens there
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )


def test_an_unreachable_redis_leaves_the_cache_unused(caplog):
    generations = RedisDataGenerations(unreachable(), "t:")
    assert generations.current("tnt_a") is None
    load = Loads()
    cache = TenantDataCache(generations, ttl=60, max_entries=10)
    assert [cache.get("tnt_a", "p", load) for _ in range(2)] == ["row1", "row2"]
    with caplog.at_level(logging.ERROR, logger="ctxcloud.data_cache"):
        generations.bump("tnt_a")  # the change committed already: logged, never raised
    (record,) = [r for r in caplog.records if r.name == "ctxcloud.data_cache"]
    assert record.levelno == logging.ERROR and "tnt_a" in record.getMessage()


@pytest.mark.integration
def test_the_rate_limiters_round_trip_reads_the_counters_too(redis_client, monkeypatch):
    storage = RedisWindows(client=redis_client, key_prefix="t:rl:")
    minute, hour = parse_limit("3/minute")[0], parse_limit("100/hour")[0]
    windows = [(minute, minute.key_for("cred")), (hour, hour.key_for("tnt"))]
    redis_client.set("t:datagen:tnt_b", "41")
    storage.incr("warm-up", 1)  # the script loaded into this Redis
    trips = RoundTrips(monkeypatch)
    reads = {"t:datagen:tnt_a": "1234", "t:datagen:tnt_b": "99"}
    with batch(storage, windows, reads) as values:
        assert values == {}  # nothing spent yet
        assert storage.incr(windows[0][1], 60) == 1
        assert storage.incr(windows[1][1], 3600) == 1
    assert trips.count == 1
    # Created at its seed where missing, read as it stands where present: strings, not
    # doubles (a Lua number would round a 62-bit counter).
    assert values == {"t:datagen:tnt_a": b"1234", "t:datagen:tnt_b": b"41"}
    assert redis_client.get("t:datagen:tnt_a") == b"1234"
    assert redis_client.ttl("t:datagen:tnt_a") == -1  # never expires with the windows
    big = str(2**62 - 3)
    redis_client.set("t:datagen:tnt_c", big)
    with batch(storage, windows, {"t:datagen:tnt_c": "1"}) as values:
        storage.incr(windows[0][1], 60)
    assert values == {"t:datagen:tnt_c": big.encode()}


# Settings -----------------------------------------------------------------------------------


def test_the_settings_reach_the_caches(tmp_path):
    app = create_app(
        {
            "ENV": "testing",
            "DATA_DIR": str(tmp_path),
            "DATA_CACHE_TTL": "0.5",
            "DATA_CACHE_MAX_ENTRIES": "7",
        }
    )
    caches = data_caches(app)
    assert (caches.ttl, caches.max_entries) == (0.5, 7)
    assert isinstance(caches.generations, FileDataGenerations)  # no Redis configured
    with app.app_context():
        cache = tenant_data_cache("acme.widget")
        assert (cache.ttl, cache.max_entries) == (0.5, 7)
        assert tenant_data_cache("acme.widget") is cache  # one per name and app
    defaults = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "other")})
    assert (data_caches(defaults).ttl, data_caches(defaults).max_entries) == (60, 10000)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"DATA_CACHE_TTL": "soon"}, "CTXCLOUD_DATA_CACHE_TTL='soon' is not a number"),
        ({"DATA_CACHE_TTL": "-1"}, "CTXCLOUD_DATA_CACHE_TTL must be at least 0"),
        ({"DATA_CACHE_MAX_ENTRIES": "0"}, "CTXCLOUD_DATA_CACHE_MAX_ENTRIES must be at least 1"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_it(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), **setting})


# docs/plugins.md ----------------------------------------------------------------------------


def test_the_plugin_guides_example_reads_once_and_sees_its_own_change(tmp_path):
    """The example of "Caching a tenant's hot rows" runs as written, on a model of its own."""
    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text[text.index("\n## Caching a tenant's hot rows\n") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 1)], re.S)

    class Widget(BaseModel):
        id = peewee.CharField(primary_key=True)
        tenant_id = peewee.CharField()
        name = peewee.CharField()

    app = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path)})
    namespace: dict = {"Widget": Widget}
    exec(compile(code, "docs/plugins.md#caching-a-tenants-hot-rows", "exec"), namespace)
    db = app.extensions["ctxcloud"].database
    with app.app_context():
        db.create_tables([Widget])
        Widget.create(id="w1", tenant_id="tnt_a", name="first")
        statements: list[str] = []
        run = type(db).execute_sql

        def counted(database, sql, *args, **kwargs):
            statements.append(sql)
            return run(database, sql, *args, **kwargs)

        type(db).execute_sql = counted
        try:
            assert [namespace["widget"]("tnt_a", "w1").name for _ in range(3)] == ["first"] * 3
            assert namespace["widget"]("tnt_b", "w1") is None  # another tenant's: none
            assert len(statements) == 2
            namespace["rename"]("tnt_a", "w1", "second")
            assert namespace["widget"]("tnt_a", "w1").name == "second"
        finally:
            type(db).execute_sql = run
