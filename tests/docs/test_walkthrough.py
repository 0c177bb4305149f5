"""docs/api.md runs as written: every command, in order, against a live server, outputs checked.

The page's ```sh server block says how the service is started (`make run` with some
variables); the test starts the same gunicorn config with those variables on a free port
and a fresh data directory, and points the page's `http://127.0.0.1:8000` at it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.docs.walkthrough import Page, matches, parse, run
from tests.support.server import ROOT, cli, gunicorn

DOC = ROOT / "docs" / "api.md"
DOC_URL = "http://127.0.0.1:8000"


def server_variables(page: Page) -> dict[str, str]:
    """The variables the page starts `make run` with (and check it is `make run` it starts)."""
    assert len(page.server) == 1, "docs/api.md: one ```sh server block, one command"
    words = shlex.split(page.server[0].text)
    variables = {}
    while words and "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        variables[name] = value
    assert words == ["make", "run"], page.server[0].text
    makefile = (ROOT / "Makefile").read_text()
    assert "HOST ?= 127.0.0.1" in makefile and "PORT ?= 8000" in makefile, "make run's address"
    return variables


def test_the_page_is_read_as_intended():
    """The parser sees commands, multi-line commands and outputs where a reader does."""
    page = parse(DOC)
    assert len(page.commands) >= 25
    texts = [command.text for command in page.commands]
    assert texts[0] == f"API={DOC_URL}/api/v1"
    loop = next(text for text in texts if text.startswith("for "))
    assert loop.rstrip().endswith("done; echo")  # continued past `do` without a backslash
    commit = next(text for text in texts if '"put": [' in text)
    assert commit.rstrip().endswith("0001-database.md\"]}'")  # continued inside a quote
    assert all(command.text.strip() for command in page.commands)
    assert sum(bool(command.expected) for command in page.commands) >= 15


def test_output_patterns():
    assert matches(['{"id":"prj_...",...}'], '{"id":"prj_x1","slug":"a"}\n')
    assert not matches(['{"id":"prj_..."}'], '{"id":"usr_x1"}')
    assert matches(
        ["HTTP/1.1 429 ...", "...", "Retry-After: ..."], "HTTP/1.1 429 X\nA: b\nRetry-After: 3\n"
    )
    assert matches(["a", "...", "b"], "a\nb\n")
    assert matches([], "") and not matches([], "unexpected\n")
    assert not matches(["a", "b"], "a\nx\nb\n")
    assert not matches(["a ... c"], "a b\nc\n")  # `...` within a line stays on that line


@pytest.mark.server
def test_the_api_walkthrough_runs_as_documented(app, app_config, tmp_path, report_figure):
    if shutil.which("curl") is None:
        pytest.fail(
            "curl is not installed: the walkthrough's commands need it (apt-get install curl)"
        )
    page = parse(DOC)
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    env.update(server_variables(page))
    migrated = cli(env, "db", "upgrade")  # what `make run` does before it serves
    assert migrated.returncode == 0, migrated.stderr

    # The page is followed from a checkout ("a second terminal in the same directory"): the
    # commands run in an empty stand-in for it, which must stay empty. mktemp's folders go
    # under this test's own tmp_path.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    curl_home = tmp_path / "curl"
    curl_home.mkdir()
    # Every curl gives up after 30 s rather than hang the test; no user ~/.curlrc applies.
    (curl_home / ".curlrc").write_text("max-time = 30\n")
    shell_env = {
        **os.environ,
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CURL_HOME": str(curl_home),
        "TMPDIR": str(scratch),
    }
    workers = int(env.get("GUNICORN_WORKERS", "2"))
    with gunicorn(env, tmp_path / "logs", workers=workers) as server:
        for command in page.commands:
            command.text = command.text.replace(DOC_URL, server.url)
        ran = run(page.commands, shell_env, checkout, timeout=120, errors_dir=tmp_path / "stderr")
        log = server.log()

    for result in ran:
        where = f"docs/api.md:{result.command.line}"
        details = (
            f"$ {result.command.text}\n--- expected\n"
            + "\n".join(result.command.expected)
            + f"\n--- printed\n{result.output}\n--- stderr\n{result.errors}"
        )
        if result.status != 0:
            pytest.fail(f"{where} exited with {result.status}\n{details}", pytrace=False)
        if not matches(result.command.expected, result.output):  # no lines: prints nothing
            pytest.fail(f"{where} printed something else\n{details}", pytrace=False)
    assert len(ran) == len(page.commands), f"stopped after {len(ran)} commands\n{log[-3000:]}"
    left = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    assert left == [], f"the walkthrough left files in the folder it was run from: {left}"
    assert list(scratch.iterdir()) == [], "its scratch folder (a refresh token) was not removed"
    report_figure(f"docs/api.md: {len(ran)} commands run against {server.url}, outputs checked")
