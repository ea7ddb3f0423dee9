"""The body sent upstream: the client's bytes with only `model` replaced, or re-encoded."""

from __future__ import annotations

import codecs
import json

import pytest

from gitgw.services.request_body import parse_body, with_model

MESSAGES = '[{"role": "user", "content": "hi"}]'


def _upstream(body: bytes, model: str = "up/model-1") -> bytes:
    data, unique = parse_body(body)
    sent = with_model(body, data, unique, model)
    assert json.loads(sent) == {**data, "model": model}  # always the same object
    return sent


@pytest.mark.parametrize(
    "text",
    [
        '{"model": "chat", "messages": ' + MESSAGES + "}",
        '{"messages": ' + MESSAGES + ', "model": "chat", "stream": false}',
        '{"messages": ' + MESSAGES + ',"model":"chat"}',
        ' \n{"messages": ' + MESSAGES + ', "model"\t:\r\n "chat" }\n',
        '{"messages": [{"role": "user", "content": "caf\u00e9 \u2603"}], "model": "chat"}',
    ],
)
def test_only_the_model_value_changes_in_plain_bodies(text: str) -> None:
    body = text.encode("utf-8")
    sent = _upstream(body)
    assert sent == body.replace(b'"chat"', b'"up/model-1"')


def test_the_same_model_sends_the_same_bytes() -> None:
    body = b'{"model": "chat", "messages": ' + MESSAGES.encode() + b"}"
    assert _upstream(body, "chat") is body


@pytest.mark.parametrize(
    "text",
    [
        # a duplicate key anywhere: parsers disagree on which value counts
        '{"model": "chat", "messages": ' + MESSAGES + ', "messages": []}',
        '{"model": "chat", "messages": [{"role": "user", "content": "a", "content": "b"}]}',
        '{"model": "other", "messages": ' + MESSAGES + ', "model": "chat"}',
        # the top-level key escaped, and a literal "model" elsewhere
        '{"mod\\u0065l": "chat", "messages": ' + MESSAGES + ', "metadata": {"model": "chat"}}',
        '{"\\u006Dodel": "chat", "messages": ' + MESSAGES + "}",
        # "model" twice: a nested key, a value, text
        '{"model": "chat", "messages": ' + MESSAGES + ', "metadata": {"model": "x"}}',
        '{"model": "chat", "messages": [{"role": "user", "content": "model"}]}',
        '{"model": "chat", "messages": [{"role": "user", "content": "say \\"model\\""}]}',
        '{"say \\"model": 1, "model": "chat", "messages": ' + MESSAGES + "}",
        # a value with an escape
        '{"model": "ch\\u0061t", "messages": ' + MESSAGES + "}",
        '{"model": "local\\/chat", "messages": ' + MESSAGES + "}",
    ],
)
def test_anything_unusual_is_encoded_again(text: str) -> None:
    body = text.encode("utf-8")
    data, _unique = parse_body(body)
    sent = _upstream(body)
    assert sent == json.dumps({**data, "model": "up/model-1"}, ensure_ascii=False).encode()


def test_other_encodings_are_encoded_again_as_utf8() -> None:
    text = '{"model": "chat", "messages": ' + MESSAGES + "}"
    for body in (codecs.BOM_UTF8 + text.encode(), text.encode("utf-16"), text.encode("utf-32")):
        sent = _upstream(body)
        assert sent.startswith(b'{"model": "up/model-1"')


def test_a_duplicate_key_parses_as_json_loads_does() -> None:
    body = b'{"model": "chat", "messages": [], "messages": [{"role": "user", "content": "x"}]}'
    assert parse_body(body) == (json.loads(body), False)
    assert parse_body(b'{"model": "chat"}') == ({"model": "chat"}, True)
    with pytest.raises(json.JSONDecodeError):
        parse_body(b'{"model": ')
