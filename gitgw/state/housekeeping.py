"""Keeping a busy branch's object store small: git's automatic gc, run as git runs it.

git runs `git gc --auto` after its own commits; gitgw writes objects itself, one loose
file each, so nothing ever packs them. That matters because a commit rewrites every
tree on its path whole: a directory that gains a file at every commit (a day of a busy
proxy's receipt batches, two a second) is written again at its full size each time, and
the day's loose objects grow with the square of its commits. 2,000 commits into one
directory took 158 MB of loose objects, which `git gc` packed into 1.1 MB (a tree's
successive versions become small deltas of each other).

So a long-running writer (the batching writer behind the proxy and the daemon) has git
pack them on a thread of its own after every few thousand objects it writes, or every
64 MB: `git repack -d -l` (what `gc --auto` runs when it finds many loose objects), then
`git gc --auto` (which merges packs once there are many).
git's own rules then apply: nothing is removed but loose objects now in a pack (and, by
`gc`, unreachable objects older than two weeks), the repository's `gc.*` settings are
honoured, and `gc.auto = 0` turns it all off.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

__all__ = ["LOOSE_OBJECTS", "Housekeeper"]

log = logging.getLogger(__name__)

LOOSE_OBJECTS = 2_000  # objects written before git packs them
LOOSE_BYTES = 64 << 20  # or bytes: late in a busy day, a few commits' wide trees
_GC_TIMEOUT_S = 600.0


class Housekeeper:
    """Has git pack the repository at `git_dir` after every `every` objects written."""

    def __init__(self, git_dir: Path, every: int = LOOSE_OBJECTS) -> None:
        self._git_dir = git_dir
        self._every = every
        self._pending = 0
        self._pending_bytes = 0
        self._thread: threading.Thread | None = None
        self.runs = 0  # times git was asked to pack (whether or not it had anything to)

    def written(self, objects: int, size: int) -> None:
        """Count `objects` new loose objects of `size` bytes in all; start a gc once there
        are enough, or they take enough room, and none is running."""
        self._pending += objects
        self._pending_bytes += size
        if (self._pending < self._every and self._pending_bytes < LOOSE_BYTES) or self.running:
            return
        self._pending = self._pending_bytes = 0
        self._thread = threading.Thread(target=self._gc, name="gitgw-housekeeping", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether git is packing now."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for git to finish packing, if it is."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _gc(self) -> None:
        git = shutil.which("git")
        if git is None:
            log.warning("git is not installed: the state branch's loose objects are not packed")
            return
        where = [git, f"--git-dir={self._git_dir}"]
        setting = subprocess.run(
            [*where, "config", "--get", "gc.auto"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if setting == "0":
            return  # the repository's owner turned automatic gc off
        # Pack the loose objects (git's own --auto guesses their number from one of 256
        # fan-out directories, too few on a small store), then let `gc --auto` merge
        # packs once there are many and do the rest of its housekeeping.
        if _run([*where, "repack", "-d", "-l", "-q"]):
            _run([*where, "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"])
        self.runs += 1


def _run(argv: list[str]) -> bool:
    # In a session of its own, so that a command over its time stops with its children.
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, errors = process.communicate(timeout=_GC_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.communicate()
        log.warning("%s ran for over %.0f s and was stopped", " ".join(argv[2:]), _GC_TIMEOUT_S)
        return False
    if process.returncode != 0:
        log.warning("%s failed: %s", " ".join(argv[2:]), errors.strip()[-500:])
        return False
    return True
