"""Claim rules: which role a provider's token gives, decided from its claims alone.

Rules are ordered and the first match wins; no match falls back on the provider's default
role, and without one the identity is refused. A claim is named exactly as the token names
it (a namespaced URL such as ``https://acme.example/groups`` is one name; no dotted paths).
``equals`` matches a string claim equal to the value; ``contains`` matches an array claim
holding the value, or a string claim equal to it (a provider that sends one group as a
string). Only strings are compared: a number or a boolean never matches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RULE = "rule"
DEFAULT = "default"
REFUSED = "refused"


@dataclass(frozen=True)
class Decision:
    """The role a set of claims earns, and why: a rule (its index), the default, or refused."""

    role: str | None
    by: str
    rule_index: int | None = None


def rule_matches(rule: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    value = claims.get(rule["claim"])
    if "equals" in rule:
        return isinstance(value, str) and value == rule["equals"]
    wanted = rule["contains"]
    if isinstance(value, list):
        return any(isinstance(member, str) and member == wanted for member in value)
    return isinstance(value, str) and value == wanted


def decide(
    rules: Sequence[Mapping[str, Any]], default_role: str | None, claims: Mapping[str, Any]
) -> Decision:
    for index, rule in enumerate(rules):
        if rule_matches(rule, claims):
            return Decision(rule["role"], RULE, index)
    if default_role is not None:
        return Decision(default_role, DEFAULT)
    return Decision(None, REFUSED)
