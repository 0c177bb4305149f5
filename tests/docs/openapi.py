"""Walking an OpenAPI document: its operations, and the examples its schemas compose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
NO_EXAMPLE = object()


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    """(METHOD, path, operation) for every operation, in document order."""
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def resolve(spec: dict, node: Any) -> Any:
    """Follow local `$ref`s (`#/components/...`, as apispec writes them) to what they name."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are expected: {ref}"
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def refers_to_component(schema: dict) -> bool:
    """A property that is (a list of, or nullable) another schema: its examples live there."""
    if "$ref" in schema:
        return True
    if schema.get("type") == "array" or "array" in schema.get("type", []):
        return refers_to_component(schema.get("items", {}))
    return any(refers_to_component(option) for option in schema.get("anyOf", []))


def composed_example(spec: dict, schema: dict, seen: frozenset[str] = frozenset()) -> Any:
    """The example a reader sees for `schema`: its own, else one built from its properties."""
    if "$ref" in schema:
        if schema["$ref"] in seen:
            return NO_EXAMPLE
        return composed_example(spec, resolve(spec, schema), seen | {schema["$ref"]})
    if "example" in schema:
        return schema["example"]
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        example = composed_example(spec, option, seen)
        if example is not NO_EXAMPLE:
            return example
    if "properties" in schema:
        built = {}
        for name, prop in schema["properties"].items():
            example = composed_example(spec, prop, seen)
            if example is not NO_EXAMPLE:
                built[name] = example
        return built
    if "items" in schema:
        item = composed_example(spec, schema["items"], seen)
        return [] if item is NO_EXAMPLE else [item]
    return NO_EXAMPLE
