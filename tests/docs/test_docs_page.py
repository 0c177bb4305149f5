"""The interactive docs page (/api/v1/docs) loads with no network and shows every operation.

Headless Chromium (Debian's `chromium`, installed by .ci/packages) opens the page from a
live server while every host but 127.0.0.1 fails to resolve, lets the page run, and hands
back the rendered DOM; a second run saves a screenshot, whose path the test prints.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.docs.openapi import operations
from tests.support.server import gunicorn

pytestmark = pytest.mark.server

# Swagger UI renders one `div.opblock.opblock-<method>` per operation, then its path.
OPERATION = re.compile(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]*)"', re.DOTALL)


def chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on `url` with the network cut off beyond loopback."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run .ci/packages (it installs Debian's chromium)")
    command = [
        executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        # Virtual time runs until the page is idle (spec fetched, operations rendered).
        "--virtual-time-budget=20000",
        *action,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_docs_page_renders_every_operation_without_network(app_config, tmp_path, report_figure):
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    env["CTXCLOUD_LOG_LEVEL"] = "INFO"  # the access log shows what the page fetched
    screenshot = tmp_path / "api-docs.png"
    with gunicorn(env, tmp_path / "logs", workers=1) as server:
        spec = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
        page = f"{server.url}/api/v1/docs"
        dom = chromium(page, tmp_path / "profile-dom", "--dump-dom").stdout
        chromium(
            page,
            tmp_path / "profile-shot",
            "--hide-scrollbars",
            "--window-size=1280,2400",
            f"--screenshot={screenshot}",
        )
        log = server.log()

    rendered = sorted((m, html.unescape(p)) for m, p in OPERATION.findall(dom))
    documented = sorted((method.lower(), path) for method, path, _ in operations(spec))
    assert len(documented) > 30
    assert rendered == documented
    for _, _, operation in operations(spec):
        assert html.escape(operation["summary"], quote=False) in dom, operation["summary"]
    assert "btn authorize" in dom  # the security schemes give the page its Authorize button
    assert "/api/v1/docs/static/swagger-ui-bundle.js" in log  # its script came from us
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report_figure(f"/api/v1/docs rendered {len(rendered)} operations; screenshot: {screenshot}")
