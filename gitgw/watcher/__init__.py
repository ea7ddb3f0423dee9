"""Watching a branch's ref move: the only package that imports watchdog.

`RefWatcher` asks the operating system (inotify, FSEvents, kqueue, ReadDirectoryChangesW
through watchdog) to report changes to `refs/heads/` and to the repository directory
itself, and calls `on_change()` when the followed branch's loose ref or `packed-refs` is
written. Git and dulwich both write a ref as `<ref>.lock` and rename it into place, so
the rename is the moment the branch moved; a commit, a `git push` into the repository, a
fetch and a merge all end that way. Nothing reads file contents: the callback only says
"look again", and the daemon's engine reads the ref.

Events come on watchdog's thread; `on_change` must be cheap and thread-safe (the daemon
passes one that wakes its engine thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

__all__ = ["RefWatcher"]


class _Handler(FileSystemEventHandler):
    def __init__(self, targets: frozenset[str], on_change: Callable[[], None]) -> None:
        self._targets = targets
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(raw) if raw else ""
            if path and os.path.normpath(path) in self._targets:
                self._on_change()
                return


class RefWatcher:
    """Calls `on_change` whenever `refs/heads/<branch>` or `packed-refs` changes."""

    def __init__(self, common_dir: Path, branch: str, on_change: Callable[[], None]) -> None:
        self.common_dir = common_dir
        self.heads = common_dir / "refs" / "heads"
        ref = self.heads.joinpath(*branch.split("/"))
        targets = frozenset(os.path.normpath(p) for p in (ref, common_dir / "packed-refs"))
        self._handler = _Handler(targets, on_change)
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        """Start watching (returns at once; events arrive on watchdog's thread)."""
        observer = Observer()
        observer.schedule(self._handler, str(self.common_dir), recursive=False)
        self.heads.mkdir(parents=True, exist_ok=True)
        observer.schedule(self._handler, str(self.heads), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        """Stop watching and wait for watchdog's thread to end."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
