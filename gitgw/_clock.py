"""Time and identifiers, behind one seam that tests replace by injection.

Ids are ULIDs: 48 bits of milliseconds then 80 random bits, in Crockford base32, so ids
sort by creation time and two machines never produce the same one. Within one
millisecond a process increments the random part, so its own ids stay strictly ordered.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "SystemClock", "is_ulid", "ulid_time", "utc_now"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TO_BASE32 = str.maketrans(_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
_ULID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_RANDOM_MAX = (1 << 80) - 1


# Two characters (10 bits) per table lookup: the proxy makes an id per request, and a
# loop over 26 characters cost several microseconds. A ULID is 130 bits (the top two
# always 0), so 13 pairs, most significant first.
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def _encode_ulid(millis: int, random: int) -> str:
    value = (millis << 80) | random
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def is_ulid(text: str) -> bool:
    """Whether `text` is a well-formed ULID in canonical (upper-case) form."""
    return bool(_ULID_RE.match(text))


def ulid_time(ulid: str) -> datetime:
    """The UTC time encoded in a ULID's first ten characters."""
    if not is_ulid(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    # Crockford's digits mapped onto int()'s base-32 digits: one C call, not a loop.
    millis = int(ulid[:10].translate(_TO_BASE32), 32)
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def utc_now() -> datetime:
    """The current time in UTC, to the millisecond."""
    now = datetime.now(tz=UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Clock:
    """Gives the current time and new ULIDs; monotonic within one process."""

    def __init__(
        self,
        now: Callable[[], datetime] = utc_now,
        random_bits: Callable[[], int] | None = None,
    ) -> None:
        self._now = now
        self._random_bits = random_bits or (lambda: int.from_bytes(os.urandom(10), "big"))
        self._lock = threading.Lock()
        self._last_millis = -1
        self._last_random = 0

    def now(self) -> datetime:
        """The current time in UTC."""
        return self._now()

    def new_id(self, at: datetime | None = None) -> str:
        """A new ULID for `at` (default: now), strictly greater than this clock's last one."""
        millis = int((at or self._now()).timestamp() * 1000)
        with self._lock:
            if millis <= self._last_millis:
                millis = self._last_millis
                random = self._last_random + 1
                if random > _RANDOM_MAX:
                    millis, random = millis + 1, self._random_bits() >> 1
            else:
                random = self._random_bits() >> 1  # headroom so increments rarely carry
            self._last_millis, self._last_random = millis, random
        return _encode_ulid(millis, random)


class SystemClock(Clock):
    """The process-wide default clock."""


_default = SystemClock()


def default_clock() -> Clock:
    """The clock used when a caller injects none."""
    return _default


__all__ += ["default_clock"]
