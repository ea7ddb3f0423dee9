"""The secrets guard: what it finds, what it leaves alone, and that it never shows a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitgw.concepts.checks import check_file
from gitgw.concepts.secrets import SecretFound, scan
from gitgw.records import HandoffEvent, MemoryNote, Run, render

EXAMPLE = Path(__file__).resolve().parent.parent / "example-repo"
NOTE = "memory/01M6KF0MBE8Q7482WMXWMZGGYY.md"

# Made-up values in the shapes the detectors know (none of them is a live credential).
# Assembled from parts so that no secret scanner flags this test file itself.
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
GITHUB_TOKEN = "ghp_" + "abcdefghijklmnopqrstuvwxyz" + "0123456789"
OPENAI_KEY = "sk-proj-" + "abcdefghijklmnopqrst" + "T3Blbk" + "FJ" + "abcdefghijklmnopqrst"
SLACK_TOKEN = "xoxb-" + "123456789012-1234567890123-" + "abcdefghijklmnopqrstuvwx"
PRIVATE_KEY = (
    "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEAx3k\n-----END RSA PRIVATE KEY-----"
)
RANDOM_B64 = "Zx8Qm2Lp9Rt4Vn7Kc1Hs6Wd3Jf5Gb0Ya"


def note(body: str) -> bytes:
    """A memory note file whose body is `body` (its front matter has 4 lines)."""
    return (
        '---\nschema_version: 1\nid: "01M6KF0MBE8Q7482WMXWMZGGYY"\ntitle: "t"\n---\n' + body
    ).encode()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (f"the deploy key:\n{PRIVATE_KEY}\n", "Private Key"),
        (f"use {AWS_KEY} for the bucket\n", "AWS Access Key"),
        (f"export OPENAI_API_KEY={OPENAI_KEY}\n", "OpenAI Token"),
        (f"token {GITHUB_TOKEN}\n", "GitHub Token"),
        (f"bot {SLACK_TOKEN}\n", "Slack Token"),
        ('db_password = "correct-horse-battery"\n', "Secret Keyword"),
        (f'seed: "{RANDOM_B64}"\n', "Base64 High Entropy String"),
    ],
)
def test_secrets_are_found_with_their_line_and_type(body: str, kind: str) -> None:
    findings = scan(NOTE, note("# Title\n\n" + body))
    assert kind in {f.kind for f in findings}
    line = 8 + (kind == "Private Key")  # 5 lines of front matter, 2 of heading; then body
    assert {f.line for f in findings if f.kind == kind} == {line}


def test_the_value_is_never_in_the_error() -> None:
    record = MemoryNote(
        id="01M6KF0MBE8Q7482WMXWMZGGYY", title="t", author="a",
        created="2026-11-04T14:22:09.774Z", updated="2026-11-04T14:22:09.774Z",
    )  # fmt: skip
    path, data = render(record, f"aws {AWS_KEY}\n{PRIVATE_KEY}\n")
    first = data.decode().splitlines().index(f"aws {AWS_KEY}") + 1
    with pytest.raises(SecretFound) as caught:
        check_file(path, data)
    text = str(caught.value)
    assert path in text
    assert f"line {first}: possible secret (AWS Access Key)" in text
    assert f"line {first + 1}: possible secret (Private Key)" in text
    assert AWS_KEY not in text
    assert "MIIEpAIBAAKCAQEAx3k" not in text


def test_a_secret_in_a_record_field_names_the_field() -> None:
    event = HandoffEvent(
        id="01M72EHSJXAE3K362EBQW7VTSN", handoff="01M72BN4RPD00B6JMKN1EPWCWX", kind="note",
        agent="codex", note=f"the key is {AWS_KEY}", created="2026-11-10T10:02:40.093Z",
    )  # fmt: skip
    path, data = render(event)
    findings = scan(path, data)
    assert [(f.line, f.kind, f.field) for f in findings] == [(6, "AWS Access Key", "note")]


@pytest.mark.parametrize(
    "body",
    [
        # gitgw's own identifiers: commit ids, digests, ULIDs, UUIDs, times
        'base "9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e" and "01M72EHSJXAE3K362EBQW7VTSN"\n',
        'digest "sha256:5340b9c9deefa028286dfb829899ada8ee35f037ad01cf7172eabbf73b62b2fe"\n',
        'uuid "3f2c4e1b-7a3d-4c8e-8f6a-2b4d1c3e5f7a" at "2026-11-10T09:12:04.118Z"\n',
        # prose about secrets is not a secret
        "The password is in the team vault, not here. Ask for the API key.\n",
        "api_key_env: OPENAI_API_KEY\n",
        'password = "${DB_PASSWORD}"\n',
        # detect-secrets' own opt-out, for a reviewed false positive
        f'seed: "{RANDOM_B64}"  # pragma: allowlist secret\n',
    ],
)
def test_what_is_not_a_secret(body: str) -> None:
    assert scan(NOTE, note(body)) == []


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(EXAMPLE).as_posix() for p in EXAMPLE.rglob("*") if p.is_file())
)
def test_the_example_state_has_no_false_positives(path: str) -> None:
    assert scan(path, (EXAMPLE / path).read_bytes()) == []


def test_a_hex_secret_under_a_secret_name_is_still_found() -> None:
    # Identifier-shaped values skip the entropy detectors, not the keyword context.
    body = 'api_key = "9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e"\n'
    assert [f.kind for f in scan(NOTE, note(body))] == ["Secret Keyword"]


def _workflow_run(key: str) -> tuple[str, bytes]:
    run = Run(
        id="01M8DD71K44DDMAAAAHWX0WRMH", kind="workflow", status="started", workflow="review",
        trigger={"event": "handoff", "key": key, "daemon": "01M8DD6Z3Q5K7N2B4C6D8E0F1G"},
        started="2026-11-27T02:16:47.000Z",
    )  # fmt: skip
    return render(run)


@pytest.mark.parametrize(
    "key",
    [
        # ULIDs that hold the letters PWD or KEY, once read as `pwd…: <password>`
        "handoff:01M8DD71K44DDMPWDSHWX0WRMH:01M8DD71K44DDMPWDSHWX0WRMJ",
        "handoff:01M8DD71K44DDMKEYSHWX0WRMH:created",
        "request:01M8DD71K44DDMPWDSHWX0WRMH",
        "commit:9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e",
        "gitea:3f2c4e1b-7a3d-4c8e-8f6a-2b4d1c3e5f7a",
        "schedule:2026-11-27T02:00:00.000Z",
    ],
)
def test_the_event_key_a_workflow_run_names_is_no_secret(key: str) -> None:
    assert scan(*_workflow_run(key)) == []


def test_a_secret_in_the_shape_of_an_event_key_is_still_found() -> None:
    findings = scan(*_workflow_run("handoff:01M8DD71K44DDMPWDSHWX0WRMH:hunter2hunter2hunter2"))
    assert [(f.kind, f.field) for f in findings] == [("Secret Keyword", "key")]


def test_a_long_line_is_scanned_whole() -> None:
    body = "x" * 10_000 + f" {AWS_KEY} " + "y" * 10_000 + "\n"
    assert [f.kind for f in scan(NOTE, note(body))] == ["AWS Access Key"]
