"""The toolkit's settings reader: what a plugin's settings class builds on (docs/plugins.md)."""

import re

import pytest

from ctxcloud import ConfigError, SettingsReader, env_variable, folder_prefix

DEFAULTS = {"ACME_URL": None, "ACME_SIZE": 8, "ACME_WAIT": 2.5, "ACME_BUDGET": None}


def reader(**config):
    return SettingsReader(config, DEFAULTS)


def test_the_variable_an_operator_sets_is_named():
    assert env_variable("ACME_SIZE") == "CTXCLOUD_ACME_SIZE"


@pytest.mark.parametrize("unset", [None, "", "   "])
def test_unset_and_empty_read_as_the_default(unset):
    read = reader(ACME_SIZE=unset, ACME_WAIT=unset, ACME_URL=unset, ACME_BUDGET=unset)
    assert read.whole_number("ACME_SIZE") == 8
    assert read.seconds("ACME_WAIT") == 2.5
    assert read.string("ACME_URL") is None
    assert read.optional_seconds("ACME_BUDGET") is None


def test_values_are_read_as_their_type():
    read = reader(ACME_SIZE="16", ACME_WAIT="0.5", ACME_URL="  https://x  ", ACME_BUDGET=30)
    assert read.whole_number("ACME_SIZE") == 16
    assert read.seconds("ACME_WAIT") == 0.5
    assert read.string("ACME_URL") == "https://x"
    assert read.optional_seconds("ACME_BUDGET") == 30.0


def test_a_number_is_taken_as_text_where_text_is_expected():
    """CTXCLOUD_ACME_URL=12345 arrives JSON-decoded, as an int."""
    assert reader(ACME_URL=12345).string("ACME_URL") == "12345"


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("ACME_SIZE", 8.5, "whole_number"),
        ("ACME_SIZE", True, "whole_number"),
        ("ACME_SIZE", "8 MiB", "whole_number"),
        ("ACME_WAIT", "soon", "seconds"),
        ("ACME_WAIT", False, "seconds"),
        ("ACME_BUDGET", [1], "optional_seconds"),
        ("ACME_URL", True, "string"),
        ("ACME_URL", {"a": 1}, "string"),
    ],
)
def test_a_wrong_value_stops_the_start_naming_the_variable(name, value, read):
    with pytest.raises(ConfigError, match=f"^CTXCLOUD_{name} must be"):
        getattr(reader(**{name: value}), read)(name)


PREFIX = re.compile(r"[a-z0-9/._-]+")


def prefix(value):
    return folder_prefix(
        value, "ACME_PREFIX", characters=PREFIX, described="a-z0-9/._-", max_length=16
    )


@pytest.mark.parametrize(("given", "read"), [("", ""), ("team", "team/"), ("a/b/", "a/b/")])
def test_a_prefix_is_a_relative_folder(given, read):
    assert prefix(given) == read


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("Team", "may hold only a-z0-9/._-"),
        ("/abs", "must be relative"),
        ("a//b", "must be relative"),
        ("a/../b", "must be relative"),
        ("./a", "must be relative"),
        ("a" * 17, "longer than 16 characters"),
    ],
)
def test_a_prefix_that_could_escape_or_collide_stops_the_start(given, message):
    with pytest.raises(ConfigError, match="^CTXCLOUD_ACME_PREFIX") as raised:
        prefix(given)
    assert message in str(raised.value)
