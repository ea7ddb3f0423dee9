"""Fast reads of record files for derived indexes: fields only, without validation.

Rebuilding an index reads every file of a kind; the full check (schema, digest, place)
would cost more than everything else together. An index needs only a few fields, and
the branch's files are checked where it matters: on every write, by the hooks and by
`gitgw verify`. A file these reads cannot make sense of is left out of the index.
"""

from __future__ import annotations

from typing import Any

from gitgw._yaml import YamlError, load_record

__all__ = ["fields"]


def fields(data: bytes, markdown: bool) -> tuple[dict[str, Any], str] | None:
    """A record file's top-level fields and (for markdown) its body, or None if unreadable."""
    try:
        text = data.decode("utf-8")
        body = ""
        if markdown:
            if not text.startswith("---\n"):
                return None
            end = text.find("\n---\n", 3)
            if end < 0:
                return None
            text, body = text[4 : end + 1], text[end + 5 :]
        loaded = load_record(text)
    except (UnicodeDecodeError, YamlError, ValueError):
        return None
    return loaded, body


def text_of(value: Any) -> str | None:
    """`value` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None
