"""docs/plugins.md, where plugin authors look: it lists every toolkit name, and its examples run."""

import re
from pathlib import Path

import pytest

import ctxcloud

PLUGINS_DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def section(title: str) -> str:
    text = PLUGINS_DOC.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_toolkit_name_is_documented():
    text = PLUGINS_DOC.read_text()
    toolkit = text[text.index("## The toolkit") : text.index("### Stability promise")]
    documented = set(re.findall(r"`(?:ctxcloud\.)?([A-Za-z_]\w*)", toolkit))
    assert sorted(set(ctxcloud.__all__) - documented) == []


@pytest.fixture
def settings_example():
    (code,) = re.findall(r"```python\n(.*?)```", section("## Settings"), re.S)
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md#settings", "exec"), namespace)
    return namespace


def test_the_settings_example_reads_typed_values_with_defaults(settings_example):
    acme = settings_example["AcmeSettings"].from_config(
        {"ACME_URL": "https://acme", "ACME_BATCH": "50"}
    )
    assert (acme.url, acme.timeout, acme.batch) == ("https://acme", 5.0, 50)
    assert settings_example["config_defaults"]() == settings_example["DEFAULTS"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "CTXCLOUD_ACME_URL is required"),
        ({"ACME_URL": "https://acme", "ACME_TIMEOUT": "soon"}, "CTXCLOUD_ACME_TIMEOUT must be"),
        ({"ACME_URL": "https://acme", "ACME_BATCH": 1.5}, "CTXCLOUD_ACME_BATCH must be"),
    ],
)
def test_the_settings_example_stops_the_start_naming_the_variable(
    settings_example, config, message
):
    with pytest.raises(ctxcloud.ConfigError, match=f"^{message}"):
        settings_example["AcmeSettings"].from_config(config)


class _Upload:
    def __init__(self, store, key):
        self.store, self.key, self.parts = store, key, []

    def send_part(self, block):
        self.parts.append(bytes(block))  # the block is refilled in place: keep a copy

    def complete(self):
        self.store.objects[self.key] = b"".join(self.parts)
        self.store.completed.append([len(part) for part in self.parts])

    def abort(self):
        self.store.aborted.append(self.key)


class _Client:
    def __init__(self):
        self.objects, self.completed, self.aborted, self.singles = {}, [], [], []

    def start_upload(self, key):
        return _Upload(self, key)

    def put_object(self, key, data):
        self.objects[key] = bytes(data)
        self.singles.append(key)


@pytest.fixture
def blocks_example():
    code = next(
        block
        for block in re.findall(r"```python\n(.*?)```", section("## Storage backends"), re.S)
        if "Blocks" in block
    )
    namespace: dict = {}
    exec(compile(code, "docs/plugins.md#storage-backends", "exec"), namespace)

    class Backend:
        put = namespace["put"]

        def __init__(self):
            self.part_size, self.client = 10, _Client()

    return Backend()


def test_the_blocks_example_puts_a_small_object_in_one_request(blocks_example):
    assert blocks_example.put("k", [b"abc", b"defghij"]) == 10  # exactly one block
    assert blocks_example.client.objects == {"k": b"abcdefghij"}
    assert blocks_example.client.singles == ["k"]


def test_the_blocks_example_puts_a_large_object_in_parts(blocks_example):
    data = bytes(range(256)) * 2
    assert blocks_example.put("k", [data[i : i + 7] for i in range(0, len(data), 7)]) == 512
    assert blocks_example.client.objects == {"k": data}
    assert blocks_example.client.completed == [[10] * 51 + [2]]


def test_the_blocks_example_aborts_when_the_chunks_fail(blocks_example):
    def chunks():
        yield b"x" * 25
        raise OSError("the client went away")

    with pytest.raises(OSError, match="went away"):
        blocks_example.put("k", chunks())
    assert blocks_example.client.aborted == ["k"]
    assert blocks_example.client.objects == {}
