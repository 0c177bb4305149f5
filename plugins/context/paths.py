"""Entry paths: relative, '/'-separated UTF-8 in NFC, at most 1024 bytes, nothing that could
escape the project or pass for another path. The whole rule, with reasons: docs/context.md.

A path is normalised to NFC wherever it enters, so the composed and decomposed spellings of
`café` name one entry. Refused (400 invalid_path, the detail naming the character and where):

- anywhere: control characters (C0, DEL, C1), line and paragraph separators, every bidirectional
  control (they reorder what a reader sees), noncharacters, U+FEFF, and the invisible format
  characters that have no use inside a name (table `REFUSED`);
- a segment that begins with a combining mark, joiner or selector (it would attach to the '/'
  before it), or that holds nothing visible (whitespace, marks, joiners, fillers, blank braille).

Joiners and selectors that shape real text (ZWJ/ZWNJ, variation selectors, emoji tags, the
combining grapheme joiner, Mongolian selectors) stay allowed after a visible character.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable

from werkzeug.routing import BaseConverter

from ctxcloud.plugins.context.problems import InvalidPath

MAX_PATH_BYTES = 1024
# NFC makes a string at most ~3 times shorter in UTF-8: a longer input can never fit.
_MAX_INPUT_BYTES = 4 * MAX_PATH_BYTES

CONTROL = "a control character"
LINE_BREAK = "a line or paragraph separator"
BIDI = "a bidirectional control, which can make a path display as another"
NONCHARACTER = "a noncharacter"
BOM = "a byte order mark (an invisible character)"
INVISIBLE = "an invisible format character, which can make a path look like another"

# Code points refused anywhere in a path: (first, last, what they are), sorted.
_REFUSED_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0000, 0x001F, CONTROL),
    (0x007F, 0x009F, CONTROL),
    (0x00AD, 0x00AD, INVISIBLE),  # soft hyphen
    (0x061C, 0x061C, BIDI),  # Arabic letter mark
    (0x17B4, 0x17B5, INVISIBLE),  # Khmer inherent vowels (deprecated)
    (0x200B, 0x200B, INVISIBLE),  # zero width space
    (0x200E, 0x200F, BIDI),  # left-to-right and right-to-left marks
    (0x2028, 0x2029, LINE_BREAK),
    (0x202A, 0x202E, BIDI),  # embeddings, pop, overrides
    (0x2060, 0x2065, INVISIBLE),  # word joiner, invisible operators
    (0x2066, 0x2069, BIDI),  # isolates
    (0x206A, 0x206F, INVISIBLE),  # deprecated format characters
    (0x3164, 0x3164, INVISIBLE),  # Hangul filler
    (0xFDD0, 0xFDEF, NONCHARACTER),
    (0xFEFF, 0xFEFF, BOM),
    (0xFFA0, 0xFFA0, INVISIBLE),  # halfwidth Hangul filler
    (0xFFF0, 0xFFFB, INVISIBLE),  # reserved ignorables, interlinear annotation
    *((plane * 0x10000 + 0xFFFE, plane * 0x10000 + 0xFFFF, NONCHARACTER) for plane in range(17)),
    (0x1BCA0, 0x1BCA3, INVISIBLE),  # shorthand format controls
    (0x1D173, 0x1D17A, INVISIBLE),  # musical format controls
    (0xE0000, 0xE001F, INVISIBLE),  # language tag and reserved
    (0xE0080, 0xE00FF, INVISIBLE),  # reserved
    (0xE01F0, 0xE0FFF, INVISIBLE),  # reserved
)
REFUSED = tuple(sorted(_REFUSED_RANGES))
_REFUSED_STARTS = [first for first, _, _ in REFUSED]

# Invisible characters that shape real text: allowed after a visible character of their segment
# (ZWJ in emoji and Indic conjuncts, VS16 in emoji, tags in subdivision flags...).
SHAPING = (
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers (in conjoining jamo)
    (0x180B, 0x180F),  # Mongolian free variation selectors and vowel separator
    (0x200C, 0x200D),  # zero width non-joiner and joiner
    (0xFE00, 0xFE0F),  # variation selectors
    (0xE0020, 0xE007F),  # tag characters (emoji tag sequences)
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_BLANK = frozenset("\u2800")  # braille pattern blank: a visible cell with no dots
_UNNAMED = {"Cc": "control", "Co": "private-use", "Cs": "surrogate"}


# What paths were refused before NFC and the character rules: C0 controls and DEL.
_ALWAYS_REFUSED = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePath(InvalidPath):
    """A path only the character rules refuse; `path` is its NFC form.

    An entry written under such a path before those rules existed keeps it: it can be read
    and deleted (see `existing_path`), never written again.
    """

    def __init__(self, detail: str, path: str) -> None:
        super().__init__(detail)
        self.path = path


def character_label(char: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`; Unicode's label for a character without a name."""
    code = ord(char)
    name = unicodedata.name(char, "")
    if not name:
        category = unicodedata.category(char)
        kind = _UNNAMED.get(category, "reserved")
        if _refusal(code) == NONCHARACTER:
            kind = "noncharacter"
        name = f"<{kind}-{code:04X}>"
    return f"U+{code:04X} {name}"


def quoted(path: str) -> str:
    """The path in quotes for a message, every character the rule refuses escaped."""
    return "".join(_escaped(char) if _refusal(ord(char)) else char for char in repr(path))


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _refusal(code: int) -> str | None:
    index = bisect.bisect_right(_REFUSED_STARTS, code) - 1
    if index >= 0 and code <= REFUSED[index][1]:
        return REFUSED[index][2]
    return None


def _in(ranges: tuple[tuple[int, int], ...], code: int) -> bool:
    return any(first <= code <= last for first, last in ranges)


def needs_base(char: str) -> bool:
    """A combining mark, joiner or selector: it attaches to the character before it."""
    return unicodedata.category(char).startswith("M") or (
        _in(SHAPING, ord(char)) and not 0x115F <= ord(char) <= 0x1160
    )


def is_invisible(char: str) -> bool:
    """Shows nothing on its own: whitespace, a mark, a joiner or selector, a filler, a blank."""
    return (
        char.isspace()
        or unicodedata.category(char).startswith("M")
        or _in(SHAPING, ord(char))
        or char in _BLANK
    )


def _refused_character(path: str) -> str | None:
    """Why the first refused character of `path` is refused, naming it and where it is."""
    segment = 1
    for position, char in enumerate(path, start=1):
        if char == "/":
            segment += 1
            continue
        if char.isascii() and char.isprintable():
            continue
        reason = _refusal(ord(char))
        if reason is not None:
            return (
                f"The entry path has {character_label(char)} at character {position} "
                f"(segment {segment}): {reason}."
            )
    return None


def _invisible_segment(segments: list[str], partial_last: bool) -> str | None:
    for number, segment in enumerate(segments, start=1):
        if needs_base(segment[0]):
            return (
                f"Segment {number} of the entry path begins with {character_label(segment[0])}, "
                "which needs a visible character before it in its segment."
            )
        if partial_last and number == len(segments):
            break  # a prefix's last segment may stop before its first visible character
        if all(is_invisible(char) for char in segment):
            shown = ", ".join(character_label(char) for char in dict.fromkeys(segment[:3]))
            return (
                f"Segment {number} of the entry path holds only invisible characters "
                f"({shown}{', ...' if len(set(segment)) > 3 else ''}): it would look empty."
            )
    return None


def _validate(path: str, partial_last: bool = False) -> str:
    if not path:
        raise InvalidPath("The entry path is empty.")
    if len(path.encode("utf-8", "surrogatepass")) > _MAX_INPUT_BYTES:
        raise InvalidPath(f"The entry path is longer than {MAX_PATH_BYTES} bytes.")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath("The entry path is not valid UTF-8.") from None
    if path.startswith("/"):
        raise InvalidPath("The entry path must be relative (no leading '/').")
    if "\\" in path:
        raise InvalidPath("The entry path must not contain a backslash.")
    normal = unicodedata.normalize("NFC", path)
    if len(normal.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidPath(f"The entry path is longer than {MAX_PATH_BYTES} bytes (in NFC).")
    segments = normal.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidPath("The entry path has an empty, '.' or '..' segment.")
    unsafe = _refused_character(path) or _invisible_segment(segments, partial_last)
    if unsafe is not None:
        if _ALWAYS_REFUSED.search(path):
            raise InvalidPath(unsafe)  # refused from the start: no entry can have it
        raise UnsafePath(unsafe, normal)
    return normal


def validate_path(path: str) -> str:
    """The path in NFC if it is valid, else raise InvalidPath (400) saying why and where."""
    return _validate(path)


def existing_path(path: str, exists: Callable[[str], bool]) -> str:
    """validate_path for reads and deletes: a path that only the character rules refuse is
    accepted when `exists(nfc_path)` says an entry holds it (written before those rules), so
    such an entry can still be read and deleted."""
    try:
        return _validate(path)
    except UnsafePath as exc:
        if exists(exc.path):
            return exc.path
        raise


def validate_prefix(prefix: str) -> str:
    """A manifest filter in NFC: a path's beginning (it may end with '/'), same characters as
    paths; its last segment may be cut before its first visible character."""
    if prefix == "":
        return prefix
    if prefix.endswith("/"):
        return _validate(prefix[:-1]) + "/"
    return _validate(prefix, partial_last=True)


def _class_escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _path_pattern() -> str:
    """What a regular expression can say of the rule: segments of allowed characters, none
    empty, '.' or '..', joined by '/'. Not the refusals beyond the BMP (they need the `u`
    flag), NFC, the length in bytes or the segment rule. Valid ECMA-262 with no flag, `u` or
    `v`, and Python; no lookaround, for validators that have none."""
    merged: list[list[int]] = []
    for first, last, _ in REFUSED:
        if last > 0xFFFF:
            continue
        if merged and first == merged[-1][1] + 1:
            merged[-1][1] = last
        else:
            merged.append([first, last])
    excluded = "\\/\\\\" + "".join(
        _class_escape(first) + (f"-{_class_escape(last)}" if last > first else "")
        for first, last in merged
    )
    char = f"[^{excluded}]"
    not_dot = f"[^.{excluded}]"
    segment = f"(?:{not_dot}{char}*|\\.{not_dot}{char}*|\\.\\.{char}+)"
    return f"^{segment}(?:/{segment})*$"


PATH_PATTERN = _path_pattern()


class EntryPathConverter(BaseConverter):
    """The rest of the URL as an entry path, whatever it holds (even nothing, a leading '/' or
    a newline), so that every bad path reaches validate_path and is a 400 invalid_path rather
    than a 404 or a redirect from the router. Rules using it must set merge_slashes=False."""

    regex = r"[\s\S]*"
    part_isolating = False
    weight = 200
