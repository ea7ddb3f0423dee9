"""Record formats: rendering, parsing, digests and the clear errors bad files get."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest

from gitgw import _yaml
from gitgw._clock import Clock
from gitgw._yaml import (
    _load_fast,
    dump_record,
    load_document,
    load_json,
    load_known_keys,
    load_record,
)
from gitgw.errors import InvalidRecord
from gitgw.records import (
    ConsentEntry,
    GatewayConfig,
    Handoff,
    Receipt,
    kind_of,
    parse_file,
    render,
    render_batch,
)
from tests.conftest import MOMENT


def _grant(clock: Clock, **overrides: object) -> ConsentEntry:
    fields: dict[str, object] = {
        "id": clock.new_id(),
        "action": "grant",
        "subject": "provider:openai",
        "level": "internal",
        "actor": "alice",
        "created": clock.now(),
    }
    fields.update(overrides)
    return ConsentEntry.model_validate(fields)


def test_rendered_record_round_trips_and_sits_in_its_date_shard(clock: Clock) -> None:
    entry = _grant(clock, reason='team agreed: ünïcode and "quotes"\nand lines')
    path, data = render(entry)
    assert path == f"consent/2026/11/{entry.id}.yaml"
    parsed = parse_file(path, data)
    assert parsed.records[0] == entry.model_copy(update={"digest": parsed.records[0].digest})
    # gitgw's fast layout and a full YAML parser read the same data.
    assert load_record(data.decode()) == load_document(data.decode())


def test_digest_is_over_canonical_content_so_layout_does_not_matter(clock: Clock) -> None:
    path, data = render(_grant(clock))
    content = load_record(data.decode())
    reordered = "\n".join(f"{k}: {json.dumps(v)}" for k, v in reversed(content.items()))
    assert parse_file(path, reordered.encode()).records[0].id == content["id"]


def test_a_changed_byte_breaks_the_digest(clock: Clock) -> None:
    path, data = render(_grant(clock))
    tampered = data.replace(b'"internal"', b'"restricted"')
    with pytest.raises(InvalidRecord, match="digest does not match"):
        parse_file(path, tampered)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t.replace('"grant"', '"maybe"'), "does not match the consent schema"),
        (lambda t: t + 'extra: "field"\n', "Extra inputs are not permitted"),
        (lambda t: t.replace("digest:", "#digest:"), "has no digest"),
        (lambda t: "not: [valid\n", "cannot be parsed: expected ',' or ']', but got"),
        (
            lambda t: "a: b: c\n",
            "cannot be parsed: mapping values are not allowed here (line 1, column 5)",
        ),
        (lambda t: "- a list\n", "cannot be parsed"),
    ],
)
def test_bad_record_files_get_the_path_and_a_reason(
    clock: Clock, mutate: Callable[[str], str], reason: str
) -> None:
    path, data = render(_grant(clock))
    with pytest.raises(InvalidRecord) as caught:
        parse_file(path, mutate(data.decode()).encode())
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_a_record_in_the_wrong_place_is_caught(clock: Clock) -> None:
    entry = _grant(clock)
    path, data = render(entry)
    other = _grant(clock)
    with pytest.raises(InvalidRecord, match="does not match the file name"):
        parse_file(path.replace(entry.id, other.id), data)
    with pytest.raises(InvalidRecord, match="another time shard"):
        parse_file(path.replace("2026/11", "2025/01"), data)


def test_unknown_paths_and_binary_files_are_refused() -> None:
    assert kind_of("secrets/notes.txt") is None
    with pytest.raises(InvalidRecord, match="not a path gitgw knows"):
        parse_file("secrets/notes.txt", b"x")
    with pytest.raises(InvalidRecord, match="UTF-8"):
        parse_file("gitgw.yaml", b"\xff\xfe")


def test_markdown_records_hash_their_body(clock: Clock) -> None:
    handoff = Handoff.model_validate(
        {
            "id": clock.new_id(),
            "from": {"agent": "claude-code"},
            "to": "codex",
            "title": "Finish the parser",
            "created": clock.now(),
        }
    )
    path, data = render(handoff, "## Next\n\nRun the tests.\n")
    assert parse_file(path, data).body == "## Next\n\nRun the tests.\n"
    with pytest.raises(InvalidRecord, match="digest"):
        parse_file(path, data.replace(b"Run the tests", b"Skip the tests"))
    with pytest.raises(InvalidRecord, match="front matter"):
        parse_file(path, b"no front matter\n")


def test_receipt_batches_check_every_line(clock: Clock) -> None:
    receipts = [
        Receipt(id=clock.new_id(), created=clock.now(), level="public", outcome="ok")
        for _ in range(3)
    ]
    path, data = render_batch(receipts, clock.new_id())
    assert len(parse_file(path, data).records) == 3
    lines = data.decode().splitlines()
    lines[1] = lines[1].replace('"public"', '"internal"')
    with pytest.raises(InvalidRecord, match="line 2: digest"):
        parse_file(path, ("\n".join(lines) + "\n").encode())


def test_config_names_an_unknown_provider_clearly() -> None:
    text = "models:\n  chat:\n    candidates:\n      - {provider: nowhere, model: m}\n"
    with pytest.raises(InvalidRecord, match="unknown provider 'nowhere'"):
        parse_file("gitgw.yaml", text.encode())
    assert parse_file("gitgw.yaml", b"mode: offline\n").records[0] == GatewayConfig(mode="offline")


def test_record_yaml_escapes_line_separators() -> None:
    text = dump_record({"note": "a\u2028b"})
    assert "\u2028" not in text
    assert load_document(text) == {"note": "a\u2028b"}


def test_ulids_sort_by_time_and_stay_ordered_within_a_millisecond(clock: Clock) -> None:
    ids = [clock.new_id() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    later = Clock(now=lambda: MOMENT.replace(minute=31)).new_id()
    assert later > ids[-1]


# -- the whole-text record reader ---------------------------------------------------------

_READER_CASES = [
    'schema_version: 1\nid: "01M72BN4RS2SCSS1DGP7EMDW1Q"\ntags: ["a", "b"]\n',
    'a: 1\nb: {"x": [1, 2.5, null, true]}',  # no final newline
    "a: 1 \nb:  2\n",  # white space around values: json.loads takes it
    "a: 1\na: 2\n",  # a key given twice
    "a: 1\n\nb: 2\n",  # a blank line
    "a: 1\n\n",
    "",
    "\n",
    "a: [1,\n",  # a value cut short
    'a: 1, "b": 2\n',  # more than one value on a line
    "A: 1\n",  # not a key of the layout
    "a: 1\r\nb: 2\r\n",  # CRLF
    "a: 1\rb: 2\n",  # a lone CR breaks a line for str.splitlines
    'a: "x\u2028y"\n',  # line separators inside a string
    'a: "x\x85y"\nb: 2\n',
    "a: 1\x85b: 2\n",
    "a: 1\x1cb: 2\n",
    "a: 1\x0bb: 2\n",
    'a: "ünïcode"\nb: "\\u2028"\n',
]


@pytest.mark.parametrize("text", _READER_CASES)
def test_the_whole_text_reader_reads_as_the_line_reader_does(text: str) -> None:
    assert _yaml._load_fast(text) == _yaml._load_lines(text)


def test_the_whole_text_reader_agrees_on_random_texts() -> None:
    rng = random.Random(7)
    pieces = ["a: ", "b: ", "a_1: ", "1", '"s"', "[1, 2]", '{"k": 1}', " ", "\n", "\r", "\r\n"]
    pieces += ["\x85", "\u2028", "\x1c", ":", ",", '"', "null", "x"]
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert _yaml._load_fast(text) == _yaml._load_lines(text), repr(text)


_JSON_CASES = [
    '{"a":1,"a":2}',  # a repeated key: the last one counts
    "[123456789012345678901234567890, 1e400, -0, -0.0, 1E5, 5e-324]",
    '"\\ud800 an unpaired surrogate escape, which json reads"',
    '"\\udc00\\ud800"',
    '"a pair \\ud83d\\ude00 and \\u00e9 and \\/"',
    '[NaN, Infinity, -Infinity, "x"]',
    ' {"padded": true} ',
    '"' + "long " * 20 + '"',
]
_BAD_JSON = ['"raw\ttab"', "[1,]", "01", "1 2", "{'a': 1}", ".5", "-NaN", "[" * 10, ""]


@pytest.mark.parametrize("text", _JSON_CASES + _BAD_JSON)
def test_load_json_reads_and_refuses_exactly_as_json_loads(text: str) -> None:
    for each in (text, text + " " * 64):  # short texts and long ones have two readers
        try:
            expected = json.loads(each)
        except ValueError as exc:
            with pytest.raises(type(exc)):
                load_json(each)
            continue
        assert repr(load_json(each)) == repr(expected)


# -- verify's format check: the same verdict as parse_file --------------------------------

_KEYS = frozenset({"a", "b", "a_1", "schema_version", "id", "tags"})


@pytest.mark.parametrize("text", _READER_CASES)
def test_the_known_keys_reader_reads_only_what_load_record_reads_the_same(text: str) -> None:
    found = load_known_keys(text, _KEYS)
    if found is not None:
        assert repr(found) == repr(load_record(text)) == repr(_load_fast(text))


def test_the_known_keys_reader_agrees_on_random_texts() -> None:
    rng = random.Random(11)
    keys = ["a", "b", "a_1", "A", "", "a b"]
    values = ["1", '"s"', "[1, 2]", '{"k": 1}', "null", "x", "1.0", '"\\ud800"', "[1,", "1, 2"]
    values += ['"\u2028"', '"\x85"', " 1", "1 ", "\t1", '"a\tb"', "", '"é"', "NaN", "-0"]
    ends = ["\n"] * 8 + ["\r\n", "\r", "\x85", ""]
    read = 0
    for _ in range(5_000):
        lines = rng.randint(0, 4)
        text = "".join(
            rng.choice(keys)
            + rng.choice([": ", ": ", ":", " : "])
            + rng.choice(values)
            + rng.choice(ends)
            for _ in range(lines)
        )
        found = load_known_keys(text, _KEYS)
        if found is not None:
            read += 1
            assert repr(found) == repr(load_record(text)), repr(text)
    assert read > 100  # the comparison was not vacuous
