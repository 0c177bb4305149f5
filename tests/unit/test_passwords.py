"""The password policy and argon2id hashing with configured costs."""

from __future__ import annotations

import pytest

from ctxcloud.plugins.users import config_defaults
from ctxcloud.plugins.users.passwords import Passwords, generate_password, passwords, policy_errors


@pytest.mark.parametrize(
    "password,username,ok",
    [
        ("twelve chars", "bob", True),
        ("eleven char", "bob", False),
        ("x" * 1024, "bob", True),
        ("x" * 1025, "bob", False),
        ("Alice-Wonderland", "alice-wonderland", False),
        ("alice-wonderland!", "alice-wonderland", True),
    ],
)
def test_policy(password, username, ok):
    assert (policy_errors(password, username) == []) is ok


def test_generated_passwords_pass_and_differ():
    first, second = generate_password(), generate_password()
    assert first != second and len(first) >= 32 and policy_errors(first, "u") == []


def test_argon2id_with_the_given_costs():
    hasher = Passwords(time_cost=2, memory_cost=2048, parallelism=1)
    hashed = hasher.hash("correct horse battery")
    assert hashed.startswith("$argon2id$") and "m=2048,t=2,p=1" in hashed
    assert hasher.verify(hashed, "correct horse battery")
    assert not hasher.verify(hashed, "correct horse battery!")
    assert not hasher.verify("not a hash", "anything")
    assert not hasher.needs_rehash(hashed)
    assert Passwords(time_cost=3, memory_cost=2048, parallelism=1).needs_rehash(hashed)
    hasher.verify_dummy("whatever")  # never raises, whatever the input
    assert hasher.dummy_hash.startswith("$argon2id$")


def test_production_grade_defaults_and_cheap_test_costs(app):
    assert {name: v for name, v in config_defaults().items() if "PASSWORD" in name} == {
        "PASSWORD_HASH_TIME_COST": 3,
        "PASSWORD_HASH_MEMORY_COST": 65536,
        "PASSWORD_HASH_PARALLELISM": 4,
    }
    with app.app_context():
        assert "m=1024,t=1,p=4" in passwords().hash("a test password")
