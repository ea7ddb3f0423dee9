"""Trust classification: every message part counts, values are never reported, and
ordinary engineering text (commit ids, digests, ULIDs, code) stays at the default."""

from __future__ import annotations

from typing import Any

import pytest

from gitgw.concepts.trust import MAX_DEPTH, Classifier, message_texts, request_texts
from gitgw.errors import GitgwError
from gitgw.records.config import TrustConfig, TrustRule

SENSITIVE = {
    "secret.private-key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...",
    "secret.aws-access-key": "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "secret.github-token": "export GH=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "secret.openai-key": "client = OpenAI(api='sk-proj-abcdefghijklmnopqrstuvwx123')",
    "secret.anthropic-key": "ANTHROPIC=sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
    "secret.slack-token": "xoxb-1234567890-abcdefghij",
    "secret.google-api-key": "key=AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "secret.stripe-key": "sk_live_abcdefghijklmnopqrstuvwx",
    "secret.jwt": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "secret.url-credentials": "DATABASE_URL=postgres://admin:hunter22@db.internal:5432/app",
    "secret.assignment": 'config = {"password": "correct-horse-battery"}',
    "secret.high-entropy-token": "the token is Zk9XqL2mP8vR4tY7wB1nC5dF3hJ6kS0aQ please",
    "personal.email": "write to jane.doe@example.org about it",
    "personal.payment-card": "card 4111 1111 1111 1111 exp 12/29",
    "personal.iban": "pay to DE89 3704 0044 0532 0130 00",
    "personal.us-ssn": "SSN 078-05-1120 on file",
    "personal.phone": "call me on +44 20 7946 0958",
    "personal.ipv4": "the server at 203.0.113.45 is down",
    "personal.ipv6": "bind 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
}

HARMLESS = [
    "commit 3f786850e387550fdab836ed7e6dc881de23001b fixes the parser",
    "digest sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "record 01KB5ZV3R9N0XKQW4Y8E2M6T1A and uuid 123e4567-e89b-12d3-a456-426614174000",
    "def total(xs: list[int]) -> int:\n    return sum(x * 2 for x in xs)  # line 1017",
    "card 4111 1111 1111 1112 fails the Luhn check",
    "localhost is 127.0.0.1 and the date is 2026-11-26 10:30:00, port 8080",
    "the sky is blue",
]


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(TrustConfig(default_level="internal"))


@pytest.mark.parametrize(("rule", "text"), SENSITIVE.items())
def test_each_detector_fires_on_its_kind_of_content(
    classifier: Classifier, rule: str, text: str
) -> None:
    result = classifier.classify([text])
    assert rule in result.rules
    expected = "restricted" if rule.startswith("secret.") else "confidential"
    assert result.level == expected


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_engineering_text_stays_at_the_default(classifier: Classifier, text: str) -> None:
    result = classifier.classify([text])
    assert result.rules == ()
    assert result.level == "internal"


def _conversation(secret_at: str, secret: str) -> list[dict[str, Any]]:
    parts: dict[str, Any] = {
        "system": "You are a careful assistant.",
        "user": "Summarise the attached log.",
        "assistant": "Calling the log tool.",
        "arguments": '{"path": "app.log"}',
        "tool": "all good",
        "second_user": "Thanks, now the next one.",
    }
    parts[secret_at] = f"{parts[secret_at]} {secret}"
    return [
        {"role": "system", "content": parts["system"]},
        {"role": "user", "content": [{"type": "text", "text": parts["user"]}]},
        {
            "role": "assistant",
            "content": parts["assistant"],
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_log", "arguments": parts["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": parts["tool"]},
        {"role": "user", "content": parts["second_user"]},
    ]


@pytest.mark.parametrize(
    "where", ["system", "user", "assistant", "arguments", "tool", "second_user"]
)
def test_every_message_part_and_turn_counts(classifier: Classifier, where: str) -> None:
    messages = _conversation(where, "key: sk-proj-abcdefghijklmnopqrstuvwx123")
    result = classifier.classify(message_texts(messages))
    assert result.level == "restricted"
    assert result.rules == ("secret.openai-key",)


def test_rules_are_named_but_values_never_reported(classifier: Classifier) -> None:
    result = classifier.classify([SENSITIVE["secret.openai-key"], SENSITIVE["personal.email"]])
    assert result.rules == ("personal.email", "secret.openai-key")
    assert "sk-proj" not in repr(result)
    assert "example.org" not in repr(result)


def test_a_declared_level_raises_but_never_lowers(classifier: Classifier) -> None:
    assert classifier.classify(["hello"], declared="confidential").level == "confidential"
    lowered = classifier.classify([SENSITIVE["personal.email"]], declared="public")
    assert lowered.level == "confidential"
    assert lowered.declared == "public"
    with pytest.raises(GitgwError, match="unknown trust level 'secret'"):
        classifier.classify(["hello"], declared="secret")


def test_custom_rules_by_pattern_and_keyword() -> None:
    config = TrustConfig(
        default_level="public",
        rules=[
            TrustRule(name="customer-id", level="confidential", pattern=r"CUST-\d{6}"),
            TrustRule(name="falcon", level="restricted", keywords=["Project Falcon"]),
        ],
    )
    classifier = Classifier(config)
    assert classifier.classify(["ticket for CUST-123456"]).rules == ("custom.customer-id",)
    falcon = classifier.classify(["status of project falcon?"])
    assert falcon.level == "restricted"
    assert falcon.rules == ("custom.falcon",)
    assert classifier.classify(["nothing here"]).level == "public"


def test_an_invalid_custom_pattern_is_a_clear_error() -> None:
    config = TrustConfig(rules=[TrustRule(name="broken", level="internal", pattern="([a-z")])
    with pytest.raises(GitgwError, match="trust rule 'broken' has an invalid pattern"):
        Classifier(config)


def test_patterns_do_not_match_across_message_boundaries(classifier: Classifier) -> None:
    # "4111 1111" + "1111 1111" would be a card number if the parts ran together.
    assert classifier.classify(["4111 1111", "1111 1111"]).rules == ()


# -- the cheap pre-checks never skip a detector -----------------------------------------
# Each detector runs only when a byte every match holds occurs (K, J, @, : or =), or a run
# of 15 token characters, or (for digits) four digits or more: these texts sit on those
# edges, at the ends of texts and next to non-ASCII text.

GITHUB_PAT = "github_pat_" + "A1b2C3d4E5" * 6


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("secret.slack-token", "xoxb-1234567890"),  # the shortest: a run of exactly 15
        ("secret.github-token", GITHUB_PAT),  # missed before: its trigger never matched
        ("secret.github-token", "github_pat_" + "é" * 60),  # \w: no ASCII run at all
        ("secret.aws-access-key", "é AKIAIOSFODNN7EXAMPLE é"),
        ("secret.private-key", "-----BEGIN PRIVATE KEY-----"),
        ("secret.jwt", "eyJabcdefgh.eyJabcdefgh.abcdefgh"),
        ("secret.url-credentials", "https://u:p@h"),
        ("secret.assignment", "PASSWORD=hunter2hunter2"),
        ("secret.assignment", "Api-Key : 'abcdefghij'"),
        ("secret.assignment", "naïve access_token=abcdefgh"),
        ("personal.email", "a@b.cd"),
        ("personal.ipv4", "1.2.3.4"),  # four digits: the fewest anything but an IBAN has
        ("personal.ipv6", "fe80:0:0:0:0:0:0:1"),
        ("personal.ipv6", "dead:beef:cafe:babe:dead:beef:cafe:babe"),  # no digit at all
        ("personal.iban", "GB83WESTABCDEFGHIJ"),  # an IBAN with only two digits
        ("personal.iban", "pay GB67 ABCD EFGH IJKL MN, ref 9"),  # three digits
        ("personal.iban", "IBAN: GB67 ABCD EFGH IJKL MN — danke schön"),
    ],
)
def test_detectors_fire_at_the_edges_of_their_pre_checks(
    classifier: Classifier, rule: str, text: str
) -> None:
    assert classifier.classify([text]).rules == (rule,)
    assert classifier.classify(["ünïcödé prose first", text]).rules == (rule,)
    assert classifier.classify(message_texts([{"role": "tool", "content": text}])).rules == (rule,)


@pytest.mark.parametrize(
    "text",
    [
        "xoxb-123456789",  # one character short of a Slack token
        "gb83WESTABCDEFGHIJ",  # lower-case country code: no IBAN
        "GB84WESTABCDEFGHIJ",  # wrong check digits
        "id call_1 and call_2",
        "token: short",
        "fe80:0:0:0:0:0:1",  # seven groups
    ],
)
def test_near_misses_stay_at_the_default(classifier: Classifier, text: str) -> None:
    assert classifier.classify([text]).rules == ()


@pytest.mark.parametrize(("rule", "text"), SENSITIVE.items())
def test_detectors_fire_wherever_the_value_sits(
    classifier: Classifier, rule: str, text: str
) -> None:
    contexts = [
        [text],
        ["x" * 4000 + "\n" + text],  # at the end of a long text
        [text + "\n" + "Ünïcödé " * 500],  # before a long non-ASCII one
        ["a short system prompt", "def f(x):\n    return x", text],  # a later part
    ]
    for texts in contexts:
        assert rule in classifier.classify(texts).rules, texts


def test_digits_and_tokens_do_not_join_across_message_boundaries(
    classifier: Classifier,
) -> None:
    # "GB83" + "WESTABCDEFGHIJ" is an IBAN only when the parts run together, and each part
    # of "xoxb-12345" + "67890" is shorter than a Slack token.
    assert classifier.classify(["GB83", "WESTABCDEFGHIJ"]).rules == ()
    assert classifier.classify(["xoxb-12345", "67890"]).rules == ()
    assert classifier.classify(["fe80:0:0:0", "0:0:0:1"]).rules == ()


def test_a_coding_conversation_is_at_the_default(classifier: Classifier) -> None:
    code = "def merge(base, ours, theirs):\n    result = dict(base)\n    return result\n"
    messages = [
        {"role": "system", "content": "You are a careful reviewer of Python code."},
        {"role": "user", "content": "Review this function:\n" + code},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "merge.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": code * 20},
        {"role": "user", "content": "Also explain the complexity, please." + " Thanks!" * 100},
    ]
    result = classifier.classify(message_texts(messages))
    assert result == classifier.classify(message_texts(messages))
    assert (result.level, result.rules, result.declared) == ("internal", (), None)
    declared = classifier.classify(message_texts(messages), declared="confidential")
    assert (declared.level, declared.declared) == ("confidential", "confidential")


def test_message_texts_takes_every_string_key_and_number_but_standard_roles() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "a", "name": "b"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "c"}, ["d", 7, None, True, {"role": "x"}]],
        },
        {"role": "tool", "content": None, "tool_call_id": "e", "extra": 12345678, "n": 7},
    ]
    # The chat format's own keys ("role", "content", "n") and small numbers are minor
    # text, which only custom rules read; the rest is for every detector.
    texts = request_texts(messages)
    assert texts.main == ["a", "b", "text", "c", "d", "x", "e", "extra", "12345678"]
    assert texts.minor == [
        "content", "name", "content", "type", "text", "7", "role", "content", "tool_call_id",
        "n", "7",
    ]  # fmt: skip
    assert list(message_texts(messages)) == texts.main + texts.minor
    assert list(message_texts(["plain", {"role": "user"}])) == ["plain"]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"tools": [{"function": {"parameters": {"properties": {"role": {
            "description": "use ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"}}}}}]},
         "secret.github-token"),
        ({"messages": [{"role": "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "content": "hi"}]},
         "secret.github-token"),
        ({"metadata": {"ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5": "x"}}, "secret.github-token"),
        ({"metadata": {"card": 4111111111111111}}, "personal.payment-card"),
        ({"metadata": {"card": 4111111111111111.0}}, "personal.payment-card"),
    ],
    ids=["under a key named role", "as a role", "as a key", "as a number", "as a float"],
)  # fmt: skip
def test_a_value_is_classified_wherever_and_however_it_is_sent(
    classifier: Classifier, body: dict[str, Any], rule: str
) -> None:
    assert rule in classifier.classify(message_texts((body,))).rules


def test_the_formats_own_field_names_and_small_numbers_are_not_text(
    classifier: Classifier,
) -> None:
    schema = {"type": "object", "properties": {"account_token": {"type": "string"}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096, "tools": [tool]}
    texts = request_texts((body,))
    assert texts.main == ["hi", "function", "f", "object", "account_token", "string"]
    assert classifier.classify(texts.main, None, texts.minor).rules == ()


def test_custom_rules_read_the_formats_own_keys_and_small_numbers_too() -> None:
    rules = [
        TrustRule(name="employee-ids", level="restricted", pattern=r"\b10[0-9]{4}\b"),
        TrustRule(name="voice-data", level="confidential", keywords=["voice"]),
    ]
    classifier = Classifier(TrustConfig(rules=rules))
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"voice": "x"},
            "response_format": {"type": "json_schema", "json_schema": {"schema": {
                "type": "integer", "enum": [104233]}}}}  # fmt: skip
    texts = request_texts((body,))
    result = classifier.classify(texts.main, None, texts.minor)
    assert result.rules == ("custom.employee-ids", "custom.voice-data")


def test_a_body_nested_too_deeply_is_refused_not_classified() -> None:
    value: Any = "x"
    for _ in range(MAX_DEPTH):
        value = [value]
    assert list(message_texts(({"a": value},))) == ["a", "x"]  # the limit itself is fine
    with pytest.raises(GitgwError, match="more than 200 levels deep"):
        message_texts(({"a": [value]},))
