"""Plugins are plugins: a built-in imports the public toolkit and its own package, never another
plugin and never the core's private modules, exactly as a third party would have to."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
# The toolkit: the root and its public modules (docs/plugins.md, "The toolkit").
PUBLIC = {"ctxcloud", "ctxcloud.tenancy", "ctxcloud.objects", "ctxcloud.testing"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an import statement of `path` names (the `from` module, or each
    `import`ed one), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "." * node.level + (node.module or "")))
            elif node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def crossings(plugin: Path, own: str | None = None) -> list[str]:
    own = own or f"ctxcloud.plugins.{plugin.name}"
    wrong = []
    for path in sorted(plugin.rglob("*.py")):
        for line, module in imported_modules(path):
            where = f"{path.relative_to(plugin.parent)}:{line} imports {module}"
            if module.startswith("."):
                continue  # relative: within the plugin's own package
            if module == own or module.startswith(own + "."):
                continue
            if module.startswith("ctxcloud.plugins"):
                wrong.append(f"{where} (another plugin)")
            elif module.split(".")[0] == "ctxcloud" and module not in PUBLIC:
                wrong.append(f"{where} (the core's private module)")
            elif module.split(".")[0] in ("app", "plugins", "config"):
                wrong.append(f"{where} (a checkout folder, not the installed package)")
    return wrong


BUILT_INS = sorted(p for p in PLUGINS.iterdir() if (p / "__init__.py").exists())
# Plugins packaged as distributions of their own (plugins/<dir>/pyproject.toml): the package
# inside is checked the same way, with its own import name as "own".
DISTRIBUTED = sorted(
    package
    for project in PLUGINS.glob("*/pyproject.toml")
    for package in project.parent.iterdir()
    if (package / "__init__.py").exists()
)


def test_every_built_in_plugin_is_checked():
    assert {p.name for p in BUILT_INS} >= {"auth_apikey", "context", "tenants", "users"}


@pytest.mark.parametrize("plugin", BUILT_INS, ids=lambda p: p.name)
def test_a_built_in_plugin_imports_only_the_toolkit_and_itself(plugin):
    assert crossings(plugin) == []


@pytest.mark.parametrize("package", DISTRIBUTED, ids=lambda p: p.name)
def test_a_separately_packaged_plugin_imports_only_the_toolkit_and_itself(package):
    assert crossings(package, own=package.name) == []


def test_the_check_catches_a_crossing(tmp_path):
    """Control: a plugin importing another plugin, or a private core module, is caught."""
    plugin = tmp_path / "sneaky"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        "from ctxcloud import hookimpl\n"
        "from ctxcloud.plugins.context.models import Project\n"
        "import ctxcloud.db\n"
        "from . import helpers\n"
    )
    found = crossings(plugin)
    assert len(found) == 2
    assert "another plugin" in found[0] and "private module" in found[1]


def test_every_toolkit_name_is_what_it_says_even_with_every_module_imported():
    """A submodule import sets an attribute of the package: a toolkit name equal to a module's
    name would be shadowed by the module once something imports it."""
    import importlib
    import pkgutil

    import ctxcloud

    for module in pkgutil.walk_packages(ctxcloud.__path__, "ctxcloud."):
        if not module.name.startswith(("ctxcloud.plugins", "ctxcloud.config")):
            importlib.import_module(module.name)
    for name, (module, attribute) in ctxcloud._TOOLKIT.items():
        expected = importlib.import_module(module)
        if attribute is not None:
            expected = getattr(expected, attribute)
        assert getattr(ctxcloud, name) is expected, name
