"""Passwords: the policy, and argon2id hashing with the app's cost settings.

Verifying against a dummy hash when a user does not exist keeps a failed login for an
unknown user about as slow as one with a wrong password.
"""

from __future__ import annotations

import secrets
from functools import cached_property

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ctxcloud import StashKey, setting, stash

MIN_LENGTH = 12
MAX_LENGTH = 1024


def policy_errors(password: str, username: str) -> list[str]:
    """Why `password` is not acceptable for `username` (empty: it is)."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"At least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        problems.append(f"At most {MAX_LENGTH} characters.")
    if password.casefold() == username.casefold():
        problems.append("Must not be the username.")
    return problems


def generate_password() -> str:
    """A strong random password (192 bits) for users created without one."""
    return secrets.token_urlsafe(24)


class Passwords:
    """argon2id with the configured costs; one per app."""

    def __init__(self, time_cost: int, memory_cost: int, parallelism: int) -> None:
        self.hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )

    @cached_property
    def dummy_hash(self) -> str:
        return self.hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        """Spend the time a real verification would, for a user that does not exist."""
        self.verify(self.dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)


PASSWORDS = StashKey["Passwords"]("users.passwords")


def passwords() -> Passwords:
    """The current app's hasher (built on first use from PASSWORD_HASH_* settings)."""
    state = stash()
    found = state.get(PASSWORDS)
    if found is None:
        found = state[PASSWORDS] = Passwords(
            time_cost=int(setting("PASSWORD_HASH_TIME_COST")),
            memory_cost=int(setting("PASSWORD_HASH_MEMORY_COST")),
            parallelism=int(setting("PASSWORD_HASH_PARALLELISM")),
        )
    return found
