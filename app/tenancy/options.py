"""A tenant's configuration: quotas the platform sets, settings the tenant's owner may change.

Every quota and setting is *declared*, by the core and by plugins, through the
``tenant_options`` hook: its name, the marshmallow field that validates a value, the service
setting that gives its default, and who may set it (`Quota`: platform operators; `Setting`:
the tenant's owner). The config API, its validation and the OpenAPI document list whatever
the loaded plugins declare.

The tenant row keeps only its overrides (``{"quotas": {...}, "settings": {...}}``); every
value it does not override is the service default, read from the service configuration when
used, so changing a default changes every tenant that did not override it. ``None`` means
unlimited for a quota.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask
import marshmallow as ma
from marshmallow import validate

from ctxcloud.errors import ValidationFailed
from ctxcloud.settings import ConfigError

KINDS = ("quotas", "settings")
BIGINT = 2**63 - 1


class Count(ma.fields.Integer):
    """A whole number, never a boolean or a string of digits (None: unlimited or the default)."""

    def __init__(self, minimum: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("allow_none", True)
        super().__init__(strict=True, validate=validate.Range(minimum, BIGINT), **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


@dataclass(frozen=True)
class Option:
    """One declared quota or setting of every tenant."""

    name: str
    field: ma.fields.Field
    # The service setting (CTXCLOUD_<default>) whose value every tenant inherits; None: the
    # option has no service default (None unless the tenant sets it).
    default: str | None
    description: str
    example: Any = None
    # A setting bounded by the quota of this name: its effective value never exceeds it.
    bounded_by: str | None = None
    # Checks a setting against the others as they will be (message, or None when fine).
    check: Callable[[TenantConfigView], str | None] | None = field(default=None, compare=False)

    kind = "quotas"


class Quota(Option):
    """A limit the platform sets per tenant (`PATCH /tenants/{id}/config`)."""

    kind = "quotas"


class Setting(Option):
    """A choice the tenant's owner makes (`PATCH /tenant/settings`)."""

    kind = "settings"


class TenantConfigView:
    """A tenant's stored config read the way the service reads it (for checks before saving)."""

    def __init__(self, options: TenantOptions, stored: Mapping[str, Any]) -> None:
        self._options = options
        self._stored = stored

    def quota(self, name: str) -> Any:
        return self._options.quota(self._stored, name)

    def setting(self, name: str) -> Any:
        return self._options.setting(self._stored, name)


class _Passthrough(ma.Schema):
    """The declared options' place in a request or response shape: the app validates them with
    its own schema (every plugin's options), and the OpenAPI document describes them."""

    class Meta:
        unknown = ma.INCLUDE

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        return None if obj is None else dict(obj)


class DeclaredQuotas(_Passthrough):
    """Every declared quota (platform operators); null: unlimited."""


class DeclaredSettings(_Passthrough):
    """Every declared setting (the tenant's owner); null: the service default."""


@dataclass
class TenantOptions:
    """The app's declared quotas and settings, and schemas that validate them."""

    quotas: dict[str, Option]
    settings: dict[str, Option]
    config: Mapping[str, Any]
    schemas: dict[str, type[ma.Schema]] = field(default_factory=dict)

    @classmethod
    def collect(
        cls, declared: Iterable[Iterable[Option]], config: Mapping[str, Any]
    ) -> TenantOptions:
        quotas: dict[str, Option] = {}
        settings: dict[str, Option] = {}
        for options in declared:
            for option in options or ():
                target = quotas if option.kind == "quotas" else settings
                if option.name in target:
                    raise ConfigError(
                        f"two plugins declare the tenant {option.kind[:-1]} {option.name!r}"
                    )
                target[option.name] = option
        options = cls(quotas=quotas, settings=settings, config=config)
        options.schemas = {
            "quotas": _schema("TenantQuotas", quotas),
            "settings": _schema("TenantSettings", settings),
        }
        return options

    def of(self, kind: str) -> dict[str, Option]:
        return self.quotas if kind == "quotas" else self.settings

    # -- reading -------------------------------------------------------------

    def quota(self, stored: Mapping[str, Any], name: str) -> Any:
        """The effective quota `name` (the tenant's override, else the service default)."""
        overrides = stored.get("quotas") or {}
        if name in overrides:
            return overrides[name]
        option = self.quotas[name]
        return self.config.get(option.default) if option.default else None

    def setting(self, stored: Mapping[str, Any], name: str) -> Any:
        """The effective setting `name`; one bounded by a quota never exceeds it."""
        option = self.settings[name]
        overrides = stored.get("settings") or {}
        if name in overrides:
            chosen = overrides[name]
        else:
            chosen = self.config.get(option.default) if option.default else None
        if option.bounded_by is None:
            return chosen
        bound = self.quota(stored, option.bounded_by)
        if chosen is None or bound is None:
            return chosen if bound is None else bound
        return min(chosen, bound)

    def effective(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """Effective quotas and settings, and the tenant's own overrides (what the API shows)."""
        return {
            "quotas": {name: self.quota(stored, name) for name in self.quotas},
            "settings": {name: self.setting(stored, name) for name in self.settings},
            "overrides": {kind: dict(stored.get(kind) or {}) for kind in KINDS},
        }

    # -- changing ------------------------------------------------------------

    def validate_change(
        self, changes: Mapping[str, Any], kinds: tuple[str, ...] = KINDS
    ) -> dict[str, dict[str, Any]]:
        """A change ({"quotas": {...}, "settings": {...}}) validated field by field (422)."""
        if not isinstance(changes, Mapping):
            raise ValidationFailed({"_schema": ["An object of quotas and/or settings."]})
        errors: dict[str, Any] = {}
        valid: dict[str, dict[str, Any]] = {}
        for kind, values in changes.items():
            if kind not in kinds:
                errors[kind] = ["Unknown field."]
                continue
            if not isinstance(values, Mapping):
                errors[kind] = ["An object."]
                continue
            try:
                valid[kind] = self.schemas[kind]().load(values)
            except ma.ValidationError as exc:
                errors[kind] = exc.normalized_messages()
        if errors:
            raise ValidationFailed(errors)
        return valid

    def changed(self, stored: Mapping[str, Any], changes: Mapping[str, Mapping[str, Any]]) -> dict:
        """The stored config after validated `changes`; a null value removes the override.

        Settings are checked against the quotas as they will be: a bounded setting within
        its bound, and each setting's own check against the others.
        """
        new = {kind: dict(stored.get(kind) or {}) for kind in KINDS}
        for kind, values in changes.items():
            for name, value in values.items():
                if value is None:
                    new[kind].pop(name, None)
                else:
                    new[kind][name] = value
        result = {kind: values for kind, values in new.items() if values}
        self._check_settings(result, changes.get("settings") or {})
        return result

    def _check_settings(self, config: dict[str, Any], settings_changed: Mapping) -> None:
        view = TenantConfigView(self, config)
        chosen = config.get("settings") or {}
        errors: dict[str, list[str]] = {}
        for name, option in self.settings.items():
            if option.bounded_by and name in settings_changed and chosen.get(name) is not None:
                bound = view.quota(option.bounded_by)
                if bound is not None and chosen[name] > bound:
                    errors[name] = [f"At most {bound}, the platform's bound."]
            if option.check is not None and settings_changed:
                problem = option.check(view)
                if problem:
                    errors.setdefault(name, []).append(problem)
        if errors:
            raise ValidationFailed({"settings": errors})

    def check_service_defaults(self) -> None:
        """Start-up: every default a tenant inherits must be a value a tenant could be given."""
        problems = {}
        for kind in KINDS:
            options = self.of(kind)
            values = {name: self.config.get(o.default) for name, o in options.items() if o.default}
            for name, messages in self.schemas[kind]().validate(values).items():
                problems[f"CTXCLOUD_{options[name].default}"] = messages
        if problems:
            details = "; ".join(f"{key}: {' '.join(map(str, m))}" for key, m in problems.items())
            raise ConfigError(f"invalid tenant defaults: {details}")

    def openapi(self, converter: Any) -> dict[str, dict]:
        """The OpenAPI schemas of the declared quotas and settings (by component name)."""
        return {
            "DeclaredQuotas": converter.schema2jsonschema(self.schemas["quotas"]),
            "DeclaredSettings": converter.schema2jsonschema(self.schemas["settings"]),
        }


def _schema(name: str, options: Mapping[str, Option]) -> type[ma.Schema]:
    fields: dict[str, ma.fields.Field] = {}
    for option_name, option in options.items():
        declared = option.field
        declared.metadata.setdefault("description", option.description)
        if option.example is not None:
            declared.metadata.setdefault("example", option.example)
        fields[option_name] = declared
    schema = ma.Schema.from_dict(fields, name=name)

    class Strict(schema):  # type: ignore[misc, valid-type]
        class Meta:
            unknown = ma.RAISE
            ordered = True

    Strict.__name__ = name
    return Strict


def tenant_options() -> TenantOptions:
    """The current app's declared tenant quotas and settings."""
    return flask.current_app.extensions["ctxcloud"].tenant_options
