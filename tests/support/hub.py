"""A real Hub-compatible server for the tests: olah in offline mode serving local git repositories,
plus a small fault-injecting HTTP proxy in front of it (Range, tokens, stalls, dropped connections).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .net import free_port
from .timing import scaled

_GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    out = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "core.quotepath=off", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


class MirrorRepos:
    """Git repositories laid out as olah's ``mirrors-path`` expects: ``models/<org>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def create(self, repo_id: str, files: Mapping[str, bytes | str | Path] | None = None, *, message: str = "init") -> str:
        repo = self.path(repo_id)
        repo.mkdir(parents=True)
        git(repo, "init", "-q")
        if files:
            return self.commit(repo_id, files, message=message)
        return ""

    def new(self, files: Mapping[str, bytes | str | Path] | None = None, *, prefix: str = "repo") -> tuple[str, str]:
        """A fresh repository ``org/<prefix>-<unique>`` with ``files`` committed on main: (repo_id, sha)."""
        import uuid

        repo_id = f"org/{prefix}-{uuid.uuid4().hex[:8]}"
        return repo_id, self.create(repo_id, files)

    def commit(self, repo_id: str, files: Mapping[str, bytes | str | Path], *, message: str = "update", branch: str | None = None) -> str:
        repo = self.path(repo_id)
        if branch:
            git(repo, "checkout", "-q", "-B", branch)
        for rel, data in files.items():
            dst = repo / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                shutil.copyfile(data, dst)
            else:
                dst.write_bytes(data.encode() if isinstance(data, str) else data)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", message)
        sha = git(repo, "rev-parse", "HEAD")
        if branch:
            git(repo, "checkout", "-q", "main")
        return sha

    def tag(self, repo_id: str, tag: str, rev: str = "HEAD") -> None:
        git(self.path(repo_id), "tag", tag, rev)


class OlahServer:
    """``olah`` started as a subprocess on a free loopback port, offline, mirroring ``repos``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.repos = MirrorRepos(workdir / "mirrors")
        self.repos.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        cfg = workdir / "olah.toml"
        cfg.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{workdir / "cache"}"\n'
            f'mirrors-path = ["{self.repos.root}"]\n'
            "[accessibility]\noffline = true\n"
        )
        self.log = open(workdir / "olah.out", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(cfg), "--log-path", str(workdir / "logs")],
            cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + scaled(60)  # olah imports FastAPI & co.: slow on a busy machine
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited: {(workdir / 'olah.out').read_text(errors='replace')[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/models/none/none/revision/main")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not start within {scaled(60):.0f} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
        self.log.close()


@dataclass
class Faults:
    """What the proxy does wrong. Path rules match a substring of the request path."""

    token: str | None = None
    gated: bool = False
    stall: dict[str, float] = field(default_factory=dict)  # path part -> seconds to hang before answering
    stall_times: dict[str, int] = field(default_factory=dict)  # path part -> how many requests hang (absent: all)
    drop: dict[str, tuple[int, int]] = field(default_factory=dict)  # path part -> (bytes sent before closing, times)
    delay: dict[str, float] = field(default_factory=dict)  # path part -> seconds to wait, then answer normally
    honour_range: bool = True
    fail: dict[str, tuple[int, int]] = field(default_factory=dict)  # path part -> (HTTP status, times)


@dataclass
class LogEntry:
    method: str
    path: str
    range: str | None
    status: int
    auth: str | None


class FaultProxy:
    """An HTTP proxy on loopback in front of olah that injects faults and serves byte ranges."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults = Faults()
        self.log: list[LogEntry] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_HEAD(self) -> None:
                proxy._handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def requests(self, method: str | None = None, path_part: str = "") -> list[LogEntry]:
        with self.lock:
            return [e for e in self.log if (method is None or e.method == method) and path_part in e.path]

    def _match(self, rules: Mapping[str, Any], path: str) -> str | None:
        for part in rules:
            if part == "*" or part in path:
                return part
        return None

    def _record(self, method: str, h: BaseHTTPRequestHandler, status: int) -> None:
        with self.lock:
            self.log.append(LogEntry(method, h.path, h.headers.get("Range"), status, h.headers.get("Authorization")))

    def _send(self, h: BaseHTTPRequestHandler, status: int, headers: Mapping[str, str], body: bytes, method: str, *, cut: int | None = None) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if method == "GET":
            try:
                h.wfile.write(body if cut is None else body[:cut])
                h.wfile.flush()
            except OSError:
                pass
        h.close_connection = True
        if cut is not None:
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        f = self.faults
        path = h.path
        part = self._match(f.stall, path)
        if part is not None:
            with self.lock:
                left = f.stall_times.get(part)
                if left is not None:
                    f.stall_times[part] = left - 1
            if left is None or left > 0:
                self._record(method, h, 0)
                self.release.wait(f.stall[part])
                h.close_connection = True
                return
        part = self._match(f.fail, path)
        if part is not None:
            with self.lock:
                status, times = f.fail[part]
                if times > 0:
                    f.fail[part] = (status, times - 1)
            if times > 0:
                self._record(method, h, status)
                self._send(h, status, {}, b'{"error":"injected failure"}', method)
                return
        part = self._match(f.delay, path)
        if part is not None:
            time.sleep(f.delay[part])
        if f.token is not None and h.headers.get("Authorization") != f"Bearer {f.token}":
            self._record(method, h, 401)
            self._send(h, 401, {"X-Error-Message": "Invalid credentials in Authorization header"}, b'{"error":"Invalid credentials in Authorization header"}', method)
            return
        if f.gated:
            self._record(method, h, 403)
            self._send(h, 403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this model is restricted"}, b'{"error":"gated"}', method)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=scaled(60))
        fwd = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "range", "accept-encoding", "connection", "authorization")}
        conn.request(method, path, headers=fwd)
        resp = conn.getresponse()
        body = resp.read()
        status = resp.status
        headers = {k: v for k, v in resp.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")}
        conn.close()
        if method == "HEAD":
            # olah answers HEAD with the file's length and no body; keep that length.
            length = resp.getheader("content-length") or "0"
            self._record(method, h, status)
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", length)
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            return
        rng = h.headers.get("Range")
        if rng and status == 200 and f.honour_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(body) - 1
                total = len(body)
                body = body[start : end + 1]
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
                status = 206
        cut = None
        part = self._match(f.drop, path)
        if part is not None and method == "GET" and status in (200, 206):
            with self.lock:
                after, times = f.drop[part]
                if times > 0:
                    f.drop[part] = (after, times - 1)
                    cut = after
        self._record(method, h, status)
        self._send(h, status, headers, body, method, cut=cut)


class Hub:
    """What a hub test needs: the repos, olah's endpoint and a fresh fault proxy's endpoint."""

    def __init__(self, olah: OlahServer, proxy: FaultProxy, tmp: Path) -> None:
        self.olah = olah
        self.repos: MirrorRepos = olah.repos
        self.proxy = proxy
        self.endpoint = proxy.endpoint
        self.download_dir = tmp / "hf-downloads"

    def new_repo(self, files: Mapping[str, Any] | None = None, *, prefix: str = "repo") -> tuple[str, str]:
        """A fresh repository ``org/<unique>`` with ``files`` committed on main; returns (repo_id, sha)."""
        return self.repos.new(files, prefix=prefix)
