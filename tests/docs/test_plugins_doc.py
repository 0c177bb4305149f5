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
