"""`verify`'s fast format check (`gitgw.records.fast_check`): the same verdict and reason
as `parse_file` on every kind of file, good or bad, and the canonical text that
pydantic-core writes for what it accepts."""

from __future__ import annotations

import contextlib
import json
import math
import random
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter
from pydantic_core import SchemaValidator, to_json

from gitgw._canonical import (
    SAME_FLOAT_FORM_FROM,
    canonical_json,
    compute_digest,
    ordered_digest,
    writers_agree,
)
from gitgw._clock import Clock
from gitgw._yaml import dump_record, load_record
from gitgw.errors import InvalidRecord
from gitgw.records import Receipt, fast_check, kind_of, parse_file, render_batch
from gitgw.records.base import Timestamp
from gitgw.records.fast_check import verify_file
from gitgw.records.layout import kind_at
from gitgw.records.run import Run, RunPart

# -- the canonical text, written by pydantic-core ------------------------------------------


def test_pydantic_cores_text_is_canonical_for_every_character() -> None:
    # Every code point but the surrogates (which no UTF-8 text holds), in keys and values.
    points = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    texts = ["".join(points[at : at + 512]) for at in range(0, len(points), 512)]
    content = {"keys": dict.fromkeys(sorted(texts), 1), "values": texts}
    assert to_json(content) == canonical_json(content)


def _random_floats(count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    floats = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(count)]
    for exponent in range(-8, 309):
        for mantissa in (1.0, 1.5, 3.14159, 9.999999999999999):
            value = mantissa * 10.0**exponent
            floats += [value, -value, math.nextafter(value, 0), math.nextafter(value, math.inf)]
    return [*floats, 0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 2.0**53, 2.0**64]


def test_pydantic_cores_text_is_canonical_for_floats_from_the_threshold() -> None:
    floats = _random_floats(200_000, seed=3)
    same = [x for x in floats if not 0 < abs(x) < SAME_FLOAT_FORM_FROM]
    assert to_json(same) == canonical_json(same)
    # Below it the two writers differ, which is why the fast check leaves such floats to
    # json's encoder (through parse_file).
    assert to_json([1e-05, 1e-07]) != canonical_json([1e-05, 1e-07])
    assert len(same) > 100_000  # the comparison was not vacuous


def test_the_installed_pydantic_core_is_one_the_fast_route_may_use() -> None:
    assert writers_agree()  # else every file would go through parse_file


def test_the_ordered_digest_is_the_digest() -> None:
    content = {
        "a": {"b": {"c": {}, "d": []}, "é": 'ü \u2028 \x7f \\ " \n'},
        "z": [1, 2.5, -0.0, 1e16, 1e-4, math.inf, 10**30, None, True, "claude-3"],
    }
    assert ordered_digest(content) == compute_digest(content)


# -- the times the fast check takes are times the model takes ------------------------------


def test_every_time_the_fast_check_takes_the_model_takes() -> None:
    fast = SchemaValidator({"type": "str", "strict": True, "pattern": fast_check._TIME})
    model = TypeAdapter(Timestamp)
    taken = 0
    for year in ("0000", "0001", "0004", "0100", "1900", "2000", "2024", "2025", "9999"):
        for month in range(14):
            for day in range(33):
                for clock_time in ("00:00:00.000", "23:59:59.999", "24:00:00.000", "12:60:00.000"):
                    text = f"{year}-{month:02d}-{day:02d}T{clock_time}Z"
                    try:
                        fast.validate_python(text)
                    except ValueError:
                        continue
                    taken += 1
                    assert model.validate_python(text).isoformat(), text
    assert taken > 5_000
    for refused in (
        "2025-01-01T00:00:00Z",
        "2025-01-01T00:00:00.000+00:00",
        "2024-02-29T00:00:00.000Z",
    ):
        with pytest.raises(ValueError, match="should match pattern"):
            fast.validate_python(refused)


# -- the same verdict as parse_file -------------------------------------------------------


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


_ABSENT = object()  # a change that leaves the key out


def _sealed(data: dict[str, object]) -> dict[str, object]:
    content = {k: v for k, v in data.items() if k != "digest" and v is not _ABSENT}
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
    ("params out of order", {"params": {"b": {"y": 1, "x": [{"d": 2, "c": 1}]}, "a": 0.5}}),
    ("an integer param", {"params": {"temperature": 1}}),
    ("a tiny float param", {"params": {"lr": 1e-05}}),
    ("a tiny float deep in params", {"params": {"a": [{"b": -2.5e-07}]}}),
    ("no params", {"params": _ABSENT}),
    ("no schema version", {"schema_version": _ABSENT}),
    ("a text schema version", {"schema_version": "1"}),
    ("a true schema version", {"schema_version": True}),
    ("nulls given", {"error": None, "level": None, "follows": None}),
    ("a bool count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": True}]}),
    ("a text count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": "12"}]}),
    ("a huge count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": 10**30}]}),
    ("a leap day", {"started": "2024-02-29T10:30:00.000Z"}),
    ("no such leap day", {"started": "2025-02-29T10:30:00.000Z"}),
    ("the 31st of April", {"started": "2026-04-31T10:30:00.000Z"}),
    ("the 31st of December", {"started": "2026-12-31T23:59:59.999Z"}),
    ("a leap second", {"finished": "2026-11-20T10:30:60.000Z"}),
    ("microseconds", {"started": "2026-11-20T10:30:00.123456Z"}),
    ("a lower-case z", {"started": "2026-11-20T10:30:00.000z"}),
    ("the year 0", {"started": "0000-01-01T00:00:00.000Z"}),
]

# What the fast route itself takes, not only what it agrees on: the rest of the changes
# above go to parse_file (or are refused by both).
_TAKEN_FAST = {
    "as written",
    "unicode",
    "any params",
    "params out of order",
    "an integer param",
    "no params",
    "no schema version",
    "nulls given",
    "a huge count",
    "the 31st of December",
}


def _taken_fast(path: str, data: bytes) -> bool:
    found = kind_of(path)
    assert found is not None
    kind, parts = found
    check = fast_check._fast_check(kind)
    assert check is not None
    return fast_check._fast_records(kind, check, path, data, parts) > 0


@pytest.mark.parametrize(("what", "change"), _RUN_CHANGES, ids=[w for w, _ in _RUN_CHANGES])
def test_verify_file_judges_a_run_as_parse_file_does(
    clock: Clock, what: str, change: dict[str, object]
) -> None:
    data = _run_data(clock)
    path = f"runs/2026/11/20/{data['id']}.yaml"
    sealed = _sealed({**data, **change})
    if "digest" in change:
        sealed["digest"] = change["digest"]
    body = _record_text(sealed)
    verdict = _assert_same_verdict(path, body)
    if what in ("as written", "another offset", "unicode", "at the ends of time", "a leap day"):
        assert verdict == ("ok", 1)
    assert _taken_fast(path, body) == (what in _TAKEN_FAST)


_CONVERTED: list[tuple[str, dict[str, object]]] = [
    ("a text count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": "12"}]}),
    ("a float count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": 12.0}]}),
    ("a bool count", {"inputs": [{"role": "user", "sha256": "a" * 64, "chars": True}]}),
    ("another offset", {"started": "2026-11-20T12:30:00.000+02:00"}),
    ("no milliseconds", {"started": "2026-11-20T10:30:00Z"}),
]


@pytest.mark.parametrize(("what", "change"), _CONVERTED, ids=[w for w, _ in _CONVERTED])
def test_a_digest_of_what_the_model_made_of_the_content_is_refused(
    clock: Clock, what: str, change: dict[str, object]
) -> None:
    # The digest covers the file's content as read, not the model's reading of it: a
    # digest of the converted values must fail on both routes.
    content = {**_run_data(clock), **change}
    converted = Run.model_validate(content).to_data()
    converted.pop("digest")
    body = _record_text({**content, "digest": compute_digest(converted)})
    path = f"runs/2026/11/20/{content['id']}.yaml"
    assert _assert_same_verdict(path, body) == ("invalid", "digest does not match its content")


def _with_digest(text: str) -> bytes:
    """A hand-written record text, sealed over what the record reader makes of it."""
    return (text + f'digest: "{compute_digest(load_record(text))}"\n').encode()


def test_hand_written_numbers_and_keys_are_judged_as_parse_file_judges_them(
    clock: Clock,
) -> None:
    data = _run_data(clock)
    path = f"runs/2026/11/20/{data['id']}.yaml"
    head = _record_text({k: v for k, v in data.items() if k not in ("params", "digest")}).decode()
    forms = {
        "exponents": '{"a": 1E2, "b": 2.5e-3, "c": 1e400, "d": -1e400}',
        "signed zeros": '{"a": -0, "b": -0.0, "c": -0e0}',
        "big integers": '{"a": 123456789012345678901234567890, "b": -9007199254740993}',
        "escaped keys": '{"k\\u00e9y": 1, "\\"": 2, "a\\nb": [true, null]}',
        "spaces": '{ "b" :1 ,"a":[ 1 , 2 ] }',
    }
    for what, params in forms.items():
        body = _with_digest(head + f"params: {params}\n")
        assert _assert_same_verdict(path, body) == ("ok", 1), what
        assert _taken_fast(path, body), what
    deep = "[" * 300 + "]" * 300  # deeper than pydantic-core's parser goes: parse_file's
    body = _with_digest(head + f'params: {{"a": {deep}}}\n')
    assert _assert_same_verdict(path, body) == ("ok", 1)
    assert not _taken_fast(path, body)


def test_the_fast_route_takes_every_field_gitgw_writes(clock: Clock) -> None:
    step = {"name": "ask", "kind": "call", "outcome": "succeeded", "receipts": [clock.new_id()]}
    run = _sealed(
        {
            **_run_data(clock),
            "kind": "workflow",
            "workflow": "review",
            "trigger": {"event": "push", "ref": {"name": "main", "old": None}},
            "level": "internal",
            "follows": clock.new_id(),
            "outputs": [{"role": "assistant", "sha256": "b" * 64, "chars": 3, "form": "json"}],
            "steps": [
                {**step, "started": "2026-11-20T10:30:00.000Z"},
                {
                    **step,
                    "started": "2026-11-20T10:30:01.000Z",
                    "finished": "2026-11-20T10:31:00.000Z",
                    "error": "late",
                },
            ],
            "error": "none",
        }
    )
    path = f"runs/2026/11/20/{run['id']}.yaml"
    assert _assert_same_verdict(path, _record_text(run)) == ("ok", 1)
    assert _taken_fast(path, _record_text(run))
    receipt = Receipt(
        id=clock.new_id(),
        created=clock.now(),
        client="cli",
        level="confidential",
        rules=["secret-detected"],
        route={"provider": "ollama", "model": "m", "endpoint": "/v1", "location": "local"},
        rejected=[{"provider": "hosted", "model": "m", "reason": "level"}],
        consent=[clock.new_id()],
        context=[{"role": "user", "sha256": "c" * 64, "chars": 9, "tokens": 3, "content": "hi"}],
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        cost=0.25,
        latency_ms=12.5,
        overhead_ms=0.5,
        outcome="ok",
        detail="fine",
        offline=True,
        config_commit="d" * 40,
        run=clock.new_id(),
    )
    path, body = render_batch([receipt], clock.new_id())
    assert _assert_same_verdict(path, body) == ("ok", 1)
    assert _taken_fast(path, body)


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


def _id_at(moment: datetime) -> str:
    return Clock(now=lambda: moment).new_id()  # one clock each: ids at any time, in any order


def test_records_at_the_edges_of_their_shard_are_placed_as_parse_file_places_them(
    clock: Clock,
) -> None:
    milli = timedelta(milliseconds=1)
    day = datetime(2026, 12, 31, tzinfo=UTC)  # the last day of a month and of a year
    data = _run_data(clock)
    for moment, taken in (
        (day, True),
        (day + timedelta(days=1) - milli, True),
        (day - milli, False),
        (day + timedelta(days=1), False),
    ):
        run = _sealed({**data, "id": _id_at(moment)})
        path = f"runs/2026/12/31/{run['id']}.yaml"
        verdict = _assert_same_verdict(path, _record_text(run))
        assert (verdict == ("ok", 1)) == taken
        assert _taken_fast(path, _record_text(run)) == taken
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    lines = _receipt_lines(clock, 2)
    for moment, taken in ((hour, True), (hour + timedelta(hours=1) - milli, True)):
        for batch_at, shard in ((moment, "10"), (moment + timedelta(hours=1), "10")):
            batch = _id_at(batch_at)
            path, body = render_batch([Receipt.model_validate(line) for line in lines], batch)
            path = f"receipts/2026/11/20/{shard}/{batch}.jsonl"
            in_place = batch_at < hour + timedelta(hours=1)
            assert _assert_same_verdict(path, body)[0] == ("ok" if in_place else "invalid")
            assert _taken_fast(path, body) == (taken and in_place)
    # A directory that is no day, and an earlier layout beside the current one.
    run = _sealed({**data, "id": _id_at(datetime(2026, 2, 28, tzinfo=UTC))})
    assert _assert_same_verdict(f"runs/2026/02/30/{run['id']}.yaml", _record_text(run))[0] == (
        "invalid"
    )
    batch = _id_at(hour)
    _, body = render_batch([Receipt.model_validate(line) for line in lines], batch)
    for path in (f"receipts/2026/11/20/{batch}.jsonl", f"receipts/2026/11/20/10/{batch}.jsonl"):
        assert _assert_same_verdict(path, body) == ("ok", 2)
        assert _taken_fast(path, body)


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
    latency_over_float = {**lines[0], "latency_ms": 12}
    latency_over_float["digest"] = _sealed({**lines[0], "latency_ms": 12.0})["digest"]
    huge_over_float = {**lines[0], "latency_ms": 10**20}
    huge_over_float["digest"] = _sealed({**lines[0], "latency_ms": 1e20})["digest"]
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
        "an integer latency": dumped([_sealed({**lines[0], "latency_ms": 12})]),
        "a tiny latency": dumped([_sealed({**lines[0], "latency_ms": 1e-05})]),
        "a zero latency": dumped([_sealed({**lines[0], "latency_ms": -0.0})]),
        "a NaN latency": dumped([_sealed({**lines[0], "latency_ms": math.nan})]),
        "a huge integer latency": dumped([_sealed({**lines[0], "latency_ms": 10**20})]),
        "a digest over the float": dumped([latency_over_float]),
        "a digest over the huge integer as a float": dumped([huge_over_float]),
    }
    taken_fast = {"sorted keys and spaces", "unicode", "CRLF", "an integer latency"}
    taken_fast.add("a zero latency")
    for name, data in variants.items():
        verdict = _assert_same_verdict(path, data)
        if name in ("sorted keys and spaces", "another offset", "unicode", "a tiny latency"):
            assert verdict[0] == "ok", name
        if name in ("an integer latency", "a NaN latency", "a huge integer latency"):
            assert verdict[0] == "ok", name
        if name.startswith("a digest over"):
            assert verdict == ("invalid", "line 1: digest does not match its content")
        assert (verdict[0] == "ok" and _taken_fast(path, data)) == (name in taken_fast), name


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


_VALUES: list[object] = [
    0,
    1,
    -1,
    2**53 + 1,
    10**20,
    1.0,
    0.5,
    1e-05,
    -0.0,
    math.nan,
    math.inf,
    True,
    False,
    None,
    "",
    "x",
    "2026-11-20T10:30:00.000Z",
    "2026-11-20T10:30:00Z",
    "01M72BN4RS2SCSS1DGP7EMDW1Q",
    "a" * 64,
    [],
    [1, "x"],
    ["01M72BN4RS2SCSS1DGP7EMDW1Q"],
    {},
    {"b": 1, "a": [2.5, {"d": None, "c": 1e-07}]},
    {"role": "user", "sha256": "a" * 64, "chars": 1},
    [{"role": "user", "sha256": "a" * 64, "chars": 1.0}],
    [{"provider": "p", "model": "m", "reason": "r"}],
    {"provider": "p", "model": "m", "endpoint": "/v1"},
    {"prompt_tokens": 1, "total_tokens": True},
]


def test_verify_file_agrees_with_parse_file_on_random_records(clock: Clock) -> None:
    # Random values in random fields, sealed over the content, over what the model makes
    # of it, or not at all: both routes must give the same verdict every time.
    rng = random.Random(13)
    run = _run_data(clock)
    receipt = _receipt_lines(clock, 1)[0]
    seen = {"ok": 0, "invalid": 0, "fast": 0}
    for _ in range(3_000):
        kind = rng.choice((Run, Receipt))
        content = dict(run if kind is Run else receipt)
        for name in rng.sample([*kind.model_fields, "extra"], rng.randint(1, 3)):
            content[name] = rng.choice(_VALUES)
        sealed = _sealed(content)
        if rng.random() < 0.2:  # the digest of what the model makes of the content
            with contextlib.suppress(ValueError):  # unless the model refuses it
                sealed["digest"] = kind.model_validate(sealed).sealed()["digest"]
        elif rng.random() < 0.1:
            sealed["digest"] = content.get("digest")
        if kind is Run:
            path, body = f"runs/2026/11/20/{run['id']}.yaml", _record_text(sealed)
        else:
            path = f"receipts/2026/11/20/10/{receipt['id']}.jsonl"
            body = (json.dumps(sealed, ensure_ascii=False) + "\n").encode()
        verdict = _assert_same_verdict(path, body)[0]
        seen[verdict] += 1
        seen["fast"] += verdict == "ok" and _taken_fast(path, body)
    assert seen["invalid"] > 1_000, seen  # the comparison was not vacuous either way
    assert seen["ok"] > 150, seen
    assert seen["fast"] > 100, seen
