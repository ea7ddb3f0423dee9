"""`python -m tests`: every check the project holds itself to, in the order CI runs them.

ruff (lint and format), mypy --strict on the package, the import-linter layer
contracts, then the test suite. Stops at nothing: every check runs, and the exit code
is non-zero if any failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

CHECKS: list[tuple[str, list[str]]] = [
    ("ruff lint", [str(BIN / "ruff"), "check", "gitgw", "tests", "benchmarks"]),
    ("ruff format", [str(BIN / "ruff"), "format", "--check", "gitgw", "tests", "benchmarks"]),
    ("mypy --strict", [str(BIN / "mypy")]),
    ("import contracts", [str(BIN / "lint-imports")]),
    ("tests", [sys.executable, "-m", "pytest", *sys.argv[1:]]),
]


def main() -> int:
    failed = []
    for name, argv in CHECKS:
        print(f"==> {name}: {' '.join(Path(a).name if a.startswith('/') else a for a in argv)}")
        started = time.perf_counter()
        code = subprocess.call(argv, cwd=ROOT)
        print(
            f"<== {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} "
            f"in {time.perf_counter() - started:.1f}s\n",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
