"""What each `ctx` command does, given its parsed arguments: each answers the JSON object it
prints with --json (or None), printing its lines for people itself otherwise."""

from __future__ import annotations

import argparse
import difflib
import getpass
import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from ctxcloud_client import sync as syncing
from ctxcloud_client.cli_errors import CommandError, UsageError
from ctxcloud_client.client import Client
from ctxcloud_client.diff import diff_manifests
from ctxcloud_client.errors import ContentMismatch
from ctxcloud_client.models import Entry, FeedChange, Manifest
from ctxcloud_client.profiles import Profile, load_profile, profiles_path, save_profile
from ctxcloud_client.progress import progress_for

MAX_COMMIT_ITEMS = syncing.MAX_COMMIT_ITEMS
# `ctx diff` fetches both versions of a changed entry up to this size, and prints at most
# this many lines of unified diff per entry.
DIFF_MAX_BYTES = 1024 * 1024
DIFF_MAX_LINES = 2000


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def open_client(args: argparse.Namespace) -> Client:
    profile = load_profile(getattr(args, "profile", None))
    return Client(profile.url, **profile.client_kwargs())


# ---- login, projects, ls, cat -----------------------------------------------------------


def _read_secret(what: str) -> str:
    value = getpass.getpass(f"{what}: ") if sys.stdin.isatty() else sys.stdin.readline()
    value = value.strip()
    if not value:
        raise UsageError(f"No {what} on stdin.")
    return value


def login(args: argparse.Namespace) -> dict[str, Any] | None:
    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must be http(s)://host[:port], not {args.url!r}")
    name = args.profile or "default"
    if args.client_id:
        profile = Profile(
            name, url, client_id=args.client_id, client_secret=_read_secret("client secret")
        )
    else:
        profile = Profile(name, url, api_key=_read_secret("API key"))
    with Client(profile.url, **profile.client_kwargs()) as client:
        me = client.whoami()
    where = save_profile(profile)
    tenant = (me.get("tenant") or {}).get("slug", "?")
    stored = "the system keyring" if where == "keyring" else str(profiles_path())
    if not args.json:
        say(f"Logged in to {url} as {me.get('type')} {me.get('id')} of tenant {tenant}.")
        say(f"Profile {name!r} saved; its secret is in {stored}.")
        return None
    return {
        "profile": name,
        "url": url,
        "actor": {"type": me.get("type"), "id": me.get("id"), "tenant": tenant},
        "permissions": me.get("permissions", []),
        "secret_stored_in": where,
    }


def projects(args: argparse.Namespace) -> dict[str, Any] | None:
    with open_client(args) as client:
        found = list(client.list_projects())
    rows = [{"id": p.id, "slug": p.slug, "name": p.name, "revision": p.revision} for p in found]
    if args.json:
        return {"projects": rows}
    for row in rows:
        say(f"{row['slug']:<24} {row['id']:<26} r{row['revision']:<6} {row['name']}")
    return None


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "size": entry.size,
        "sha256": entry.sha256,
        "content_type": entry.content_type,
        "revision": entry.revision,
    }


def _manifest(client: Client, project: str, revision: int | None) -> Manifest:
    manifest = client.manifest(project, revision=revision)
    assert isinstance(manifest, Manifest)
    return manifest


def ls(args: argparse.Namespace) -> dict[str, Any] | None:
    with open_client(args) as client:
        manifest = _manifest(client, args.project, args.revision)
    if args.json:
        return {
            "project_id": manifest.project_id,
            "revision": manifest.revision,
            "entries": [_entry_json(e) for e in manifest.entries],
            "total_size": manifest.total_size,
        }
    for entry in manifest.entries:
        say(f"{entry.size:>12}  r{entry.revision:<6} {entry.path}")
    return None


def split_revision(spec: str) -> tuple[str, int | None]:
    """`PATH@N` into the path and N; a path with no `@<digits>` ending is taken whole."""
    path, at, revision = spec.rpartition("@")
    if at and path and revision.isdigit():
        return path, int(revision)
    return spec, None


def cat(args: argparse.Namespace) -> None:
    path, revision = split_revision(args.path)
    out = sys.stdout.buffer
    digest = hashlib.sha256()
    with open_client(args) as client, client.stream_entry(args.project, path, revision) as body:
        for chunk in body:
            out.write(chunk)
            digest.update(chunk)
        out.flush()
    if body.entry.sha256 and digest.hexdigest() != body.entry.sha256.lower():
        raise ContentMismatch(f"{path}: the bytes written do not match the entry's SHA-256.")
    return None


# ---- push, pull, sync -------------------------------------------------------------------

MARKS = {"add": "A", "change": "M", "delete": "D"}


def _print_plan(plan: syncing.Plan, acted_on_next: frozenset[str] = frozenset()) -> None:
    """The plan's actions, what it leaves alone (except paths the next step acts on: a sync's
    push sends what its pull leaves alone as changed here) and its conflicts."""
    for action in plan.actions:
        say(f"{MARKS[action.kind]} {action.path}")
    for note in plan.skipped:
        if note.path not in acted_on_next:
            say(f"  (left alone) {note.path}: {note.reason}")
    for note in plan.conflicts:
        print(f"ctx: conflict: {note.path}: {note.reason}", file=sys.stderr)


def _summary(plan: syncing.Plan) -> str:
    counts = [
        f"{len(plan.of_kind(kind))} {word}"
        for kind, word in (("add", "added"), ("change", "changed"), ("delete", "deleted"))
        if plan.of_kind(kind)
    ]
    return ", ".join(counts) or "no changes"


def _folder(args: argparse.Namespace) -> Path:
    root = Path(args.dir)
    if args.command == "pull" and not root.exists():
        root.mkdir(parents=True)
    if not root.is_dir():
        raise CommandError(f"{root}: not a folder.")
    return root.resolve()


def _plan(sides: syncing.Sides, direction: str, args: argparse.Namespace) -> syncing.Plan:
    return syncing.plan_for(sides, direction, delete=args.delete, force=args.force)


def _run_push(
    client: Client, args: argparse.Namespace, sides: syncing.Sides, plan: syncing.Plan
) -> dict[str, Any]:
    if not args.json:
        _print_plan(plan)
    syncing.check_conflicts(plan)
    syncing.check_deletes(plan, args.max_delete)
    syncing.commit_batches(plan, args.split)  # refuses a push too big for one commit now
    result: dict[str, Any] = {"plan": plan.to_json(), "revisions": [], "dry_run": args.dry_run}
    if args.dry_run:
        result["revision"] = plan.remote_revision
        if not args.json:
            say(f"dry run: would push {_summary(plan)}; nothing was sent.")
        return result
    with progress_for(args.json) as progress:
        revisions = syncing.apply_push(
            client,
            args.project,
            sides,
            plan,
            message=args.message,
            split=args.split,
            progress=progress,
        )
    result["revisions"] = [r.revision for r in revisions]
    result["revision"] = revisions[-1].revision if revisions else plan.remote_revision
    if not args.json:
        if revisions:
            numbers = ", ".join(str(r.revision) for r in revisions)
            say(f"pushed {_summary(plan)} as revision {numbers}")
        else:
            say(f"nothing to push; the project is at revision {plan.remote_revision}")
    return result


def _run_pull(
    client: Client,
    args: argparse.Namespace,
    sides: syncing.Sides,
    plan: syncing.Plan,
    pushed_next: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`pushed_next`: in a sync, what its push will send (not "left alone" here)."""
    if not args.json:
        _print_plan(plan, pushed_next)
    syncing.check_conflicts(plan)
    syncing.check_deletes(plan, args.max_delete)
    result: dict[str, Any] = {
        "plan": plan.to_json(),
        "revision": plan.remote_revision,
        "dry_run": args.dry_run,
    }
    if args.dry_run:
        if not args.json:
            say(f"dry run: would pull {_summary(plan)}; nothing was written.")
        return result
    with progress_for(args.json) as progress:
        syncing.apply_pull(client, args.project, sides, plan, progress)
    if not args.json:
        if plan.actions:
            say(f"pulled {_summary(plan)} at revision {plan.remote_revision}")
        else:
            say(f"up to date with revision {plan.remote_revision}")
    return result


def push(args: argparse.Namespace) -> dict[str, Any] | None:
    root = _folder(args)
    with open_client(args) as client:
        sides = syncing.read_sides(client, args.project, root)
        result = _run_push(client, args, sides, _plan(sides, "push", args))
    return {"project": args.project, "dir": str(root), **result} if args.json else None


def pull(args: argparse.Namespace) -> dict[str, Any] | None:
    root = _folder(args)
    with open_client(args) as client:
        sides = syncing.read_sides(client, args.project, root, revision=args.revision)
        result = _run_pull(client, args, sides, _plan(sides, "pull", args))
    return {"project": args.project, "dir": str(root), **result} if args.json else None


def sync(args: argparse.Namespace) -> dict[str, Any] | None:
    """Pull, then push what the folder changed, from the same manifest: the push's commit is
    made against the revision just pulled, so anything pushed meanwhile is a 409 (exit 3)."""
    root = _folder(args)
    with open_client(args) as client:
        sides = syncing.read_sides(client, args.project, root)
        pull_plan = _plan(sides, "pull", args)
        after = syncing.after_pull(sides, pull_plan)
        try:
            push_plan: syncing.Plan | None = _plan(after, "push", args)
        except CommandError:
            push_plan = None  # planned again after the pull, which then says why
        sent = (
            frozenset(a.path for a in push_plan.actions) if push_plan is not None else frozenset()
        )
        pulled = _run_pull(client, args, sides, pull_plan, sent)
        if push_plan is None:
            push_plan = _plan(after, "push", args)
        pushed = _run_push(client, args, after, push_plan)
    if args.json:
        return {"project": args.project, "dir": str(root), "pull": pulled, "push": pushed}
    return None


# ---- log, diff, mcp ---------------------------------------------------------------------


def log(args: argparse.Namespace) -> dict[str, Any] | None:
    rows = []
    with open_client(args) as client:
        for revision in client.list_revisions(args.project):
            if args.limit is not None and len(rows) >= args.limit:
                break
            rows.append(
                {
                    "revision": revision.revision,
                    "created_at": revision.created_at.isoformat() if revision.created_at else None,
                    "actor": revision.actor,
                    "message": revision.message,
                    "changes": [{"path": c.path, "action": c.action} for c in revision.changes],
                }
            )
    if args.json:
        return {"project": args.project, "revisions": rows}
    for row in rows:
        when = (row["created_at"] or "")[:19].replace("T", " ")
        message = row["message"] or "(no message)"
        count = len(row["changes"])
        say(f"r{row['revision']:<5} {when}  {row['actor']}  {message}  [{count} changed]")
    return None


def _text_of(client: Client, project: str, entry: Entry, revision: int) -> str | None:
    if entry.size > DIFF_MAX_BYTES:
        return None
    try:
        return client.get_entry(project, entry.path, revision=revision).decode("utf-8")
    except UnicodeDecodeError:
        return None


def diff(args: argparse.Namespace) -> dict[str, Any] | None:
    changed = []
    with open_client(args) as client:
        old = _manifest(client, args.project, args.rev1)
        new = _manifest(client, args.project, args.rev2)
        difference = diff_manifests(old, new)
        for path in difference.changed:
            before, after = old.get(path), new.get(path)
            assert before is not None and after is not None
            item: dict[str, Any] = {
                "path": path,
                "from_sha256": before.sha256,
                "to_sha256": after.sha256,
            }
            old_text = _text_of(client, args.project, before, old.revision)
            new_text = _text_of(client, args.project, after, new.revision)
            if old_text is not None and new_text is not None:
                lines = list(
                    difflib.unified_diff(
                        old_text.splitlines(keepends=True),
                        new_text.splitlines(keepends=True),
                        f"a/{path}@{old.revision}",
                        f"b/{path}@{new.revision}",
                    )
                )
                item["diff"] = "".join(
                    line if line.endswith("\n") else line + "\n" for line in lines[:DIFF_MAX_LINES]
                )
                item["diff_truncated"] = len(lines) > DIFF_MAX_LINES
            changed.append(item)
    if args.json:
        return {
            "project": args.project,
            "from": old.revision,
            "to": new.revision,
            "added": list(difference.added),
            "removed": list(difference.removed),
            "changed": changed,
        }
    for path in difference.added:
        say(f"A {path}")
    for path in difference.removed:
        say(f"D {path}")
    for item in changed:
        say(f"M {item['path']}")
    for item in changed:
        if "diff" in item:
            sys.stdout.write(item["diff"])
            if item["diff_truncated"]:
                say(f"... (diff of {item['path']} cut at {DIFF_MAX_LINES} lines)")
        else:
            say(f"Binary or large entry {item['path']} differs")
    sys.stdout.flush()
    return None


def _change_json(change: FeedChange) -> dict[str, Any]:
    item: dict[str, Any] = {"revision": change.revision, "path": change.path}
    item["action"] = change.action
    if change.action == "put":
        item.update(size=change.size, sha256=change.sha256)
    return item


def watch(args: argparse.Namespace) -> dict[str, Any] | None:
    """Print the project's changes as they commit (the changes feed, long-polled) until
    interrupted, or, with --once, until the first revisions arrive. With --json, one object
    per line: each answer that carries changes."""
    with open_client(args) as client:
        since = args.since
        if since is None:
            since = client.get_project(args.project).revision
        if not args.json:
            say(f"Watching {args.project} after revision {since} (Ctrl-C to stop).")
        try:
            while True:
                answer = client.changes(args.project, since, wait=args.wait)
                if answer.changes:
                    if args.json:
                        line = {
                            "project": args.project,
                            "from_revision": answer.from_revision,
                            "revision": answer.revision,
                            "changes": [_change_json(c) for c in answer.changes],
                        }
                        print(json.dumps(line), flush=True)
                    else:
                        for change in answer.changes:
                            what = "D" if change.action == "delete" else "P"
                            size = f"  ({change.size} bytes)" if change.size is not None else ""
                            say(f"r{change.revision:<5} {what} {change.path}{size}")
                    if args.once:
                        return None
                since = answer.revision
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the end of watching, not an error
            return None


def mcp(args: argparse.Namespace) -> None:
    try:
        server = importlib.import_module("ctxcloud_client.mcp_server")
    except ImportError as exc:
        raise CommandError(
            "`ctx mcp` needs the MCP extra: pip install 'ctxcloud-client[mcp]' "
            f"({exc.__class__.__name__}: {exc})",
            code="mcp_unavailable",
        ) from exc
    with open_client(args) as client:
        server.serve_stdio(client, args.project)
    return None
