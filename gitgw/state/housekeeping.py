"""Keeping a busy branch's object store small: git's automatic gc, run as git runs it.

git runs `git gc --auto` after its own commits; gitgw writes objects itself, one loose
file each, so nothing ever packs them. That matters because a commit rewrites every
tree on its path whole: a directory that gains a file at every commit (a day of a busy
proxy's receipt batches, two a second) is written again at its full size each time, and
the day's loose objects grow with the square of its commits. 2,000 commits into one
directory took 158 MB of loose objects, which `git gc` packed into 1.1 MB (a tree's
successive versions become small deltas of each other).

So a long-running writer (the batching writer behind the proxy and the daemon) runs
`git gc --auto` on a thread of its own after every few thousand objects it writes, or
every 64 MB.
git's own rules then apply: a gc only packs loose objects (and merges packs once there
are many), never touches an object written in the last two weeks that no ref reaches
yet, honours the repository's `gc.*` settings, and `gc.auto = 0` turns it off.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path

__all__ = ["LOOSE_OBJECTS", "Housekeeper"]

log = logging.getLogger(__name__)

LOOSE_OBJECTS = 2_000  # objects written before the next `git gc --auto`
LOOSE_BYTES = 64 << 20  # or bytes: late in a busy day, a few commits' wide trees
_GC_TIMEOUT_S = 600.0


class Housekeeper:
    """Runs `git gc --auto` in the repository at `git_dir` after every `every` objects."""

    def __init__(self, git_dir: Path, every: int = LOOSE_OBJECTS) -> None:
        self._git_dir = git_dir
        self._every = every
        self._pending = 0
        self._pending_bytes = 0
        self._thread: threading.Thread | None = None
        self.runs = 0  # gc runs finished (with or without packing anything)

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
        """Whether a gc is running now."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a running gc to finish."""
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
        )
        if setting.stdout.strip() == "0":
            return  # the repository's owner turned automatic gc off
        # git estimates the loose objects from one of its 256 fan-out directories; with
        # this threshold any writer's few thousand objects are enough: the writer decides.
        argv = [*where, "-c", "gc.auto=256", "-c", "gc.autoDetach=false", "gc", "--auto", "-q"]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=_GC_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            log.warning("git gc --auto ran for over %.0f s and was stopped", _GC_TIMEOUT_S)
            return
        if done.returncode != 0:
            log.warning("git gc --auto failed: %s", done.stderr.strip()[-500:])
        self.runs += 1
