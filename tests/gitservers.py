"""Real Git servers on loopback: `git daemon` and `git http-backend` (smart HTTP).

Each fixture yields a `GitServer` that makes bare repositories on the server and says
how clients reach them. Both run C git's own receive-pack, so server-side hooks and
git's compare-and-swap of refs behave as on a real forge. Servers listen on 127.0.0.1
only and stop when the fixture ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import pytest

__all__ = ["GitServer", "git_daemon", "git_http", "git_server", "unused_port"]

START_TIMEOUT = 10.0
IO_TIMEOUT = 30.0
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class GitServer:
    """A running Git server: where it keeps its repositories and how to reach them."""

    kind: str  # "daemon" or "http"
    root: Path
    base_url: str

    def create(self, name: str = "state.git") -> str:
        """Make an empty bare repository `name` on the server and return its URL."""
        path = self.path(name)
        _git("init", "--quiet", "--bare", str(path))
        # http-backend refuses pushes unless this is set (or the user is authenticated).
        _git("-C", str(path), "config", "http.receivepack", "true")
        return self.url(name)

    def path(self, name: str = "state.git") -> Path:
        """Where the bare repository `name` lives on disk."""
        return self.root / name

    def url(self, name: str = "state.git") -> str:
        """The URL clients use for the repository `name`."""
        return f"{self.base_url}/{name}"


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True, timeout=IO_TIMEOUT)


def unused_port() -> int:
    """A loopback TCP port nothing listens on (the kernel just handed it out and took it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"git daemon exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"git daemon did not listen on port {port}") from None
            time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # The daemon serves each connection in a child of its own session: end them all.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=START_TIMEOUT)


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[GitServer]:
    """`git daemon` serving git:// with pushes enabled, on a free loopback port."""
    root = tmp_path / "daemon-root"
    root.mkdir()
    log = tmp_path / "git-daemon.log"
    for _ in range(3):  # another process may take the free port before the daemon does
        port = unused_port()
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", f"--base-path={root}", "--export-all",
                 "--enable=receive-pack", "--listen=127.0.0.1", f"--port={port}",
                 "--init-timeout=10", "--timeout=30", "--informative-errors"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
                start_new_session=True,
            )  # fmt: skip
        try:
            _wait_for_port(port, process, log)
        except RuntimeError:
            _stop(process)
            continue
        try:
            yield GitServer("daemon", root, f"git://127.0.0.1:{port}")
        finally:
            _stop(process)
        return
    raise RuntimeError(f"git daemon would not start:\n{log.read_text()}")


class _GitHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that hands every request to `git http-backend`."""

    daemon_threads = True

    def __init__(self, root: Path, log: IO[bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _CGIHandler)
        self.root = root
        self.log = log


class _CGIHandler(BaseHTTPRequestHandler):
    """A minimal CGI/1.1 gateway to `git http-backend`, streaming both directions."""

    server: _GitHTTPServer
    timeout = IO_TIMEOUT  # socket timeout: a stuck client cannot hold a thread forever

    def do_GET(self) -> None:
        """Serve ref advertisements (`info/refs`)."""
        self._run_backend()

    def do_POST(self) -> None:
        """Serve upload-pack and receive-pack exchanges."""
        self._run_backend()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines out of the test output."""

    def _environment(self) -> dict[str, str]:
        url = urlsplit(self.path)
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "gitgw-test",
            "REMOTE_ADDR": self.client_address[0],
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": self.request_version,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(url.path),
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                env[key] = value  # e.g. Git-Protocol and Content-Encoding, which git reads
        length = self.headers.get("Content-Length")
        if length is not None:
            env["CONTENT_LENGTH"] = length
        return env

    def _run_backend(self) -> None:
        process = subprocess.Popen(
            ["git", "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.server.log,
            env=self._environment(),
        )
        assert process.stdin is not None
        assert process.stdout is not None
        # Feed the body from another thread, so a backend that answers before it has read
        # everything cannot deadlock against us.
        feeder = threading.Thread(target=self._feed, args=(process.stdin,), daemon=True)
        feeder.start()
        try:
            self._relay(process.stdout)
        finally:
            feeder.join(IO_TIMEOUT)
            process.stdout.close()
            try:
                process.wait(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=IO_TIMEOUT)

    def _feed(self, sink: IO[bytes]) -> None:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    sink.write(self.rfile.read(size))
                    self.rfile.readline()  # the CRLF after each chunk
                while self.rfile.readline().strip():
                    pass  # trailers
            else:
                remaining = int(self.headers.get("Content-Length") or 0)
                while remaining > 0 and (block := self.rfile.read(min(remaining, 65536))):
                    sink.write(block)
                    remaining -= len(block)
        except (OSError, ValueError):
            pass  # the backend stopped reading or the client went away; the answer says why
        finally:
            with contextlib.suppress(OSError):
                sink.close()

    def _relay(self, source: IO[bytes]) -> None:
        status, headers = 200, []
        while (line := source.readline()).strip():
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "status":
                status = int(value.split()[0])  # CGI's "Status: 403 Forbidden"
            else:
                headers.append((name.strip(), value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        # HTTP/1.0: the body ends when the connection closes, so stream it as it comes.
        read = getattr(source, "read1", source.read)
        while block := read(65536):
            self.wfile.write(block)
        self.wfile.flush()


@pytest.fixture
def git_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitServer]:
    """`git http-backend` behind a loopback HTTP server, with pushes enabled."""
    for name in _PROXY_VARIABLES:  # a proxy from outside must not see loopback traffic
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    root = tmp_path / "http-root"
    root.mkdir()
    with (tmp_path / "http-backend.log").open("wb") as log:
        server = _GitHTTPServer(root, log)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield GitServer("http", root, f"http://127.0.0.1:{server.server_address[1]}")
        finally:
            server.shutdown()
            server.server_close()
            thread.join(IO_TIMEOUT)


@pytest.fixture(params=["daemon", "http"])
def git_server(request: pytest.FixtureRequest) -> GitServer:
    """Each real Git server in turn: `git daemon` (git://) and `git http-backend` (http://)."""
    server = request.getfixturevalue(f"git_{request.param}")
    assert isinstance(server, GitServer)
    return server
