"""The lock file `docground serve` keeps in its home (`server.json`: address, pid, start time), so that the
CLI run on the same home finds the server and goes through its API instead of opening the embedded store,
which admits one process. A file whose pid is dead, or whose address does not answer /healthz once the
server has had time to start, is stale: ignored by the CLI, replaced by the next server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

LOCK_FILE = "server.json"
STARTUP_GRACE_S = 180.0  # a live server may not answer yet while it loads the embedding model


@dataclass
class ServerLock:
    url: str
    pid: int
    started: float  # time.time() when the server wrote the file


def lock_path(home: Path) -> Path:
    return Path(home) / LOCK_FILE


def client_url(host: str, port: int) -> str:
    """Where a process on this machine reaches a server bound to host:port (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_lock(home: Path, url: str) -> ServerLock:
    """Written atomically (a reader never sees half a file); replaces whatever file was there."""
    lock = ServerLock(url=url, pid=os.getpid(), started=time.time())
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{LOCK_FILE}.{lock.pid}")
    tmp.write_text(json.dumps(asdict(lock)))
    tmp.replace(path)
    return lock


@contextmanager
def serving_home(home: Path, url: str | None) -> Iterator[None]:
    """The lock file names `url` while the block runs (nothing is written when url is None)."""
    if url is None:
        yield
        return
    write_lock(home, url)
    try:
        yield
    finally:
        remove_lock(home)


def remove_lock(home: Path) -> None:
    """Only this process's own file: a server started since on the same home keeps its own."""
    found = read_lock(home)
    if found is not None and found.pid == os.getpid():
        lock_path(home).unlink(missing_ok=True)


def read_lock(home: Path) -> ServerLock | None:
    try:
        raw = json.loads(lock_path(home).read_text())
        return ServerLock(url=str(raw["url"]), pid=int(raw["pid"]), started=float(raw["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def running_server(home: Path, wait_s: float = STARTUP_GRACE_S) -> ServerLock | None:
    """The server that serves this home and answers /healthz, waiting while it starts (its pid alive, its
    file younger than the grace period, /healthz refused or 'starting'); None when the file is missing or
    stale."""
    lock = read_lock(home)
    if lock is None or lock.pid == os.getpid():
        return None
    deadline = time.monotonic() + wait_s
    while pid_alive(lock.pid):
        answered = _health(lock.url)
        if answered == 200:
            return lock
        starting = answered == 503 or (answered is None and time.time() - lock.started < STARTUP_GRACE_S)
        if not starting or time.monotonic() > deadline:
            return None
        time.sleep(0.5)
        if read_lock(home) != lock:  # replaced or removed meanwhile: look again
            return running_server(home, max(0.0, deadline - time.monotonic()))
    return None


def _health(url: str) -> int | None:
    try:
        return httpx.get(url + "/healthz", timeout=5).status_code
    except httpx.HTTPError:
        return None
