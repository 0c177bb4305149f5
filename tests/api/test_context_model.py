"""Property: any sequence of puts, deletes and commits matches a simple in-memory model at every
revision, through the manifest (`?revision=N`) and entry reads (`?revision=N`)."""

from __future__ import annotations

import base64
import itertools
import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support.context import context_url, create_project, entry_url, project_url, sha256
from tests.support.factories import bearer, make_api_key

# Few paths, so that writes collide; nested ones, and a file beside a directory of the same name.
PATHS = st.sampled_from(["a", "b", "a/b", "a/c", "d/e/f", "ü/ß.txt"])
# Mostly small bodies; sometimes one that ends on, or just past, a 64 KiB segment edge.
BODIES = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda size, seed: random.Random(seed).randbytes(size),
        st.sampled_from([65535, 65536, 65537]),
        st.integers(0, 2**16),
    ),
)

State = dict[str, tuple[bytes, int]]  # path -> (bytes, revision that wrote them)


class ContextMachine(RuleBasedStateMachine):
    """The service against `snapshots`: the model's state after every revision (0 = empty)."""

    serial = itertools.count(1)

    def __init__(self, client, auth: dict) -> None:
        super().__init__()
        self.client = client
        self.auth = auth
        self.slug = ""
        self.snapshots: list[State] = [{}]

    @initialize()
    def new_project(self) -> None:
        self.slug = create_project(
            self.client, self.auth, name="model", slug=f"model-{next(self.serial)}"
        )["slug"]

    @property
    def head(self) -> State:
        return self.snapshots[-1]

    def _record(self, change) -> int:
        revision = len(self.snapshots)
        state = dict(self.head)
        change(state, revision)
        self.snapshots.append(state)
        return revision

    # Changes ---------------------------------------------------------------------------------

    @rule(path=PATHS, data=BODIES)
    def put(self, path: str, data: bytes) -> None:
        existed = path in self.head
        response = self.client.put(entry_url(self.slug, path), data=data, headers=self.auth)
        assert response.status_code == (200 if existed else 201), response.get_data(as_text=True)
        revision = self._record(lambda state, rev: state.__setitem__(path, (data, rev)))
        assert response.get_json()["revision"] == revision

    @rule(path=PATHS)
    def delete(self, path: str) -> None:
        response = self.client.delete(entry_url(self.slug, path), headers=self.auth)
        if path not in self.head:
            assert response.status_code == 404
            return
        assert response.status_code == 204, response.get_data(as_text=True)
        self._record(lambda state, rev: state.pop(path))

    @rule(
        puts=st.dictionaries(PATHS, BODIES, max_size=3),
        deletes=st.sets(PATHS, max_size=2),
        with_parent=st.booleans(),
    )
    def commit(self, puts: dict[str, bytes], deletes: set[str], with_parent: bool) -> None:
        deletes = deletes - set(puts)
        body: dict = {
            "message": "model",
            "put": [
                {"path": path, "content_base64": base64.b64encode(data).decode()}
                for path, data in puts.items()
            ],
            "delete": sorted(deletes),
        }
        if with_parent:
            body["parent_revision"] = len(self.snapshots) - 1
        response = self.client.post(
            f"{context_url(self.slug)}/commits", json=body, headers=self.auth
        )
        if not puts and not deletes:
            assert response.status_code == 422
            return
        if not deletes <= set(self.head):
            assert response.status_code == 409, response.get_data(as_text=True)
            return  # all or nothing: the model does not change either
        assert response.status_code == 201, response.get_data(as_text=True)

        def apply(state: State, revision: int) -> None:
            for path, data in puts.items():
                state[path] = (data, revision)
            for path in deletes:
                del state[path]

        assert response.get_json()["revision"] == self._record(apply)

    @precondition(lambda self: len(self.snapshots) > 1)
    @rule(data=st.data())
    def stale_commit_changes_nothing(self, data) -> None:
        parent = data.draw(st.integers(0, len(self.snapshots) - 2), label="stale parent")
        response = self.client.post(
            f"{context_url(self.slug)}/commits",
            json={"parent_revision": parent, "put": [{"path": "a", "content": "stale"}]},
            headers=self.auth,
        )
        assert response.status_code == 409

    # Checks ----------------------------------------------------------------------------------

    @invariant()
    def every_revision_matches_the_model(self) -> None:
        if not self.slug:
            return
        head = len(self.snapshots) - 1
        project = self.client.get(project_url(self.slug), headers=self.auth).get_json()
        assert project["revision"] == head
        for revision, state in enumerate(self.snapshots):
            self.check_revision(revision, state)
        assert (
            self.client.get(
                context_url(self.slug, revision=head + 1), headers=self.auth
            ).status_code
            == 404
        )

    def check_revision(self, revision: int, state: State) -> None:
        response = self.client.get(context_url(self.slug, revision=revision), headers=self.auth)
        assert response.status_code == 200
        manifest = response.get_json()
        assert manifest["revision"] == revision
        assert [
            (e["path"], e["size"], e["sha256"], e["revision"]) for e in manifest["entries"]
        ] == [(path, len(data), sha256(data), rev) for path, (data, rev) in sorted(state.items())]
        assert manifest["total_size"] == sum(len(data) for data, _ in state.values())
        for path in ("a", "b", "a/b", "a/c", "d/e/f", "ü/ß.txt"):
            read = self.client.get(entry_url(self.slug, path, revision=revision), headers=self.auth)
            if path in state:
                assert read.status_code == 200
                assert read.data == state[path][0]
                assert read.headers["Entry-Revision"] == str(state[path][1])
            else:
                assert read.status_code == 404

    def teardown(self) -> None:
        if self.slug:
            self.client.delete(project_url(self.slug), headers=self.auth)


@pytest.fixture
def no_rate_limit(app_config):
    """Thousands of requests with one key: the per-credential rate limit is not under test."""
    app_config["RATE_LIMIT_ENABLED"] = False


def test_context_matches_an_in_memory_model_at_every_revision(no_rate_limit, app, client, tenant):
    auth = bearer(make_api_key(app, tenant)[1])
    run_state_machine_as_test(
        lambda: ContextMachine(client, auth),
        settings=settings(
            max_examples=25,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
