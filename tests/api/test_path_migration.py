"""Upgrading a database whose entry paths were stored in other spellings than NFC.

The API reads and writes paths in NFC from context.0003_nfc_paths on; the migration renames
what was stored before (entry versions, head entries, revision change lists), joins spellings
of one path that were never live at once, and sets apart, under a visible
`(Unicode conflict)` name, a spelling that was live beside another, so that no content
disappears (docs/context.md, "Paths stored before NFC"). Rows are inserted in the
pre-migration shape on SQLite and PostgreSQL; the last tests go through the API.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from contextlib import ExitStack

import pytest

from ctxcloud.cli import all_migrations
from ctxcloud.db import open_database
from ctxcloud.migrations import upgrade
from ctxcloud.plugins.context.migrations import MIGRATIONS as CONTEXT
from ctxcloud.tenancy.migrations import MIGRATIONS as TENANTS
from tests.stack import postgres_database
from tests.support.context import context_url, create_project, entry_url, put_entry
from tests.support.factories import bearer, make_api_key

NFC_MIGRATION = "context.0003_nfc_paths"
# Every migration before the NFC one (and none that depends on it).
BEFORE = [
    m for m in TENANTS + CONTEXT if not (m.id.startswith("context.") and m.id >= NFC_MIGRATION)
]
NFC = unicodedata.normalize("NFC", "café/résumé.md")
NFD = unicodedata.normalize("NFD", "café/résumé.md")
CONFLICT = unicodedata.normalize("NFC", "café/résumé (Unicode conflict).md")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        else:
            url = stack.enter_context(postgres_database())
        database = open_database({"DATABASE_URL": url, "DATA_DIR": str(tmp_path)})
        upgrade(database, BEFORE)
        yield database
        database.close()


class Project:
    """One project's rows, written as the service wrote them before the migration."""

    def __init__(self, db, project_id: str):
        self.db, self.id, self.revision, self.objects = db, project_id, 0, 0
        self.sql(
            "INSERT INTO project (id, tenant_id, slug, name, description, metadata, revision, "
            "history_starts_at, created_at, updated_at) VALUES (%s, 'tnt_a', %s, %s, '', '{}', "
            "0, 0, '2026-01-01', '2026-01-01')",
            (project_id, project_id, project_id),
        )

    def sql(self, text: str, params: tuple = ()):
        return self.db.execute_sql(text.replace("%s", self.db.param), params)

    def revision_of(self, *changes: tuple[str, str]) -> int:
        """One revision putting or deleting paths: ("put"|"delete", path)."""
        self.revision += 1
        for action, path in changes:
            key = None
            if action == "put":
                self.objects += 1
                key = f"o/{self.id}/{self.objects}"
            self.sql(
                "INSERT INTO context_entry_version (project_id, path, revision, deleted, "
                "object_key, size, content_type, metadata, created_at) "
                "VALUES (%s, %s, %s, %s, %s, 1, 'text/plain', '{}', '2026-01-01')",
                (self.id, path, self.revision, action == "delete", key),
            )
            self.sql(
                "DELETE FROM context_entry WHERE project_id = %s AND path = %s", (self.id, path)
            )
            if action == "put":
                self.sql(
                    "INSERT INTO context_entry (project_id, path, version_id) SELECT project_id, "
                    "path, id FROM context_entry_version WHERE project_id = %s AND path = %s "
                    "AND revision = %s",
                    (self.id, path, self.revision),
                )
        changes_json = json.dumps(
            [{"path": path, "action": action} for action, path in changes], ensure_ascii=False
        )
        self.sql(
            "INSERT INTO context_revision (project_id, number, created_at, actor, message, "
            "changes) VALUES (%s, %s, '2026-01-01', 'user:u', '', %s)",
            (self.id, self.revision, changes_json),
        )
        self.sql("UPDATE project SET revision = %s WHERE id = %s", (self.revision, self.id))
        return self.revision

    def versions(self) -> list[tuple[str, int, bool, str | None]]:
        """(path, revision, deleted, object key) of every version, by path and revision."""
        rows = self.sql(
            "SELECT path, revision, deleted, object_key FROM context_entry_version "
            "WHERE project_id = %s",
            (self.id,),
        )
        return sorted((path, revision, bool(deleted), key) for path, revision, deleted, key in rows)

    def head(self) -> dict[str, str]:
        """Each live path and the object its head version holds."""
        rows = self.sql(
            "SELECT e.path, v.object_key FROM context_entry e JOIN context_entry_version v "
            "ON v.id = e.version_id WHERE e.project_id = %s",
            (self.id,),
        )
        return dict(rows)

    def changes(self) -> dict[int, list]:
        rows = self.sql(
            "SELECT number, changes FROM context_revision WHERE project_id = %s", (self.id,)
        )
        return {number: json.loads(changes) for number, changes in rows}


def migrate(db) -> list[str]:
    return upgrade(db, TENANTS + CONTEXT)


def test_a_path_stored_in_nfd_is_renamed_everywhere(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("put", NFD), ("put", "plain.md"))
    other = Project(db, "prj_b")  # the same spelling in another project is its own path
    other.revision_of(("put", NFD))
    assert migrate(db)[0] == NFC_MIGRATION
    assert project.versions() == [
        (NFC, 1, False, "o/prj_a/1"),
        (NFC, 2, False, "o/prj_a/2"),
        ("plain.md", 2, False, "o/prj_a/3"),
    ]
    assert project.head() == {NFC: "o/prj_a/2", "plain.md": "o/prj_a/3"}
    assert project.changes() == {
        1: [{"path": NFC, "action": "put"}],
        2: [{"path": NFC, "action": "put"}, {"path": "plain.md", "action": "put"}],
    }
    assert other.head() == {NFC: "o/prj_b/1"}


def test_a_spelling_left_only_in_the_revision_log_is_renamed_there(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("put", "x.md"))
    project.sql("DELETE FROM context_entry WHERE project_id = 'prj_a' AND path <> 'x.md'")
    project.sql("DELETE FROM context_entry_version WHERE path <> 'x.md'")  # as pruning leaves it
    migrate(db)
    assert project.changes()[1] == [{"path": NFC, "action": "put"}]


def test_spellings_never_live_at_once_are_joined_into_one_history(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("delete", NFD))
    project.revision_of(("put", NFC))
    project.revision_of(("put", "a.md"), ("delete", NFC))
    migrate(db)
    assert [v[:3] for v in project.versions() if v[0] == NFC] == [
        (NFC, 1, False),
        (NFC, 2, True),
        (NFC, 3, False),
        (NFC, 4, True),
    ]
    assert project.head() == {"a.md": "o/prj_a/3"}
    assert project.changes()[2] == [{"path": NFC, "action": "delete"}]


def test_a_rename_from_nfd_to_nfc_in_one_commit_becomes_a_write(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("put", NFC), ("delete", NFD))  # what a client's "fix the name" did
    migrate(db)
    assert project.versions() == [(NFC, 1, False, "o/prj_a/1"), (NFC, 2, False, "o/prj_a/2")]
    assert project.head() == {NFC: "o/prj_a/2"}
    assert project.changes()[2] == [{"path": NFC, "action": "put"}]


def test_spellings_live_at_once_keep_both_contents(db, caplog):
    """The one written last takes the path; the other is set apart, its history with it."""
    project = Project(db, "prj_a")
    project.revision_of(("put", NFC))
    project.revision_of(("put", NFD))  # a second client, which decomposes names, wrote later
    project.revision_of(("put", "notes.md"))
    with caplog.at_level(logging.INFO, logger="ctxcloud.migrations"):
        migrate(db)
    assert project.head() == {NFC: "o/prj_a/2", CONFLICT: "o/prj_a/1", "notes.md": "o/prj_a/3"}
    assert project.versions() == [
        (CONFLICT, 1, False, "o/prj_a/1"),
        (NFC, 2, False, "o/prj_a/2"),
        ("notes.md", 3, False, "o/prj_a/3"),
    ]
    assert project.changes()[1] == [{"path": CONFLICT, "action": "put"}]
    assert project.changes()[2] == [{"path": NFC, "action": "put"}]

    messages = [record.getMessage() for record in caplog.records]
    assert any("1 set apart" in message for message in messages), messages
    assert any("prj_a" in message for message in messages if "conflict" in message)
    assert not any("café" in message or "résumé" in message for message in messages)


def test_the_conflict_name_is_never_one_already_used(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("put", CONFLICT))
    project.revision_of(("put", NFC))
    migrate(db)
    second = unicodedata.normalize("NFC", "café/résumé (Unicode conflict 2).md")
    assert project.head() == {NFC: "o/prj_a/3", CONFLICT: "o/prj_a/2", second: "o/prj_a/1"}


def test_a_dead_spelling_that_overlapped_is_set_apart_without_showing_at_the_head(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFD))
    project.revision_of(("put", NFC))
    project.revision_of(("delete", NFD))
    migrate(db)
    assert project.head() == {NFC: "o/prj_a/2"}
    assert [v[:3] for v in project.versions()] == [
        (CONFLICT, 1, False),
        (CONFLICT, 3, True),
        (NFC, 2, False),
    ]


def test_nothing_changes_where_every_path_is_nfc(db):
    project = Project(db, "prj_a")
    project.revision_of(("put", NFC), ("put", "b.md"))
    project.revision_of(("delete", "b.md"))
    before = (project.versions(), project.head(), project.changes())
    migrate(db)
    assert (project.versions(), project.head(), project.changes()) == before


# Through the API ----------------------------------------------------------------------------


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


def rerun_the_migration(app) -> None:
    """Write rows as before the migration, then upgrade as `ctxcloud db upgrade` does."""
    database = app.extensions["ctxcloud"].database
    with app.app_context():
        database.execute_sql(
            "DELETE FROM ctxcloud_schema_migration WHERE id = %s".replace("%s", database.param),
            (NFC_MIGRATION,),
        )
        assert upgrade(database, all_migrations()) == [NFC_MIGRATION]


def respell(app, old: str, new: str) -> None:
    """Store `old`'s rows under `new`, as a client sending `new` did before NFC."""
    database = app.extensions["ctxcloud"].database
    with app.app_context():
        for table in ("context_entry_version", "context_entry"):
            database.execute_sql(
                f"UPDATE {table} SET path = %s WHERE path = %s".replace("%s", database.param),
                (new, old),
            )
        rows = database.execute_sql("SELECT id, changes FROM context_revision").fetchall()
        for row_id, changes in rows:
            database.execute_sql(
                "UPDATE context_revision SET changes = %s WHERE id = %s".replace(
                    "%s", database.param
                ),
                (changes.replace(f'"{old}"', json.dumps(new, ensure_ascii=False)), row_id),
            )


def test_after_the_upgrade_both_spellings_read_the_entry(app, client, auth):
    create_project(client, auth, name="P", slug="p")
    put_entry(client, auth, "p", NFC, b"one", expect=201)
    put_entry(client, auth, "p", NFC, b"two", expect=200)
    respell(app, NFC, NFD)
    rerun_the_migration(app)
    for spelling in (NFC, NFD):
        assert client.get(entry_url("p", spelling), headers=auth).data == b"two"
        old = client.get(entry_url("p", spelling, revision=1), headers=auth)
        assert old.data == b"one"
    manifest = client.get(context_url("p"), headers=auth).get_json()
    assert [entry["path"] for entry in manifest["entries"]] == [NFC]
    revision = client.get(f"{context_url('p')}/revisions/2", headers=auth).get_json()
    assert revision["changes"] == [{"path": NFC, "action": "put"}]


def test_after_the_upgrade_a_clash_shows_both_contents(app, client, auth):
    create_project(client, auth, name="P", slug="p")
    put_entry(client, auth, "p", NFC, b"written on Linux", expect=201)
    put_entry(client, auth, "p", "stand-in", b"written on a Mac, later", expect=201)
    respell(app, "stand-in", NFD)
    rerun_the_migration(app)
    manifest = client.get(context_url("p"), headers=auth).get_json()
    assert {entry["path"] for entry in manifest["entries"]} == {NFC, CONFLICT}
    assert client.get(entry_url("p", NFD), headers=auth).data == b"written on a Mac, later"
    assert client.get(entry_url("p", CONFLICT), headers=auth).data == b"written on Linux"
    # The set-apart copy is an ordinary entry: the owner removes it when they have looked.
    assert client.delete(entry_url("p", CONFLICT), headers=auth).status_code == 204
