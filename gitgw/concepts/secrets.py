"""The secrets guard: no private key, cloud or API token, or credential enters the branch.

Detection is detect-secrets' (its plugins and its false-positive filters), run on the
text of each file. A finding names the file, the line and the detector's type, never the
value: the value is neither printed, logged nor kept.

How each file is read:

- Record files (gitgw's ``key: <JSON>`` lines, receipt batches, a note's or handoff's
  front matter) are scanned value by value, each as the line ``key: "value"``, so a
  detector sees the field name as context. Results are cached per (field, value): the
  same model name or rule name in 100,000 receipts is scanned once.
- Everything else (markdown bodies, `gitgw.yaml`, workflows, any other file) is
  scanned line by line as it is.

Scope of the high-entropy detectors: values shaped like the identifiers gitgw's records
carry (ULIDs, UUIDs, ``sha256:`` digests, 40- and 64-digit lower-case hex commit ids and
digests, times) are not reported as high-entropy strings. Every named detector (keys,
tokens, private keys) and the keyword detector (``password: "…"``) still see them.
A line carrying detect-secrets' ``pragma: allowlist secret`` comment is not reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from gitgw.errors import InvalidRecord
from gitgw.records import Parsed, kind_of

if TYPE_CHECKING:
    from detect_secrets.plugins.base import BasePlugin

__all__ = ["Finding", "SecretFound", "check_secrets", "scan", "scan_text"]

# Detectors left out: a public IP address is not a credential.
_SKIPPED_PLUGINS = frozenset({"IPPublicDetector"})
_ENTROPY_TYPES = frozenset({"Base64 High Entropy String", "Hex High Entropy String"})
_KEYWORD_TYPE = "Secret Keyword"

_IDENTIFIER = re.compile(
    r"[0-7][0-9A-HJKMNP-TV-Z]{25}"  # ULID
    r"|(?:sha256:)?[0-9a-f]{64}|[0-9a-f]{40}"  # digests, commit ids
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # UUID
    r"|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"  # a time
)
# The key of an event a workflow run was triggered by (a run's `trigger.key`): gitgw's
# identifiers joined by colons, which the keyword detector can read as `pwd…: <secret>`
# when a ULID happens to hold the letters of a keyword such as PWD (one handoff in a few
# thousand).
_ULID = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"
_EVENT_KEY = re.compile(
    rf"handoff:{_ULID}:(?:{_ULID}|created)|request:{_ULID}|commit:[0-9a-f]{{40}}"
    r"|gitea:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|schedule:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
)
# An environment variable's name (`api_key_env: OPENAI_API_KEY`) names a secret; it is none.
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?:\s+#.*)?")
_RECORD_LINE = re.compile(r"([a-z_][a-z0-9_]*): (.+)")

# A quick test that a line cannot hold anything any detector reports, so most lines of
# gitgw's records skip the detectors. Every detector needs either a run of at least 8
# token characters (keys, tokens, high-entropy strings: hex ones need 9 to pass their
# limit) or one of these words or marks (keywords, private-key headers, URLs with
# credentials, JWTs, Slack tokens). Field names and gitgw's identifiers are taken out
# before looking for a long run; the markers are looked for in the whole line.
_MARKERS = (
    "key", "pass", "pwd", "pw", "token", "secret", "contrase", "auth",
    "private", "putty", "ssh2", "://", "eyj", "xox",
)  # fmt: skip
_FIELD_NAMES = re.compile(r'^\s*[a-z_][a-z0-9_]*: |"[a-z_][a-z0-9_]*":')
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_\-.~\\]{8,}")
_IDENTIFIERS_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z])(?:" + _IDENTIFIER.pattern + r")(?![0-9A-Za-z])"
)
_VALUE_FILENAME = "record.yaml"  # values are scanned as YAML lines: `key: "value"`
_LINE_LIMIT = 4096  # longer lines are scanned in pieces of this size


@dataclass(frozen=True)
class Finding:
    """Something that looks like a secret: where it is and what kind, never its value."""

    path: str
    line: int
    kind: str  # the detect-secrets type, e.g. "AWS Access Key" or "Private Key"
    field: str | None = None  # the record field holding it, when the file is a record

    def describe(self) -> str:
        """``line 4 (field note): possible secret (Private Key)``."""
        where = f"line {self.line}" + (f" (field {self.field})" if self.field else "")
        return f"{where}: possible secret ({self.kind})"


class SecretFound(InvalidRecord):
    """A file holds something that looks like a secret; the findings say where."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        described = "; ".join(f.describe() for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        super().__init__(
            findings[0].path,
            f"{described}{more}; the value is not shown (found by detect-secrets)",
            "secrets never belong on the state branch: keep them in a vault or the "
            "environment and refer to them by name",
        )
        self.findings = list(findings)


def check_secrets(path: str, data: bytes, parsed: Parsed | None = None) -> None:
    """Raise `SecretFound` if `data` (the file at `path`) holds anything like a secret."""
    findings = scan(path, data, parsed)
    if findings:
        raise SecretFound(findings)


def scan(path: str, data: bytes, parsed: Parsed | None = None) -> list[Finding]:
    """Everything in one file that looks like a secret, in line order."""
    text = data.decode("utf-8", errors="replace")
    form = parsed.kind.form if parsed is not None else _form_of(path)
    lines = text.splitlines()
    if form in ("record", "jsonl"):
        return list(_scan_structured(path, lines, 0, jsonl=form == "jsonl"))
    if form == "markdown" and text.startswith("---\n"):
        end = text.find("\n---\n", 3)
        if end >= 0:
            front = text[4 : end + 1].splitlines()
            findings = list(_scan_structured(path, front, 1, jsonl=False))
            body_start = len(front) + 2
            findings += scan_text(path, "\n".join(lines[body_start:]), body_start)
            return findings
    return scan_text(path, text)


def scan_text(path: str, text: str, offset: int = 0) -> list[Finding]:
    """Findings in free text, line by line (`offset` lines come before it in the file)."""
    findings = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not _may_hold_secret(line):
            continue  # most prose: no detector could report anything on this line
        previous = lines[number - 2] if number > 1 else ""
        for kind in _scan_line(_filename_for(path), line, previous):
            findings.append(Finding(path, offset + number, kind))
    return findings


def _form_of(path: str) -> str:
    found = kind_of(path)
    return found[0].form if found is not None else "opaque"


def _may_hold_secret(line: str) -> bool:
    lowered = line.lower()
    if any(marker in lowered for marker in _MARKERS):
        return True
    rest = _IDENTIFIERS_IN_TEXT.sub(" ", _FIELD_NAMES.sub(" ", line))
    return bool(_TOKEN_RUN.search(rest))


def _filename_for(path: str) -> str:
    # detect-secrets picks its keyword rules by file type; it needs only the name's suffix.
    return path.rsplit("/", 1)[-1]


def _scan_structured(path: str, lines: list[str], offset: int, jsonl: bool) -> Iterator[Finding]:
    for index, line in enumerate(lines):
        number = offset + index + 1
        leaves = _line_leaves(line, jsonl)
        if leaves is None:  # not gitgw's layout (a hand-written file): scan it as text
            previous = lines[index - 1] if index else ""
            for kind in _scan_line(_filename_for(path), line, previous):
                yield Finding(path, number, kind)
            continue
        for field, leaf in leaves:
            for kind in _scan_value(field, leaf):
                yield Finding(path, number, kind, field)


def _line_leaves(line: str, jsonl: bool) -> list[tuple[str, str]] | None:
    """The (field, string) pairs one line of a record holds; None if it is not JSON."""
    if not jsonl:
        simple = _SIMPLE_LINE.fullmatch(line)
        if simple:  # most lines: `key: "plain text"` or `key: 42`
            text = simple[2]
            return [] if text is None else [(simple[1], text)]
        match = _RECORD_LINE.fullmatch(line)
        if match is None:
            return None
        key: str | None
        text, key = match[2], match[1]
    else:
        text, key = line, None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return list(_leaves(key, value))


_SIMPLE_LINE = re.compile(r'([a-z_][a-z0-9_]*): (?:"([^"\\]*)"|-?[0-9][0-9.eE+-]*|true|false|null)')


def _leaves(key: str | None, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key or "value", value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(str(name), item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(key, item)


@lru_cache(maxsize=65536)
def _scan_value(field: str, value: str) -> tuple[str, ...]:
    if _IDENTIFIER.fullmatch(value) and not _keyword_field(field):
        return ()  # an id, digest or time: only keyword context could make it a secret
    if _EVENT_KEY.fullmatch(value):
        return ()  # ids gitgw joined, under the field `key`: no value anyone chose
    kinds: list[str] = []
    for part in value.splitlines() or [""]:
        line = f"{field}: {json.dumps(part, ensure_ascii=False)}"
        kinds.extend(k for k in _scan_line(_VALUE_FILENAME, line, "") if k not in kinds)
    return tuple(kinds)


def _keyword_field(field: str) -> bool:
    return bool(_keyword_regex().search(field))


@lru_cache(maxsize=65536)
def _scan_line(filename: str, line: str, previous: str) -> tuple[str, ...]:
    if len(line) > _LINE_LIMIT:
        pieces = [line[i : i + _LINE_LIMIT] for i in range(0, len(line), _LINE_LIMIT // 2)]
        found: list[str] = []
        for piece in pieces:
            found.extend(k for k in _scan_line(filename, piece, previous) if k not in found)
        return tuple(found)
    engine = _engine()
    return engine.scan_line(filename, line, previous)


class _Engine:
    """detect-secrets' plugins and filters, loaded once (importing them takes a while)."""

    def __init__(self) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.filters import allowlist, heuristic
        from detect_secrets.util.code_snippet import CodeSnippet

        classes = cast(
            "list[type[BasePlugin]]", list(get_mapping_from_secret_type_to_class().values())
        )
        self.plugins: list[BasePlugin] = [
            plugin() for plugin in classes if plugin.__name__ not in _SKIPPED_PLUGINS
        ]
        self.heuristic = heuristic
        self.allowlist = allowlist
        self.snippet = CodeSnippet

    def scan_line(self, filename: str, line: str, previous: str) -> tuple[str, ...]:
        kinds: list[str] = []
        context = self.snippet([previous, line], 0, 1)
        for plugin in self.plugins:
            for found in plugin.analyze_line(filename=filename, line=line, line_number=1):
                secret = found.secret_value or ""
                if found.type not in kinds and not self._ignored(
                    found.type, secret, line, filename, plugin, context
                ):
                    kinds.append(found.type)
        return tuple(kinds)

    def _ignored(
        self, kind: str, secret: str, line: str, filename: str, plugin: BasePlugin, context: Any
    ) -> bool:
        h = self.heuristic
        if (
            h.is_sequential_string(secret)
            or h.is_potential_uuid(secret)
            or h.is_likely_id_string(secret, line, plugin)
            or h.is_templated_secret(secret)
            or h.is_prefixed_with_dollar_sign(secret)
            or h.is_indirect_reference(line)
            or h.is_not_alphanumeric_string(secret)
            or self.allowlist.is_line_allowlisted(filename, line, context)
        ):
            return True
        if kind in _ENTROPY_TYPES and _IDENTIFIER.fullmatch(secret):
            return True
        return kind == _KEYWORD_TYPE and bool(_ENV_NAME.fullmatch(secret.strip()))


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


@lru_cache(maxsize=1)
def _keyword_regex() -> re.Pattern[str]:
    from detect_secrets.plugins.keyword import DENYLIST

    return re.compile("|".join(DENYLIST), re.IGNORECASE)
