"""Trust classification: how sensitive is a request, and which rules say so.

A request's level is the highest of: what its content triggers (secrets → restricted,
personal data → confidential, custom rules → their level), what the client declares
(which may raise the level, never lower it), and the configured default. Every part of
every message counts: system, user, assistant, tool calls and tool results.

Classification runs on the request path, so it is built for speed. Python's regular
expressions are fast when a pattern starts with a literal and slow when it starts with
a character class (every position is tried), and every pass over the text costs about as
much as another. So each secret detector is anchored on a literal and runs only when that
literal occurs in the text, and before even that only when a byte every match contains
occurs (found at memchr speed) or, for token-shaped secrets, a run of at least 15 token
characters (most prose and code has none); personal data made of digits
(payment cards, phone numbers, IP addresses, US social security numbers, IBANs) shares
one scan for digit runs whose few candidates are then checked in Python (Luhn, IBAN
mod 97, ranges), skipped when the text has fewer than four digits (then only an IBAN is
possible, and looked for where the digits are); and high-entropy tokens are looked for
only in long whitespace-separated words. Results carry rule names, never the matched
values.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gitgw.concepts.context import STANDARD_ROLES
from gitgw.errors import GitgwError
from gitgw.records import LEVELS, Level, level_rank
from gitgw.records.config import TrustConfig

__all__ = ["MAX_DEPTH", "Classification", "Classifier", "Texts", "message_texts", "request_texts"]

RESTRICTED: Level = "restricted"
CONFIDENTIAL: Level = "confidential"


@dataclass(frozen=True)
class _Literal:
    """A detector that can only match where one of its trigger strings occurs.

    A trigger is a string looked for with `in`, or (written `re:...`) a small regular
    expression starting with a literal, which finds any of several related triggers
    in one pass (`gh[pousr]_` costs what one `in` costs, not five). Before the triggers,
    `needs` is checked, which costs far less: bytes one of which every match contains
    (each looked for at memchr speed, as an int), or none, when every match in ASCII text
    is a run of at least 15 token characters (`_RUN`) and, unless `unicode`, in any text.
    """

    name: str
    level: Level
    needs: tuple[int, ...]
    triggers: tuple[bytes | re.Pattern[bytes], ...]
    pattern: re.Pattern[str]
    lowercase: bool = False  # triggers and pattern apply to the lower-cased text
    unicode: bool = False  # the pattern matches non-ASCII letters too (`\w`)

    def triggered(self, haystack: bytes) -> bool:
        """Whether one of the triggers occurs in `haystack`."""
        for trigger in self.triggers:
            if _has(haystack, trigger) if isinstance(trigger, bytes) else trigger.search(haystack):
                return True
        return False


def _lit(
    name: str,
    level: Level,
    needs: str,
    triggers: tuple[str, ...],
    pattern: str,
    *,
    lowercase: bool = False,
    unicode: bool = False,
) -> _Literal:
    encoded = tuple(
        re.compile(t[3:].encode()) if t.startswith("re:") else t.encode() for t in triggers
    )
    needed = tuple(needs.encode())
    return _Literal(name, level, needed, encoded, re.compile(pattern), lowercase, unicode)


def _has(haystack: bytes, needle: bytes) -> bool:
    """Whether `needle` occurs in `haystack`, for a fraction of what `in` costs.

    `needle in haystack` first tries the needle as an int and builds and discards a
    TypeError, which costs as much as searching 1 KB; `partition` returns its argument
    unchanged, with an empty separator, when the needle is absent.
    """
    return bool(haystack.partition(needle)[1])


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


_HEX = re.compile(r"[0-9a-fA-F]+")


def _random_token(token: str) -> bool:
    # Mixed-alphabet, high-entropy tokens. Pure hex (commit ids, digests) is left out:
    # those fill code conversations and are not credentials.
    if _HEX.fullmatch(token.rstrip("=")):
        return False
    return (
        any(c.islower() for c in token)
        and any(c.isupper() for c in token)
        and any(c.isdigit() for c in token)
        and _entropy(token) >= 4.5
    )


# `needs` is "" where every match is a run of 15 or more ASCII token characters.
LITERAL_DETECTORS: tuple[_Literal, ...] = (
    _lit(
        "secret.private-key",
        RESTRICTED,
        "K",
        ("PRIVATE KEY",),
        r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----",
    ),
    _lit(
        "secret.aws-access-key",
        RESTRICTED,
        "",
        ("re:AKIA|ASIA",),
        r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])",
    ),
    # Two detectors under one name, so that each has a trigger of its own.
    _lit("secret.github-token", RESTRICTED, "", ("re:gh[pousr]_",), r"gh[pousr]_[A-Za-z0-9]{36,}"),
    _lit(
        "secret.github-token",
        RESTRICTED,
        "",
        ("github_pat_",),
        r"github_pat_\w{60,}",
        unicode=True,
    ),
    _lit("secret.anthropic-key", RESTRICTED, "", ("sk-",), r"sk-ant-[A-Za-z0-9_-]{20,}"),
    _lit(
        "secret.openai-key",
        RESTRICTED,
        "",
        ("sk-",),
        r"sk-(?!ant-)(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}",
    ),
    _lit("secret.slack-token", RESTRICTED, "", ("xox",), r"xox[abprs]-[A-Za-z0-9-]{10,}"),
    _lit("secret.google-api-key", RESTRICTED, "", ("AIza",), r"AIza[0-9A-Za-z_-]{35}"),
    _lit("secret.stripe-key", RESTRICTED, "", ("_live_",), r"[rs]k_live_[0-9A-Za-z]{20,}"),
    _lit(
        "secret.jwt",
        RESTRICTED,
        "J",
        ("eyJ",),
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    _lit("secret.url-credentials", RESTRICTED, "@", ("://",), r"://[^\s:/@]+:[^\s@/]+@[^\s/]+"),
    _lit(
        "secret.assignment",
        RESTRICTED,
        ":=",  # lower-casing never makes or removes either
        ("passw", "secret", "re:api[_-]?key", "token"),
        r"(?:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)"
        r"[\"']?\s*[:=]\s*[\"']?[^\s\"']{8,}",
        lowercase=True,
    ),
    _lit(
        "personal.email",
        CONFIDENTIAL,
        "@",
        ("@",),
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    ),
)


_Group = tuple[tuple[int, ...], bool, tuple[_Literal, ...]]


def _grouped(detectors: tuple[_Literal, ...]) -> tuple[_Group, ...]:
    # Detectors with the same needs share one check of them.
    groups: dict[tuple[tuple[int, ...], bool], list[_Literal]] = {}
    for detector in detectors:
        groups.setdefault((detector.needs, detector.unicode), []).append(detector)
    return tuple((needs, unicode, tuple(group)) for (needs, unicode), group in groups.items())


_GROUPS = _grouped(LITERAL_DETECTORS)

# Python's regular expressions are fast only where a pattern starts with a literal. So
# the text is encoded once and translated (a table lookup in C) into "shapes" in which
# every digit is 0, every upper-case letter A, every token character a: digit runs, IBAN
# starts and long tokens then begin with a literal and are found at memchr speed.
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
_TOKEN_CHARS = bytes(
    97 if chr(i).isascii() and (chr(i).isalnum() or chr(i) in "+/_=-") else 32 for i in range(256)
)
_RUN = b"a" * 15  # the shortest token-shaped secret: xoxb- and 10 more
_ENTROPY_RUN = b"a" * 32
_DIGIT_RUN = re.compile(rb"0[0 .()/-]{5,}0")
_IBAN_START = re.compile(rb"AA00")
_LONG_TOKEN = re.compile(rb"a{32,}")
_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_PHONE = re.compile(r"\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}")
_IBAN = re.compile(rb"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?")
_IPV6 = re.compile(r"(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}")
# What every IPv6 address holds from its first colon on, in a pattern that starts with a
# literal: one pass over the text, where `_IPV6` would try every position.
_IPV6_TAIL = re.compile(rb":(?<=[0-9a-fA-F]:)(?:[0-9a-fA-F]{1,4}:){6}[0-9a-fA-F]")
_COLON = ord(":")  # an int: memchr


def _luhn(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        digit = int(char)
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban(text: str) -> bool:
    compact = text.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return len(compact) >= 15 and int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _numeric(raw: bytes, shape: bytes, found: set[str]) -> None:
    for match in _DIGIT_RUN.finditer(shape):
        start = match.start() - (1 if match.start() and raw[match.start() - 1] == 43 else 0)
        run = raw[start : match.end()].decode("ascii", "replace")
        digits = "".join(c for c in run if c.isdigit())
        if _luhn(digits) and not any(c in run for c in "./()"):
            found.add("personal.payment-card")
        if _SSN.search(run):
            found.add("personal.us-ssn")
        for ip in _IPV4.finditer(run):
            parts = [int(p) for p in ip.groups()]
            if all(p <= 255 for p in parts) and parts[0] not in (0, 127):
                found.add("personal.ipv4")
        if run.startswith("+") and _PHONE.match(run):
            found.add("personal.phone")
    if not _has(shape, _IBAN_START.pattern):
        return  # one quick pass, where finditer would be a slower one
    for match in _IBAN_START.finditer(shape):
        _iban_at(raw, match.start(), found)


def _iban_at(raw: bytes, start: int, found: set[str]) -> None:
    candidate = _IBAN.match(raw, start)
    if candidate and _iban(candidate.group().decode("ascii")):
        found.add("personal.iban")


_DIGITS = tuple((digit, bytes([digit])) for digit in b"0123456789")


def _few_digits(raw: bytes) -> list[int] | None:
    """Where the digits of `raw` are if it has fewer than four, else None.

    Looking for each digit at memchr speed costs a fraction of the shape translation and
    the scan for digit runs, and with fewer than four digits nothing but an IBAN can be
    there: a payment card has 13, an SSN 9, a phone number 6, an IPv4 address 4.
    """
    positions: list[int] = []
    for digit, separator in _DIGITS:
        if digit not in raw:
            continue
        rest, offset = raw, 0
        while digit in rest:
            if len(positions) == 3:
                return None
            head, _, rest = rest.partition(separator)
            offset += len(head)
            positions.append(offset)
            offset += 1
    return positions


def _few_digit_iban(raw: bytes, positions: list[int], found: set[str]) -> None:
    # An IBAN starts with two upper-case letters and two digits (`_IBAN_START`).
    for at in positions:
        letters = raw[at - 2 : at] if at >= 2 else b""
        if at + 1 in positions and letters.isalpha() and letters.isupper():
            _iban_at(raw, at - 2, found)


def _literals(text: str, raw: bytes, long_run: bool, found: set[str]) -> bytes | None:
    """Run the literal detectors whose needs `raw` meets; the lower-cased text if made."""
    lowered: bytes | None = None
    seen: dict[bytes, bool] = {}  # "sk-" opens two detectors: look for it once
    for needs, unicode, detectors in _GROUPS:
        if needs:
            for need in needs:
                if need in raw:
                    break
            else:
                continue
        elif not long_run and not (unicode and not text.isascii()):
            continue
        for detector in detectors:
            haystack = raw
            if detector.lowercase:
                haystack = lowered = raw.lower() if lowered is None else lowered
            first = detector.triggers[0]
            if isinstance(first, bytes) and len(detector.triggers) == 1:
                hit = seen.get(first)
                if hit is None:
                    hit = seen[first] = _has(haystack, first)
            else:
                hit = detector.triggered(haystack)
            if hit:
                subject = text.lower() if detector.lowercase else text
                if detector.pattern.search(subject):
                    found.add(detector.name)
    return lowered


@dataclass(frozen=True)
class Classification:
    """A request's level and the names of the rules that set it (never the values)."""

    level: Level
    rules: tuple[str, ...]
    declared: Level | None = None


# Deeper than this, a body is refused rather than classified: the recursion below and
# every encoder after it (receipts, the body sent upstream) would run out of stack.
MAX_DEPTH = 200
# The names of the chat format's own fields and of JSON Schema's: as keys they carry no
# data, and words like `max_tokens` would wake the keyword detectors for every request.
# Any other key (a tool's property names, metadata keys) is classified.
_FIELD_NAMES = frozenset(
    (  # noqa: SIM905 (a list literal of 84 names would take 84 lines)
        "messages role content name type text image_url url detail input_audio data format "
        "file file_id filename file_data refusal tool_calls tool_call_id id function "
        "arguments function_call functions tools tool_choice parallel_tool_calls parameters "
        "properties required description items enum additionalProperties strict max_tokens "
        "max_completion_tokens temperature top_p n stream stream_options include_usage stop "
        "presence_penalty frequency_penalty logit_bias logprobs top_logprobs response_format "
        "json_schema schema seed user metadata store service_tier reasoning_effort "
        "modalities audio voice prediction title default minimum maximum anyOf oneOf allOf "
        "const pattern minLength maxLength minItems maxItems nullable examples $ref $defs "
        "definitions cache_control"
    ).split()
)
# A number shorter than this has too few digits for any detector (a phone number has
# seven, a card thirteen): `max_tokens: 4096` does not wake the digit scan.
_BIG = 1_000_000


@dataclass(frozen=True)
class Texts:
    """The text in a request. `main` is what every detector reads; `minor` is the chat
    format's and JSON Schema's own key names and the numbers under seven digits, which
    only custom rules read: no built-in detector can match them, and words such as
    `max_tokens` would wake the keyword detector for every request."""

    main: list[str]
    minor: list[str]


def request_texts(messages: Iterable[Any]) -> Texts:
    """Every piece of text in OpenAI-shaped messages (or a whole request body): strings,
    object keys and numbers at any depth (content parts, tool calls and their arguments,
    tool results, tool schemas, metadata), whatever the role. Only a `role` that names
    one of the standard roles is left out; any other value of `role` is text like the
    rest. Raises `GitgwError` for objects and lists nested more than `MAX_DEPTH` deep."""
    texts = Texts([], [])
    for message in messages:
        _texts(message, texts.main, texts.minor, 0)
    return texts


def message_texts(messages: Iterable[Any]) -> Iterator[str]:
    """All of `request_texts`, main and minor, as one sequence."""
    texts = request_texts(messages)
    return iter(texts.main + texts.minor)


def _texts(value: Any, found: list[str], minor: list[str], depth: int) -> None:
    # A plain recursion into a list (nested generators cost a few microseconds a message)
    # that appends strings where it meets them: a call per string costs more than the test.
    if depth > MAX_DEPTH:
        raise GitgwError(
            f"the request nests objects and lists more than {MAX_DEPTH} levels deep",
            "send a flatter body",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "role" and isinstance(item, str) and item in STANDARD_ROLES:
                continue
            if isinstance(key, str):  # a tool schema's property names, metadata keys
                (minor if key in _FIELD_NAMES else found).append(key)
            if isinstance(item, str):
                found.append(item)
            else:
                _other(item, found, minor, depth)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                found.append(item)
            else:
                _other(item, found, minor, depth)
    elif isinstance(value, str):
        found.append(value)


def _other(item: Any, found: list[str], minor: list[str], depth: int) -> None:
    if isinstance(item, (dict, list)):
        _texts(item, found, minor, depth + 1)
    elif isinstance(item, (int, float)) and not isinstance(item, bool):
        if isinstance(item, float) and item.is_integer():  # a card sent as 4111…1.0
            item = int(item)
        (found if abs(item) >= _BIG else minor).append(repr(item))  # a card, a phone


@dataclass
class _Custom:
    name: str
    level: Level
    pattern: re.Pattern[str]
    keywords: tuple[bytes, ...] = field(default=())


class Classifier:
    """Built once per configuration; `classify` then scans each text once per family."""

    def __init__(self, config: TrustConfig) -> None:
        self.default: Level = config.default_level
        self._plain = Classification(self.default, ())  # most requests: nothing found
        self._custom: list[_Custom] = []
        for rule in config.rules:
            source = rule.pattern or "|".join(re.escape(k) for k in rule.keywords or ())
            try:
                compiled = re.compile(source, 0 if rule.pattern else re.IGNORECASE)
            except re.error as exc:
                raise GitgwError(
                    f"trust rule {rule.name!r} has an invalid pattern: {exc}",
                    "fix the regular expression in gitgw.yaml (trust.rules)",
                ) from None
            keywords = tuple(k.lower().encode() for k in rule.keywords or ())
            self._custom.append(_Custom(f"custom.{rule.name}", rule.level, compiled, keywords))

    def scan(self, text: str, minor: str = "") -> set[str]:
        """The names of the rules `text` triggers (custom rules read `minor` as well)."""
        found: set[str] = set()
        raw = text.encode("utf-8", "surrogatepass")
        tokens = raw.translate(_TOKEN_CHARS)
        long_run = _has(tokens, _RUN)
        lowered = _literals(text, raw, long_run, found)
        digits = _few_digits(raw)
        if digits is None:
            _numeric(raw, raw.translate(_SHAPE), found)
        elif len(digits) >= 2:
            _few_digit_iban(raw, digits, found)
        if _COLON in raw and _IPV6_TAIL.search(raw) and _IPV6.search(text):
            found.add("personal.ipv6")
        if long_run and _has(tokens, _ENTROPY_RUN):
            for match in _LONG_TOKEN.finditer(tokens):
                if _random_token(raw[match.start() : match.end()].decode("ascii")):
                    found.add("secret.high-entropy-token")
                    break
        if self._custom and minor:
            text = f"{text}\x00\n{minor}"
            raw, lowered = text.encode("utf-8", "surrogatepass"), None
        for rule in self._custom:
            if rule.keywords:
                if lowered is None:
                    lowered = raw.lower()
                if not any(_has(lowered, k) for k in rule.keywords):
                    continue
            if rule.pattern.search(text):
                found.add(rule.name)
        return found

    def classify(
        self, texts: Iterable[str], declared: str | None = None, minor: Iterable[str] = ()
    ) -> Classification:
        """The level of a request made of `texts` (and `minor`, which only custom rules
        read: see `Texts`), raised (never lowered) by `declared`."""
        # One scan over all parts: the separator (NUL, then a newline) ends every pattern.
        extra = "\x00\n".join(minor) if self._custom else ""  # only custom rules read it
        rules = self.scan("\x00\n".join(texts), extra)
        if not rules and declared is None:
            return self._plain
        rank = level_rank(self.default)
        for name in rules:
            rank = max(rank, level_rank(self._level_of(name)))
        declared_level: Level | None = None
        if declared is not None:
            if declared not in LEVELS:
                raise GitgwError(
                    f"unknown trust level {declared!r}", f"use one of: {', '.join(LEVELS)}"
                )
            declared_level = LEVELS[level_rank(declared)]  # type: ignore[assignment]
            rank = max(rank, level_rank(declared))
        return Classification(LEVELS[rank], tuple(sorted(rules)), declared_level)  # type: ignore[arg-type]

    def _level_of(self, rule: str) -> Level:
        if rule.startswith("secret."):
            return RESTRICTED
        if rule.startswith("personal."):
            return CONFIDENTIAL
        return next(c.level for c in self._custom if c.name == rule)
