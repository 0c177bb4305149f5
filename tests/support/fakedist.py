"""Install a throwaway plugin distribution (modules + dist-info with entry points) on sys.path.

This is exactly what `pip install` leaves behind for importlib.metadata to find, so the
plugin is discovered the way any third-party package would be.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def installed_distribution(
    root: Path,
    name: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str],
    version: str = "1.0.0",
) -> Iterator[Path]:
    """Write `modules` ({"pkg/__init__.py": source}) and a dist-info declaring `entry_points`."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, source in modules.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    dist_info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = ["[ctxcloud.plugins]"] + [f"{ep} = {target}" for ep, target in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    top_level = {relative.split("/")[0].removesuffix(".py") for relative in modules}
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for module in list(sys.modules):
            if module.split(".")[0] in top_level:
                del sys.modules[module]
        importlib.invalidate_caches()
