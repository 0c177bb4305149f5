"""`ctx`: the command line of ctxcloud (API.md "Client"): parsing, dispatch, exit codes.

Exit codes: 0 ok, 1 error, 2 usage, 3 conflict (the remote moved where the folder changed:
pull first). With `--json` a command prints exactly one JSON object on stdout, an error too
(`{"error": {...}}`); messages for people go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ctxcloud_client import commands
from ctxcloud_client.cli_errors import EXIT_ERROR, EXIT_OK, CommandError, UsageError
from ctxcloud_client.client import __version__
from ctxcloud_client.errors import CtxcloudError

EPILOG = "Exit codes: 0 ok, 1 error, 2 usage, 3 conflict (the remote moved; pull first)."


def _nonnegative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _wait_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 < seconds <= 60:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 60")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="profile to use (default: $CTX_PROFILE or 'default')")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object")

    parser = argparse.ArgumentParser(
        prog="ctx",
        description="Sync folders with ctxcloud projects, read their context and history.",
        epilog=EPILOG,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"ctx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *parents: argparse.ArgumentParser) -> Any:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[common, *parents],
            epilog=EPILOG,
            allow_abbrev=False,
        )

    login = command("login", "check a credential and save it as a profile", as_json)
    login.add_argument("--url", required=True, help="the server's root, http://host:8000")
    secret = login.add_mutually_exclusive_group(required=True)
    secret.add_argument("--api-key-stdin", action="store_true", help="read an API key from stdin")
    secret.add_argument("--client-id", help="an OAuth 2 client id (secret: --client-secret-stdin)")
    login.add_argument("--client-secret-stdin", action="store_true")

    command("projects", "list the projects the credential can see", as_json)

    ls = command("ls", "list a project's entries", as_json)
    ls.add_argument("project", metavar="PROJECT")
    ls.add_argument("--revision", type=_nonnegative, metavar="N")

    cat = command("cat", "write an entry's bytes to stdout (PATH@N: as at revision N)")
    cat.add_argument("project", metavar="PROJECT")
    cat.add_argument("path", metavar="PATH[@REV]")

    for name, help_text in (
        ("push", "send a folder's changes as one commit"),
        ("pull", "write a project's changes into a folder"),
        ("sync", "pull, then push"),
    ):
        verb = command(name, help_text, as_json)
        verb.add_argument("project", metavar="PROJECT")
        verb.add_argument("dir", metavar="DIR")
        verb.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        verb.add_argument(
            "--delete",
            action="store_true",
            help="also delete what vanished on the other side (else left alone)",
        )
        verb.add_argument(
            "--max-delete",
            type=_nonnegative,
            metavar="N",
            help="with --delete: refuse (exit 1, nothing done) a plan deleting more than N",
        )
        verb.add_argument(
            "--force",
            action="store_true",
            help="resolve conflicts for this side: push overwrites remote changes, "
            "pull overwrites local edits",
        )
        if name in ("push", "sync"):
            verb.add_argument("--message", "-m", help="the commit message")
            verb.add_argument(
                "--split",
                action="store_true",
                help=f"allow several commits when a push exceeds {commands.MAX_COMMIT_ITEMS} "
                "writes or deletes (each commit atomic, the whole not)",
            )
        if name == "pull":
            verb.add_argument("--revision", type=_nonnegative, metavar="N")

    log = command("log", "list a project's revisions, newest first", as_json)
    log.add_argument("project", metavar="PROJECT")
    log.add_argument("--limit", type=_nonnegative, metavar="N", help="at most N revisions")

    diff = command("diff", "what changed between two revisions", as_json)
    diff.add_argument("project", metavar="PROJECT")
    diff.add_argument("rev1", type=_nonnegative, metavar="REV1")
    diff.add_argument("rev2", type=_nonnegative, metavar="REV2")

    watch = command("watch", "print a project's changes as they commit, until Ctrl-C", as_json)
    watch.add_argument("project", metavar="PROJECT")
    watch.add_argument(
        "--since", type=_nonnegative, metavar="N", help="changes after revision N (default: head)"
    )
    watch.add_argument(
        "--wait",
        type=_wait_seconds,
        default=55.0,
        metavar="S",
        help="seconds each long-poll waits, 0 < S <= 60 (default 55)",
    )
    watch.add_argument(
        "--once", action="store_true", help="stop after the first revisions that arrive"
    )

    mcp = command("mcp", "serve a project to an MCP client on stdio (ctxcloud-client[mcp])")
    mcp.add_argument("--project", required=True, metavar="PROJECT")
    return parser


HANDLERS: dict[str, Callable[[argparse.Namespace], dict[str, Any] | None]] = {
    "login": commands.login,
    "projects": commands.projects,
    "ls": commands.ls,
    "cat": commands.cat,
    "push": commands.push,
    "pull": commands.pull,
    "sync": commands.sync,
    "log": commands.log,
    "diff": commands.diff,
    "watch": commands.watch,
    "mcp": commands.mcp,
}


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if getattr(args, "max_delete", None) is not None and not args.delete:
        parser.error("--max-delete goes with --delete")
    if args.command == "login":
        if args.client_id and not args.client_secret_stdin:
            parser.error("--client-id needs --client-secret-stdin (secrets come from stdin)")
        if args.client_secret_stdin and not args.client_id:
            parser.error("--client-secret-stdin goes with --client-id")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: temporary files are removed on the way


def report(error: BaseException, as_json: bool) -> int:
    """Say what failed (stderr; and stdout's JSON object with --json); answer the exit code."""
    payload: dict[str, Any]
    if isinstance(error, CommandError):
        exit_code = error.exit_code
        payload = {"code": error.code, "message": error.message, **error.extra}
        print(f"ctx: {error.message}", file=sys.stderr)
        if error.extra.get("request_id"):
            print(f"ctx: request id {error.extra['request_id']}", file=sys.stderr)
    elif isinstance(error, CtxcloudError):
        exit_code = EXIT_ERROR
        payload = {
            "code": error.code,
            "message": error.detail,
            "status": error.status,
            "request_id": error.request_id,
        }
        status = f"{error.status} " if error.status else ""
        print(f"ctx: {status}{error.code}: {error.detail}", file=sys.stderr)
        if error.request_id:
            print(f"ctx: request id {error.request_id}", file=sys.stderr)
    elif isinstance(error, KeyboardInterrupt):
        exit_code = EXIT_ERROR
        payload = {"code": "interrupted", "message": "interrupted"}
        print("ctx: interrupted; nothing half-written was left behind", file=sys.stderr)
    else:  # OSError: a file that cannot be read or written
        exit_code = EXIT_ERROR
        payload = {"code": "os_error", "message": str(error)}
        print(f"ctx: {error}", file=sys.stderr)
    if as_json:
        payload = {key: value for key, value in payload.items() if value is not None}
        print(json.dumps({"error": payload, "exit_code": exit_code}))
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """The `ctx` console script; answers the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error exits 2 here
    _check_usage(parser, args)
    as_json = bool(getattr(args, "json", False))
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = HANDLERS[args.command](args)
        if as_json and result is not None:
            print(json.dumps(result, sort_keys=False, default=str))
        return EXIT_OK
    except UsageError as error:
        parser.print_usage(sys.stderr)
        return report(error, as_json)
    except (CommandError, CtxcloudError, KeyboardInterrupt, OSError) as error:
        return report(error, as_json)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
