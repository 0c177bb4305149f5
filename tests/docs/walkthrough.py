"""Reading docs/api.md as a script: its commands, the outputs it promises, and a runner.

The page's convention (stated at its top): in a ```sh block, a line starting with `$ ` is a
command, continued over the next lines until the shell would run it (a trailing `\\`, an open
quote, a `do` without `done`); the lines after it, up to the next command, are what it prints.
In those, `...` stands for any text on that line, and a line holding only `...` for any
number of lines. A ```sh server block holds the one command that starts the service.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)(.*)$")
PROMPT = "$ "
ELISION = "..."


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)
    line: int = 0  # where it starts in the page, for messages


@dataclass
class Page:
    server: list[Command]
    commands: list[Command]


def is_complete(command: str) -> bool:
    """Would bash run this as typed, or wait for more (PS2)?"""
    if command.endswith("\\"):
        return False
    result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, check=False)
    return result.returncode == 0


def parse(path: Path) -> Page:
    """Every command of every ```sh block, in order, with the output it is said to print."""
    page = Page(server=[], commands=[])
    block: list[Command] | None = None
    current: Command | None = None
    open_command = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and block is None:
            if fence.group(1) == "sh":
                block = page.server if fence.group(2).strip() == "server" else page.commands
            else:
                block = []  # another language: read past it, run nothing
            current, open_command = None, False
            continue
        if fence and block is not None:
            assert not open_command, f"{path}:{current.line}: the command never ends"
            block = None
            continue
        if block is None:
            continue
        if open_command:
            current.text += "\n" + line
            open_command = not is_complete(current.text)
        elif line.startswith(PROMPT):
            current = Command(line[len(PROMPT) :], line=number)
            block.append(current)
            open_command = not is_complete(current.text)
        elif current is not None:
            current.expected.append(line)
        elif line.strip():
            raise AssertionError(f"{path}:{number}: output before any command: {line!r}")
    return page


def output_pattern(expected: list[str]) -> re.Pattern[str]:
    """The expected lines as one pattern over the whole output (see the module docstring)."""
    parts = []
    for line in _trimmed(expected):
        if line.strip() == ELISION:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split(ELISION)) + r"\n")
    return re.compile("".join(parts))


def matches(expected: list[str], output: str) -> bool:
    text = "".join(line + "\n" for line in _trimmed(output.splitlines()))
    return output_pattern(expected).fullmatch(text) is not None


def _trimmed(lines: list[str]) -> list[str]:
    """Trailing whitespace (and CR) off each line, blank lines off the end."""
    lines = [line.rstrip() for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@dataclass
class Ran:
    command: Command
    output: str
    errors: str
    status: int


MARK = "@@ctxcloud-doc-command"
MARK_LINE = re.compile(rf"\n{MARK} (\d+) (\d+)\n")


def script(commands: list[Command]) -> str:
    """One bash script running the commands in order (shared variables), marking each end."""
    lines = []
    for index, command in enumerate(commands):
        lines += [
            "{ " + command.text,
            f'}} 2>"$DOC_ERRORS/{index}"',
            f"status=$?; printf '\\n%s %d %d\\n' {MARK} {index} $status",
            '[ "$status" -eq 0 ] || exit "$status"',
        ]
    return "\n".join(lines) + "\n"


def run(
    commands: list[Command], env: dict[str, str], cwd: Path, timeout: float, errors_dir: Path
) -> list[Ran]:
    """Run the commands with bash in `cwd`; what each printed, up to the first that failed.

    What each wrote to stderr goes to `errors_dir`, outside `cwd`: the page's commands alone
    decide what lands in the folder they run in."""
    errors_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script(commands)],
        env={**env, "DOC_ERRORS": str(errors_dir)},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    pieces = MARK_LINE.split(process.stdout)
    ran = []
    for output, index, status in zip(pieces[0::3], pieces[1::3], pieces[2::3], strict=False):
        errors = (errors_dir / index).read_text(errors="replace")
        ran.append(Ran(commands[int(index)], output, errors, int(status)))
    return ran
