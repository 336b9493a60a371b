"""`foresplat bench NAME [ARGS...]`: runs benchmarks/NAME.py of a source checkout (benchmarks are not packaged)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[3] / "benchmarks"


def available() -> list[str]:
    """Names of the benchmark scripts found next to this source tree."""
    return sorted(p.stem for p in BENCH_DIR.glob("*.py")) if BENCH_DIR.is_dir() else []


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: foresplat bench NAME [ARGS...]\n\nbenchmarks: " + (", ".join(names) or
              f"none found (expected a source checkout with {BENCH_DIR})"))
        return 0
    if argv[0] not in names:
        print(f"foresplat bench: no benchmark {argv[0]!r} in {BENCH_DIR} (have: {', '.join(names) or 'none'})",
              file=sys.stderr)
        return 2
    script = BENCH_DIR / f"{argv[0]}.py"
    sys.argv = [str(script), *argv[1:]]
    runpy.run_path(str(script), run_name="__main__")
    return 0
