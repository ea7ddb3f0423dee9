"""Reading the text a command is given: a file, or standard input for `-`."""

from __future__ import annotations

import sys
from pathlib import Path

from gitgw.errors import GitgwError

__all__ = ["read_text"]


def read_text(source: str | Path, what: str = "the text") -> str:
    """The UTF-8 text of file `source` (`-`: standard input), or a clear error that says
    which file could not be read and why."""
    name = str(source)
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise GitgwError(f"cannot read {what} from {name}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "standard input" if name == "-" else name
        raise GitgwError(
            f"{what} in {where} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})",
            "save it as UTF-8 (for example: iconv -f latin1 -t utf-8)",
        ) from None
