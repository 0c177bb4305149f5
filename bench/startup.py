"""create_app start-up time with every built-in plugin: median (min-max) of N fresh processes.

Usage: python -m bench.startup [--runs 5]. Each run is a new interpreter, so imports count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

PROGRAM = """
import time
started = time.perf_counter()
from ctxcloud import create_app
app = create_app({"ENV": "testing", "DATA_DIR": %r})
print(time.perf_counter() - started, len(app.extensions["ctxcloud"].pm.list_name_plugin()))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    timings, plugins = [], 0
    with tempfile.TemporaryDirectory() as data_dir:
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", PROGRAM % data_dir],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            timings.append(float(out[0]) * 1000)
            plugins = int(out[1])
    print(
        json.dumps(
            {
                "plugins": plugins,
                "create_app_ms": {
                    "median": round(statistics.median(timings), 1),
                    "min": round(min(timings), 1),
                    "max": round(max(timings), 1),
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
