"""Where each kind of record lives on the state branch, and how its files are read and written.

This table is the single answer to "what is this path?": `verify`, the hooks, `status`
and every writer consult it. A record's path is a function of its id (and the time in
that id), so verification also proves that every file sits where its content says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from gitgw._canonical import compute_digest
from gitgw._clock import ulid_time
from gitgw._yaml import YamlError, dump_record, load_document, load_json, load_record
from gitgw.errors import InvalidRecord
from gitgw.records.base import AddOnlyRecord, Record
from gitgw.records.config import GatewayConfig
from gitgw.records.conflict import Conflict
from gitgw.records.consent import ConsentEntry
from gitgw.records.handoff import Handoff, HandoffEvent
from gitgw.records.memory import MemoryNote, MemoryTombstone
from gitgw.records.receipt import Receipt
from gitgw.records.request import Request, Response
from gitgw.records.run import Run
from gitgw.records.workflow import Workflow

__all__ = [
    "KINDS",
    "Kind",
    "Parsed",
    "jsonl_lines",
    "kind_at",
    "kind_named",
    "kind_of",
    "parse_file",
    "render",
]

Form = Literal["record", "jsonl", "markdown", "document", "opaque"]

_ULID = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"


@dataclass(frozen=True)
class Kind:
    """One kind of file on the state branch."""

    name: str
    model: type[Record] | None
    pattern: re.Pattern[str]
    form: Form
    add_only: bool
    template: str  # the path, with {placeholders} for id, y, m, d, h, handoff, name, rest
    # Where earlier versions of gitgw wrote this kind: still read and verified, never
    # written (a branch keeps every file it ever held).
    earlier: tuple[str, ...] = ()
    earlier_patterns: tuple[re.Pattern[str], ...] = ()

    def path(self, **parts: str) -> str:
        """The path of a record of this kind; a ULID `id` also fills in its time shard."""
        record_id = parts.get("id")
        if record_id is not None and "{y}" in self.template:
            moment = ulid_time(record_id)
            shard = {"y": f"{moment:%Y}", "m": f"{moment:%m}", "d": f"{moment:%d}"}
            parts = {**parts, **shard, "h": f"{moment:%H}"}
        return self.template.format(**parts)


_PLACEHOLDERS = {
    "id": _ULID,
    "handoff": _ULID,
    "y": r"\d{4}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "h": r"\d{2}",
    "name": r"[a-z0-9][a-z0-9_-]*",
    "rest": r".+",
}


def _pattern(template: str) -> re.Pattern[str]:
    # The template with each {placeholder} made a named group.
    return re.compile(
        re.sub(
            r"\\\{(\w+)\\\}",
            lambda m: f"(?P<{m[1]}>{_PLACEHOLDERS[m[1]]})",
            re.escape(template),
        )
    )


def _kind(
    name: str,
    model: type[Record] | None,
    template: str,
    form: Form,
    add_only: bool,
    earlier: tuple[str, ...] = (),
) -> Kind:
    return Kind(
        name,
        model,
        _pattern(template),
        form,
        add_only,
        template,
        earlier,
        tuple(_pattern(t) for t in earlier),
    )


KINDS: tuple[Kind, ...] = (
    _kind("config", GatewayConfig, "gitgw.yaml", "document", False),
    _kind("workflow", Workflow, "workflows/{name}.yaml", "document", False),
    _kind("memory", MemoryNote, "memory/{id}.md", "markdown", False),
    _kind("memory-tombstone", MemoryTombstone, "memory/tombstones/{id}.yaml", "record", True),
    _kind("handoff", Handoff, "handoffs/{id}/handoff.md", "markdown", True),
    _kind("handoff-event", HandoffEvent, "handoffs/{handoff}/events/{id}.yaml", "record", True),
    _kind("consent", ConsentEntry, "consent/{y}/{m}/{id}.yaml", "record", True),
    # A busy proxy hands over a batch twice a second, and every commit writes the
    # directory it adds to again: an hour's directory keeps that to thousands of entries
    # where a day's grew to a hundred thousand. Before hour shards: the day's directory.
    _kind(
        "receipt",
        Receipt,
        "receipts/{y}/{m}/{d}/{h}/{id}.jsonl",
        "jsonl",
        True,
        earlier=("receipts/{y}/{m}/{d}/{id}.jsonl",),
    ),
    _kind("run", Run, "runs/{y}/{m}/{d}/{id}.yaml", "record", True),
    _kind("request", Request, "requests/{id}.yaml", "record", True),
    _kind("response", Response, "responses/{id}.yaml", "record", True),
    _kind("conflict", Conflict, "conflicts/{id}/conflict.yaml", "record", True),
    _kind("conflict-copy", None, "conflicts/{id}/files/{rest}", "opaque", True),
    _kind("readme", None, "README.md", "opaque", False),
    # A clone of the branch may run gitgw's hooks through the pre-commit framework.
    _kind("pre-commit-config", None, ".pre-commit-config.yaml", "opaque", False),
)
_BY_NAME = {kind.name: kind for kind in KINDS}
_BY_TOP: dict[str, list[Kind]] = {}
for _k in KINDS:
    _BY_TOP.setdefault(_k.template.split("/", 1)[0], []).append(_k)


def kind_named(name: str) -> Kind:
    """The kind called `name` (e.g. ``consent``)."""
    return _BY_NAME[name]


def kind_of(path: str) -> tuple[Kind, dict[str, str]] | None:
    """The kind a path belongs to and the parts its name carries, or None if unknown."""
    for kind in _BY_TOP.get(path.split("/", 1)[0], ()):
        match = kind.pattern.fullmatch(path)
        if match is None:
            for earlier in kind.earlier_patterns:
                match = earlier.fullmatch(path)
                if match is not None:
                    break
        if match:
            return kind, {k: v for k, v in match.groupdict().items() if v is not None}
    return None


def kind_at(path: str) -> Kind | None:
    """The kind `kind_of` finds for `path`, without the parts its name carries (`verify`
    asks it of every file in history)."""
    for kind in _BY_TOP.get(path.split("/", 1)[0], ()):
        if kind.pattern.fullmatch(path) is not None:
            return kind
        for earlier in kind.earlier_patterns:
            if earlier.fullmatch(path) is not None:
                return kind
    return None


@dataclass(frozen=True)
class Parsed:
    """A file's kind, its validated records (one, or one per line), and its body."""

    kind: Kind
    records: tuple[Record, ...]
    body: str | None = None

    def batch_ids(self) -> list[str]:
        """The ids of a batch's records (JSON lines, whose ids are not their file's
        name); none for a file of another form."""
        if self.kind.form != "jsonl":
            return []
        return [str(getattr(record, "id", "")) for record in self.records]


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _validate(
    path: str,
    kind: Kind,
    data: dict[str, Any],
    extra: dict[str, Any],
    parts: dict[str, str],
    where: str = "",
    place: bool = True,
) -> Record:
    assert kind.model is not None
    try:
        record = kind.model.model_validate(data)
    except ValidationError as exc:
        reason = f"{where}does not match the {kind.name} schema: {_explain(exc)}"
        raise InvalidRecord(path, reason) from None
    if isinstance(record, AddOnlyRecord):
        if record.digest is None:
            raise InvalidRecord(path, f"{where}has no digest")
        content = {**data, **extra}
        content.pop("digest", None)  # left out of the digest; saves compute_digest a copy
        if compute_digest(content) != record.digest:
            raise InvalidRecord(path, f"{where}digest does not match its content")
    if place:
        _check_place(path, kind, record, parts, where)
    return record


def _check_place(path: str, kind: Kind, record: Record, parts: dict[str, str], where: str) -> None:
    record_id = getattr(record, "id", None)
    if kind.form != "jsonl" and "id" in parts and record_id != parts["id"]:
        raise InvalidRecord(path, f"{where}id {record_id} does not match the file name")
    if "handoff" in parts and getattr(record, "handoff", None) != parts["handoff"]:
        raise InvalidRecord(path, "event names another handoff than its directory")
    if "y" in parts:
        # A ULID's time lies between 1970 and 9999, so these equal %Y, %m and %d.
        moment = ulid_time(parts["id"])
        if (
            parts["y"] != f"{moment.year:04d}"
            or parts["m"] != f"{moment.month:02d}"
            or ("d" in parts and parts["d"] != f"{moment.day:02d}")
            or ("h" in parts and parts["h"] != f"{moment.hour:02d}")
        ):
            raise InvalidRecord(path, "sits in another time shard than its id's time")


def _split_markdown(path: str, text: str) -> tuple[str, str]:
    if not text.startswith("---\n"):
        raise InvalidRecord(path, "must start with a `---` front matter block")
    end = text.find("\n---\n", 3)
    if end < 0:
        raise InvalidRecord(path, "front matter is not closed by a `---` line")
    return text[4 : end + 1], text[end + 5 :]


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSON Lines text. Only a line feed ends one: a JSON string may hold
    U+2028 and the other characters `str.splitlines` also breaks at."""
    lines = text.split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


DOCUMENT_LIMIT = 1 << 20  # bytes of a config or a workflow; gitgw's own are a few KB


def parse_file(path: str, data: bytes) -> Parsed:
    """Read and fully check one file: its kind, format, schema, digest and place.

    Raises `InvalidRecord` naming the path and the reason.
    """
    found = kind_of(path)
    if found is None:
        raise InvalidRecord(path, "is not a path gitgw knows", "see docs/file-formats.md")
    kind, parts = found
    if kind.form == "opaque":
        return Parsed(kind, ())
    if kind.form == "document" and len(data) > DOCUMENT_LIMIT:
        # The YAML parser reads about 200 KB a second: a config of megabytes would stall
        # every command that loads it.
        raise InvalidRecord(
            path, f"is {len(data):,} bytes; a YAML document over {DOCUMENT_LIMIT:,} is refused"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord(path, "is not UTF-8 text") from None
    try:
        if kind.form == "jsonl":
            records = []
            # The place of a batch line depends on the file's path alone (the lines of a
            # batch do not name it), so checking it on the first line checks every line.
            by_path = "handoff" not in parts
            for number, line in enumerate(jsonl_lines(text), 1):
                loaded = load_json(line)
                if not isinstance(loaded, dict):
                    raise InvalidRecord(path, f"line {number}: is not a JSON object")
                place = number == 1 or not by_path
                where = f"line {number}: "
                records.append(_validate(path, kind, loaded, {}, parts, where, place))
            if not records:
                raise InvalidRecord(path, "is an empty batch")
            return Parsed(kind, tuple(records))
        if kind.form == "markdown":
            front, body = _split_markdown(path, text)
            meta = load_record(front)
            return Parsed(kind, (_validate(path, kind, meta, {"body": body}, parts),), body)
        loaded = load_record(text) if kind.form == "record" else load_document(text)
        return Parsed(kind, (_validate(path, kind, loaded, {}, parts),))
    except (YamlError, ValueError) as exc:
        if isinstance(exc, InvalidRecord):
            raise
        raise InvalidRecord(path, f"cannot be parsed: {exc}") from None
    except RecursionError:  # a value nested a thousand deep, which no gitgw file holds
        raise InvalidRecord(path, "cannot be parsed: a value is nested too deeply") from None


def render(record: Record, body: str | None = None, **parts: str) -> tuple[str, bytes]:
    """The path and bytes of a new record (its digest computed when it is add-only)."""
    kind = next(k for k in KINDS if k.model is type(record))
    for name in _PLACEHOLDERS:
        value = getattr(record, name, None)
        if isinstance(value, str):
            parts.setdefault(name, value)
    if kind.form == "markdown":
        meta = record.to_data()
        if isinstance(record, AddOnlyRecord):
            meta.pop("digest", None)
            meta["digest"] = compute_digest({**meta, "body": body or ""})
        text = f"---\n{dump_record(meta)}---\n{body or ''}"
    elif kind.form == "jsonl":
        raise ValueError("receipts are written in batches; use render_batch")
    else:
        data = record.sealed() if isinstance(record, AddOnlyRecord) else record.to_data()
        text = dump_record(data)
    return kind.path(**parts), text.encode("utf-8")


def render_batch(records: list[Receipt], batch_id: str) -> tuple[str, bytes]:
    """One receipt batch file: a line of canonical-order JSON per sealed receipt."""
    lines = [json.dumps(r.sealed(), ensure_ascii=False, separators=(",", ":")) for r in records]
    return kind_named("receipt").path(id=batch_id), ("\n".join(lines) + "\n").encode("utf-8")


__all__ += ["render_batch"]
