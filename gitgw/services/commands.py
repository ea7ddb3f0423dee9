"""Running a command for a workflow step: a time limit, and nothing left behind.

The command runs in a process group of its own, with no standard input. Its standard
output is kept up to a limit (the step's output) and the end of its standard error (for
the step's error), read by two threads so a chatty command never blocks on a full pipe.
At its time limit the whole group is killed, and when the command ends whatever it
started and left running in its group is killed too: nothing a step started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from gitgw.errors import GitgwError

__all__ = ["Finished", "kill_running", "run_command"]

# The process groups of commands running now, so a stopping daemon can end them.
_RUNNING: set[int] = set()
_RUNNING_LOCK = threading.Lock()

_STDERR_TAIL = 4 * 1024  # the end of a command's stderr kept for its error
_REAP_S = 5.0  # how long to wait for a killed command's pipes to close


class _Capture(threading.Thread):
    """Reads one pipe to its end, keeping its first `head` bytes or its last `tail`."""

    def __init__(self, pipe: IO[bytes], *, head: int = 0, tail: int = 0) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.head, self.tail = head, tail
        self.data = bytearray()
        self.total = 0

    def run(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            if self.head:
                room = self.head - len(self.data)
                if room > 0:
                    self.data += chunk[:room]
            else:
                self.data += chunk
                if len(self.data) > self.tail:
                    del self.data[: len(self.data) - self.tail]


@dataclass
class Finished:
    """How a command ended, and what it wrote."""

    code: int
    timed_out: bool
    stdout: _Capture
    stderr: _Capture

    def output(self) -> str:
        text = bytes(self.stdout.data).decode("utf-8", "replace")
        if self.stdout.total > len(self.stdout.data):
            text += (
                f"\n[output truncated: {self.stdout.total} bytes in all, the first "
                f"{len(self.stdout.data)} kept]"
            )
        return text

    def stderr_tail(self) -> str:
        text = bytes(self.stderr.data).decode("utf-8", "replace").strip()
        lines = text.splitlines()[-20:]
        return ("…" if len(lines) < len(text.splitlines()) else "") + "\n".join(lines)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_command(
    command: str | list[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    *,
    output_limit: int = 64 * 1024,
) -> Finished:
    """Run `command` in a process group of its own; kill the whole group at `timeout`
    (and whatever it left running when it ends)."""
    try:
        process = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        program = command if isinstance(command, str) else command[0]
        raise GitgwError(f"no such program: {program}") from None
    except PermissionError:
        program = command if isinstance(command, str) else command[0]
        raise GitgwError(f"cannot execute {program}: permission denied") from None
    assert process.stdout is not None
    assert process.stderr is not None
    stdout = _Capture(process.stdout, head=output_limit)
    stderr = _Capture(process.stderr, tail=_STDERR_TAIL)
    stdout.start()
    stderr.start()
    with _RUNNING_LOCK:
        _RUNNING.add(process.pid)
    try:
        timed_out = not _exited(process.pid, timeout)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process.pid)
        # The leader has exited (or is to be killed) but is not reaped yet, so its group
        # id cannot be reused: kill the whole group, then reap it. Nothing a command
        # started outlives its step.
        _kill_group(process.pid)
        code = process.wait()
        for capture in (stdout, stderr):
            capture.join(_REAP_S)
            if not capture.is_alive():  # else a process that left the group holds it
                capture.pipe.close()
    return Finished(code, timed_out, stdout, stderr)


def _exited(pid: int, timeout: float) -> bool:
    """Wait until process `pid` exits, without reaping it; False at `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
        except ChildProcessError:  # already reaped
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.05)


def kill_running() -> int:
    """Kill every command running now, with whatever it started; how many there were.

    Their steps fail as killed. A stopping daemon calls this once its grace period is
    over, so nothing a run started outlives gitgw.
    """
    with _RUNNING_LOCK:
        groups = list(_RUNNING)
    for pgid in groups:
        _kill_group(pgid)
    return len(groups)
