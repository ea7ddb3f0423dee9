"""Record formats: rendering, parsing, digests and the clear errors bad files get."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from gitgw import _yaml
from gitgw._canonical import compute_digest, parsed_digest
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
from gitgw.records.fast_check import verify_file
from gitgw.records.layout import kind_at
from gitgw.records.run import Run, RunPart

MOMENT = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(now=lambda: MOMENT)


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


def test_the_parsed_digest_is_the_digest() -> None:
    content = {
        "z": [1, 2.5, -0.0, 1e16, 1e-7, float("inf"), 10**30, None, True],
        "a": {"é": 'ü \u2028 \x7f \\ " \n', "b": {"d": [], "c": {}}},
    }
    assert parsed_digest(content) == compute_digest(content)


def _outcome(check: Callable[[str, bytes], int], path: str, data: bytes) -> tuple[str, object]:
    try:
        return "ok", check(path, data)
    except InvalidRecord as exc:
        return "invalid", exc.reason
    except Exception as exc:  # what parse_file raises unasked, the fast check must too
        return "error", type(exc).__name__


def _old_verdict(path: str, data: bytes) -> int:
    return len(parse_file(path, data).records) or 1


def _assert_same_verdict(path: str, data: bytes) -> tuple[str, object]:
    old = _outcome(_old_verdict, path, data)
    assert _outcome(verify_file, path, data) == old, (path, data)
    return old


def _run_data(clock: Clock) -> dict[str, object]:
    run = Run(
        id=clock.new_id(),
        kind="call",
        status="succeeded",
        provider="ollama",
        model="llama3.1:8b",
        params={"temperature": 0.2, "max_tokens": 1024},
        inputs=[RunPart(role="user", sha256="a" * 64, chars=12)],
        receipts=[clock.new_id()],
        started=clock.now(),
        finished=clock.now(),
    )
    return run.sealed()


def _sealed(data: dict[str, object]) -> dict[str, object]:
    content = {key: value for key, value in data.items() if key != "digest"}
    try:
        return {**content, "digest": compute_digest(content)}
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8: no digest can match
        return {**content, "digest": "sha256:" + "0" * 64}


def _record_text(data: dict[str, object]) -> bytes:
    try:
        return dump_record(data).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: written escaped, as json.dumps does
        return "".join(f"{key}: {json.dumps(value)}\n" for key, value in data.items()).encode()


_RUN_CHANGES: list[tuple[str, dict[str, object]]] = [
    ("as written", {}),
    ("a naive time", {"started": "2026-11-20T10:30:00.000"}),
    ("another offset", {"started": "2026-11-20T12:30:00.000+02:00"}),
    ("a unix time", {"finished": 1_790_000_000}),
    ("before year 1 in UTC", {"started": "0001-01-01T00:30:00+01:00"}),
    ("after 9999 in UTC", {"finished": "9999-12-31T23:30:00-01:00"}),
    (
        "at the ends of time",
        {"started": "0001-01-01T00:00:00Z", "finished": "9999-12-31T23:59:59Z"},
    ),
    ("unicode", {"error": "é ü 漢字 \u2028 \x7f"}),
    ("a next-line character", {"error": "a\x85b"}),  # a line break for str.splitlines
    ("a lone surrogate", {"error": "\ud800"}),
    ("an unknown key", {"extra": 1}),
    ("a float count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": 12.0}]}),
    ("a bad count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": -1}]}),
    ("a bad ulid", {"receipts": ["01m72bn4rs2scss1dgp7emdw1q"]}),
    ("a bad literal", {"status": "done"}),
    ("a null digest", {"digest": None}),
    ("any params", {"params": {"b": [1, {"c": None}], "a": 1e400, "n": float("nan")}}),
]


@pytest.mark.parametrize(("what", "change"), _RUN_CHANGES, ids=[w for w, _ in _RUN_CHANGES])
def test_verify_file_judges_a_run_as_parse_file_does(
    clock: Clock, what: str, change: dict[str, object]
) -> None:
    data = _run_data(clock)
    path = f"runs/2026/11/20/{data['id']}.yaml"
    sealed = _sealed({**data, **change})
    if "digest" in change:
        sealed["digest"] = change["digest"]
    verdict = _assert_same_verdict(path, _record_text(sealed))
    if what in ("as written", "another offset", "unicode", "at the ends of time"):
        assert verdict == ("ok", 1)


def test_verify_file_judges_run_texts_as_parse_file_does(clock: Clock) -> None:
    data = _run_data(clock)
    path = f"runs/2026/11/20/{data['id']}.yaml"
    text = _record_text(data).decode()
    bad_digest = text.replace(str(data["digest"])[-8:], "00000000")
    texts = {
        "as written": text,
        "escapes": text.replace('"ollama"', '"\\u006fllama"'),
        "a key twice": text + 'kind: "call"\n',
        "a duplicate with another value": text + 'kind: "replay"\n',
        "spaces around a value": text.replace('kind: "call"', 'kind:  "call" '),
        "unquoted YAML": text.replace('kind: "call"', "kind: call"),
        "CRLF": text.replace("\n", "\r\n"),
        "no final newline": text[:-1],
        "a blank line": text.replace("\nkind:", "\n\nkind:"),
        "a bad digest": bad_digest,
        "no digest": "".join(line for line in text.splitlines(True) if "digest" not in line),
        "another key case": text.replace("kind:", "Kind:"),
        "a tab in a string": text.replace('"ollama"', '"oll\tama"'),
        "empty": "",
        "a value over two lines": text.replace('params: {"temperature": 0.2,', "params: {\n"),
    }
    accepted = {
        name for name, each in texts.items() if _assert_same_verdict(path, each.encode())[0] == "ok"
    }
    assert accepted == {
        "as written",
        "escapes",
        "spaces around a value",
        "unquoted YAML",
        "CRLF",
        "no final newline",
        "a blank line",
    }
    assert _assert_same_verdict(path, b"\xff\xfe") == ("invalid", "is not UTF-8 text")


def test_verify_file_judges_places_as_parse_file_does(clock: Clock) -> None:
    data = _run_data(clock)
    body = _record_text(data)
    ulid = str(data["id"])
    for path in (
        f"runs/2026/11/20/{ulid}.yaml",  # right
        f"runs/2026/11/21/{ulid}.yaml",  # another day
        f"runs/2026/10/20/{ulid}.yaml",
        f"runs/2025/11/20/{ulid}.yaml",
        f"runs/2026/11/20/{clock.new_id()}.yaml",  # another id
        f"runs/2026/11/20/{ulid.lower()}.yaml",  # not a path gitgw knows
    ):
        _assert_same_verdict(path, body)
    # A ULID whose time is past the year 9999: ulid_time cannot say where it belongs.
    late = _sealed({**data, "id": "7ZZZZZZZZZ" + ulid[10:]})
    _assert_same_verdict(f"runs/9999/12/31/{late['id']}.yaml", _record_text(late))


def _receipt_lines(clock: Clock, count: int) -> list[dict[str, object]]:
    return [
        Receipt(
            id=clock.new_id(),
            created=clock.now(),
            client="cli",
            level="internal",
            outcome="ok",
            latency_ms=12.5,
        ).sealed()
        for _ in range(count)
    ]


def test_verify_file_judges_receipt_batches_as_parse_file_does(clock: Clock) -> None:
    lines = _receipt_lines(clock, 3)
    batch_id = clock.new_id()
    path, body = render_batch([Receipt.model_validate(line) for line in lines], batch_id)
    assert _assert_same_verdict(path, body) == ("ok", 3)
    day_path = path.rsplit("/", 2)[0] + f"/{batch_id}.jsonl"  # where earlier versions wrote
    assert _assert_same_verdict(day_path, body) == ("ok", 3)
    hour = path.split("/")[4]
    other_hour = f"{(int(hour) + 1) % 24:02d}"
    _assert_same_verdict(path.replace(f"/{hour}/", f"/{other_hour}/"), body)

    def dumped(items: list[dict[str, object]]) -> bytes:
        return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode()

    naive = _sealed({**lines[1], "created": "2026-11-20T10:30:00"})
    offset = _sealed({**lines[1], "created": "2026-11-20T11:30:00+01:00"})
    variants = {
        "sorted keys and spaces": dumped([_sealed(line) for line in lines]),
        "a naive time": dumped([lines[0], naive]),
        "another offset": dumped([lines[0], offset]),
        "a bad digest": dumped([lines[0], {**lines[1], "digest": "sha256:" + "0" * 64}]),
        "no digest": dumped([{k: v for k, v in lines[0].items() if k != "digest"}]),
        "not an object": body + b"[]\n",
        "a blank line": body + b"\n" + body,
        "empty": b"",
        "CRLF": body.replace(b"\n", b"\r\n"),
        "a lone surrogate": json.dumps(_sealed({**lines[0], "detail": "\ud800"})).encode(),
        "unicode": dumped([_sealed({**lines[0], "detail": "é \u2028 漢字"})]),
        "not JSON": b"{'a': 1}\n",
    }
    for name, data in variants.items():
        verdict = _assert_same_verdict(path, data)
        if name in ("sorted keys and spaces", "another offset", "unicode"):
            assert verdict[0] == "ok", name


def test_kind_at_is_the_kind_kind_of_finds() -> None:
    for path in (
        "runs/2026/11/20/01M72BN4RS2SCSS1DGP7EMDW1Q.yaml",
        "receipts/2026/11/20/10/01M72BN4RS2SCSS1DGP7EMDW1Q.jsonl",
        "receipts/2026/11/20/01M72BN4RS2SCSS1DGP7EMDW1Q.jsonl",
        "receipts/2026/11/20/1/01M72BN4RS2SCSS1DGP7EMDW1Q.jsonl",
        "consent/2026/11/01M72BN4RS2SCSS1DGP7EMDW1Q.yaml",
        "gitgw.yaml",
        "workflows/a.yaml",
        "nowhere/x",
        "",
    ):
        found = kind_of(path)
        assert kind_at(path) is (found[0] if found else None), path
