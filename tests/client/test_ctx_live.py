"""The `ctx` command (client/, ctxcloud_client.cli) against a real server: gunicorn on the stack
under test (embedded, or CTXCLOUD_TEST_STACK=production), the installed `ctx` console script run
as a subprocess with CTX_URL/CTX_API_KEY (no profile file, no keyring), and a TCP proxy that cuts
transfers half-way for the interruption tests."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ctxcloud_client import Client, CommitPut, Manifest

from tests.support.factories import make_api_key, make_tenant
from tests.support.server import Server, gunicorn

pytestmark = pytest.mark.server

CTX = str(Path(sys.executable).with_name("ctx"))
MiB = 1024 * 1024


@pytest.fixture
def server(app, app_config, tmp_path) -> Iterator[Server]:
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    with gunicorn(env, tmp_path / "logs", workers=2) as served:
        yield served


@pytest.fixture
def api_key(app) -> str:
    tenant = make_tenant(app, slug="acme", name="ACME")
    return make_api_key(app, tenant, name="ctx-live")[1]


@pytest.fixture
def remote(server, api_key) -> Iterator[Client]:
    with Client(server.url, api_key=api_key) as client:
        client.create_project("Notes", slug="notes")
        yield client


def ctx(
    url: str, key: str, tmp: Path, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess:
    """Run `ctx` as a user would; `check` is the exit code expected (None: any)."""
    env = {
        **os.environ,
        "CTX_URL": url,
        "CTX_API_KEY": key,
        "CTX_CONFIG_DIR": str(tmp / "ctx-config"),  # never the user's
        "CTX_NO_KEYRING": "1",
    }
    env.pop("CTX_PROFILE", None)
    ran = subprocess.run(
        [CTX, *args], env=env, capture_output=True, text=True, timeout=900, check=False, cwd=tmp
    )
    if check is not None:
        assert ran.returncode == check, f"ctx {' '.join(args)}: {ran.returncode}\n{ran.stderr}"
    return ran


@pytest.fixture
def run(server, api_key, tmp_path):
    def runner(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
        return ctx(server.url, api_key, tmp_path, *args, check=check)

    return runner


def head(client: Client) -> Manifest:
    found = client.manifest("notes")
    assert isinstance(found, Manifest)
    return found


def file_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` but ctx's own state, by relative path: SHA-256."""
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".ctx/"):
            with path.open("rb") as file:
                found[rel] = hashlib.file_digest(file, "sha256").hexdigest()
    return found


def write_tree(root: Path, small: int, big_size: int) -> None:
    """`small` text files in a few folders, one binary one, and one large random file."""
    for n in range(small):
        folder = root / f"dir{n % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{n:04d}.md").write_text(f"# Note {n}\n\n" + "line\n" * (n % 7))
    (root / "dir0" / "blob.bin").write_bytes(bytes(range(256)) * 4)
    with (root / "large.bin").open("wb") as out:
        left = big_size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            out.write(chunk)
            left -= len(chunk)


@pytest.mark.parametrize(
    "big_size",
    [3 * MiB + 11, pytest.param(200 * MiB, marks=pytest.mark.slow, id="200MiB")],
)
def test_a_tree_of_a_thousand_files_round_trips_as_one_revision(remote, run, tmp_path, big_size):
    source, copy = tmp_path / "source", tmp_path / "copy"
    write_tree(source, small=998, big_size=big_size)  # + blob.bin + large.bin = 1000 files
    pushed = json.loads(run("push", "notes", str(source), "-m", "everything", "--json").stdout)
    assert pushed["revisions"] == [1] and len(pushed["plan"]["add"]) == 1000
    manifest = head(remote)
    assert (manifest.revision, len(manifest)) == (1, 1000)
    assert manifest.get("large.bin").size == big_size
    assert len(remote.get_revision("notes", 1).changes) == 1000

    pulled = json.loads(run("pull", "notes", str(copy), "--json").stdout)
    assert pulled["revision"] == 1 and len(pulled["plan"]["add"]) == 1000
    assert file_hashes(copy) == file_hashes(source)  # byte-exact, nothing else written
    assert not list(copy.rglob(".ctxtmp-*"))

    again = run("push", "notes", str(source))
    assert "nothing to push" in again.stdout
    assert head(remote).revision == 1  # no revision for nothing
    assert "up to date" in run("pull", "notes", str(copy)).stdout

    edited = source / "dir3" / "note0003.md"
    edited.write_text("# Note 3, edited\n")
    one = json.loads(run("push", "notes", str(source), "--json").stdout)
    assert one["revisions"] == [2] and one["plan"]["change"] == ["dir3/note0003.md"]
    changes = remote.get_revision("notes", 2).changes
    assert [(c.path, c.action) for c in changes] == [("dir3/note0003.md", "put")]
    run("pull", "notes", str(copy))
    assert (copy / "dir3" / "note0003.md").read_text() == "# Note 3, edited\n"
    log = json.loads(run("log", "notes", "--json").stdout)
    assert [r["revision"] for r in log["revisions"]] == [2, 1]


def test_more_than_one_commit_holds_is_refused_unless_split(remote, run, tmp_path):
    source = tmp_path / "many"
    source.mkdir()
    for n in range(1001):
        (source / f"f{n:04d}.txt").write_text(str(n))
    refused = run("push", "notes", str(source), check=1)
    assert "--split" in refused.stderr and head(remote).revision == 0
    pushed = json.loads(run("push", "notes", str(source), "--split", "--json").stdout)
    assert pushed["revisions"] == [1, 2] and len(head(remote)) == 1001


def test_concurrent_pushes_the_second_is_a_conflict_and_nothing_is_lost(
    remote, run, tmp_path, monkeypatch, api_key, server, capsys
):
    remote.commit("notes", put=[CommitPut.text("a.md", "A\n"), CommitPut.text("b.md", "B\n")])
    one, two = tmp_path / "one", tmp_path / "two"
    run("pull", "notes", str(one))
    run("pull", "notes", str(two))
    (one / "a.md").write_text("A by one\n")
    (two / "a.md").write_text("A by two\n")
    run("push", "notes", str(one), "-m", "one")
    refused = run("push", "notes", str(two), "-m", "two", check=3)
    assert "conflict: a.md" in refused.stderr and "ctx pull" in refused.stderr
    assert remote.get_entry("notes", "a.md") == b"A by one\n"
    assert (two / "a.md").read_text() == "A by two\n"  # the loser's edit is still there
    assert run("pull", "notes", str(two), check=3).returncode == 3  # both changed a.md
    assert (two / "a.md").read_text() == "A by two\n"

    # Different paths: the second push goes in over the first (no path of it moved).
    (one / "b.md").write_text("B by one\n")
    run("push", "notes", str(one))
    (two / "new.md").write_text("new by two\n")
    (two / "a.md").write_text("A by one\n")  # two resolved a.md by hand
    run("push", "notes", str(two))
    assert remote.get_entry("notes", "new.md") == b"new by two\n"
    assert remote.get_entry("notes", "b.md") == b"B by one\n"
    synced = run("sync", "notes", str(two))  # takes one's b.md, has nothing left to push
    assert "M b.md" in synced.stdout and (two / "b.md").read_text() == "B by one\n"
    # A sync whose pull leaves a local change alone for its push to send says it once, as
    # the push's change, not also as "left alone ... push to send it".
    (two / "new.md").write_text("new by two, again\n")
    synced = run("sync", "notes", str(two), "-m", "again")
    assert "M new.md" in synced.stdout and "left alone" not in synced.stdout
    assert remote.get_entry("notes", "new.md") == b"new by two, again\n"
    pushed_only = run("pull", "notes", str(one))  # a plain pull still says what it leaves
    (one / "a.md").write_text("A by one, not pushed\n")
    left = run("pull", "notes", str(one))
    assert "(left alone) a.md: changed here: push to send it" in left.stdout, pushed_only

    # A push racing another between its plan and its commit: the server's 409, exit 3.
    from ctxcloud_client import cli
    from ctxcloud_client.client import Client as RealClient

    real_commit = RealClient.commit
    raced = []

    def commit_after_someone_else(self, project, *args, **kwargs):
        if not raced:
            raced.append(real_commit(self, project, put=[CommitPut.text("c.md", "C\n")]))
        return real_commit(self, project, *args, **kwargs)

    monkeypatch.setattr(RealClient, "commit", commit_after_someone_else)
    monkeypatch.setenv("CTX_URL", server.url)
    monkeypatch.setenv("CTX_API_KEY", api_key)
    monkeypatch.setenv("CTX_NO_KEYRING", "1")
    before = head(remote).revision
    (two / "b.md").write_text("B by two\n")
    assert cli.main(["push", "notes", str(two)]) == 3
    assert "someone else pushed" in capsys.readouterr().err
    assert head(remote).revision == before + 1  # only the racer's commit
    assert remote.get_entry("notes", "b.md") == b"B by one\n"


def test_delete_is_opt_in_and_capped(remote, run, tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    for name in ("a", "b", "c", "d"):
        (source / f"{name}.md").write_text(name)
    run("push", "notes", str(source))
    run("pull", "notes", str(copy))
    (copy / "mine.txt").write_text("not the project's")
    for name in ("a", "b", "c"):
        (source / f"{name}.md").unlink()

    kept = run("push", "notes", str(source))
    assert "push --delete" in kept.stdout and len(head(remote)) == 4
    capped = run("push", "notes", str(source), "--delete", "--max-delete", "2", check=1)
    assert "more than --max-delete 2" in capped.stderr and len(head(remote)) == 4
    dry = run("push", "notes", str(source), "--delete", "--dry-run")
    assert "D a.md" in dry.stdout and len(head(remote)) == 4
    deleted = json.loads(run("push", "notes", str(source), "--delete", "--json").stdout)
    assert deleted["plan"]["delete"] == ["a.md", "b.md", "c.md"]
    assert head(remote).paths == ["d.md"]
    assert len(remote.get_revision("notes", deleted["revision"]).changes) == 3

    run("pull", "notes", str(copy))  # without --delete: the files stay
    assert (copy / "a.md").exists()
    run("pull", "notes", str(copy), "--delete", "--max-delete", "2", check=1)
    assert (copy / "a.md").exists()
    run("pull", "notes", str(copy), "--delete", "--max-delete", "3")
    assert sorted(p.name for p in copy.iterdir()) == [".ctx", "d.md", "mine.txt"]


def test_ctxignore_is_honoured_both_ways(remote, run, tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    (source / "build").mkdir(parents=True)
    (source / "build" / "out.o").write_bytes(b"o")
    (source / "debug.log").write_text("log")
    (source / "keep.md").write_text("keep")
    (source / ".ctxignore").write_text("build/\n*.log\n")
    run("push", "notes", str(source))
    assert head(remote).paths == ["keep.md"]  # nor .ctxignore, nor .ctx/
    remote.commit("notes", put=[CommitPut.text("remote.log", "from elsewhere\n")])
    copy.mkdir()
    (copy / ".ctxignore").write_text("*.log\n")
    run("pull", "notes", str(copy))
    assert sorted(p.name for p in copy.iterdir()) == [".ctx", ".ctxignore", "keep.md"]


def test_watch_waits_for_a_commit_and_prints_its_changes(remote, server, api_key, tmp_path):
    env = {
        **os.environ,
        "CTX_URL": server.url,
        "CTX_API_KEY": api_key,
        "CTX_CONFIG_DIR": str(tmp_path / "ctx-config"),
        "CTX_NO_KEYRING": "1",
    }
    args = [CTX, "watch", "notes", "--since", "0", "--wait", "20", "--once", "--json"]
    with subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.5)
            assert proc.poll() is None  # nothing after revision 0 yet: it waits
            remote.commit(
                "notes",
                put=[CommitPut.text("a.md", "A\n"), CommitPut.text("b.md", "B\n")],
            )
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err.decode()
    answer = json.loads(out)
    assert (answer["from_revision"], answer["revision"]) == (0, 1)
    assert [(c["revision"], c["path"], c["action"]) for c in answer["changes"]] == [
        (1, "a.md", "put"),
        (1, "b.md", "put"),
    ]
    assert answer["changes"][0]["sha256"] == hashlib.sha256(b"A\n").hexdigest()


class CuttingProxy:
    """A TCP proxy to the server that closes a connection once `limit` bytes went one way
    (`"down"`: answers, `"up"`: requests): a transfer broken half-way."""

    def __init__(self, upstream_port: int, direction: str, limit: int) -> None:
        self.upstream_port, self.direction, self.limit = upstream_port, direction, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            pair = (client, upstream)
            up = self.direction == "up"
            threading.Thread(
                target=self._pump, args=(client, upstream, up, pair), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, not up, pair), daemon=True
            ).start()

    def _pump(self, source, target, limited: bool, pair) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if limited and sent + len(data) > self.limit:
                    self.cuts += 1
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_an_interrupted_pull_leaves_no_partial_file(remote, server, api_key, run, tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    (source / "a.md").write_text("a\n")
    (source / "z-large.bin").write_bytes(os.urandom(4 * MiB))
    run("push", "notes", str(source))
    proxy = CuttingProxy(int(server.url.rsplit(":", 1)[1]), "down", limit=MiB)
    try:
        broken = ctx(
            f"http://127.0.0.1:{proxy.port}", api_key, tmp_path, "pull", "notes", str(copy), check=1
        )
    finally:
        proxy.close()
    assert proxy.cuts and "connection" in broken.stderr.lower()
    left = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*"))
    assert "z-large.bin" not in left and not [p for p in left if ".ctxtmp-" in p]
    assert ".ctx/state.json" not in left  # the state is recorded only at the end
    run("pull", "notes", str(copy))  # the next pull finishes the job
    assert file_hashes(copy) == file_hashes(source)


def test_an_interrupted_push_changes_nothing_on_the_server(remote, server, api_key, run, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.md").write_text("a\n")
    (source / "large.bin").write_bytes(os.urandom(4 * MiB))
    proxy = CuttingProxy(int(server.url.rsplit(":", 1)[1]), "up", limit=MiB)
    try:
        broken = ctx(
            f"http://127.0.0.1:{proxy.port}",
            api_key,
            tmp_path,
            "push",
            "notes",
            str(source),
            check=1,
        )
    finally:
        proxy.close()
    assert proxy.cuts and "connection" in broken.stderr.lower()
    assert (head(remote).revision, len(head(remote))) == (0, 0)
    assert not (source / ".ctx" / "state.json").exists()
    run("push", "notes", str(source))
    assert len(head(remote)) == 2
