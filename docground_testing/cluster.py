"""A real local cluster for tests and benchmarks: a private redis-server on a free port, Celery worker
processes, each killable with SIGKILL, and (for a registry on PostgreSQL) a private PostgreSQL server.
Nothing here is a mock: the workers run docground's Celery app and tasks (workers_harness.py only paces
the page engine)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymupdf

ROOT = Path(__file__).resolve().parents[1]
# REDIS_SERVER may name another binary (a carried one, as on the GPU machine: bench/gpu_device/).
REDIS_SERVER = os.environ.get("REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl): PG_BIN, else beside the pg_ctl on the
    PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    if shutil.which("pg_ctl"):
        return Path(shutil.which("pg_ctl")).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if
                      p.parent.name.isdigit() else 0)
    if not versions:
        raise RuntimeError("PostgreSQL's server programs are not installed (Debian package postgresql)")
    return versions[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


class RedisServer:
    """A private redis-server. With `durable`, an append-only file fsynced on every write, so that a
    restart keeps the queues (as a production Redis would be configured)."""

    def __init__(self, folder: Path, durable: bool = False):
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError("redis-server is not installed: `make install` installs it (Debian package "
                               "redis-server in the Makefile's APT_PACKAGES)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir",
                 str(self.folder), "--protected-mode", "no", *persistence], stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, 10, "redis-server to answer")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): a durable server writes its append-only file first."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class PostgresServer:
    """A private PostgreSQL server on a free port (initdb, pg_ctl), not the machine's own: a test may stop
    and restart it. Its data lies in a fresh folder under the system's temp dir, removed by stop(). PostgreSQL
    refuses to run as root, so as root its programs run as the `postgres` user, which owns the folder (a
    pytest tmp_path is private to root). Trust authentication on 127.0.0.1: a test server, nothing to guard."""

    def __init__(self):
        self.bin = postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="docground-pg-"))
        self.data, self.log_path = self.folder / "data", self.folder / "postgres.log"
        self.port = free_port()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        cmd = [*self.as_owner, str(self.bin / program), *args]
        done = subprocess.run(cmd, cwd=self.folder, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}{log}")

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # fsync off: a test server loses nothing to a clean restart, and the slow disk is spared.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log_path), "-o", options)
        return self

    def restart(self) -> None:
        """A clean restart (`pg_ctl restart -m fast`): every client's connection is cut; the data stays."""
        self._run("pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.data), "-l", str(self.log_path))

    def shut_down(self) -> None:
        """A clean stop that keeps the data: clients are refused until start() (a longer outage than restart())."""
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
        shutil.rmtree(self.folder, ignore_errors=True)


class ChildProcess:
    """A process of the system under test in its own process group, with its log: kill() takes the whole group
    at once (a machine or container dying), stop() asks it to end cleanly (SIGTERM) and kills it after
    `stop_wait_s`."""

    log_path: Path
    proc: subprocess.Popen | None = None
    stop_wait_s = 20.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the process group: nothing is acknowledged, flushed or cleaned up."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(self.stop_wait_s)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerProcess(ChildProcess):
    """`celery -A <module> worker` (default: the paced test harness) or `docground worker`, in its own
    process group so that kill() takes the whole worker (a machine or container dying)."""

    count = 0

    def __init__(self, env: dict[str, str], log_dir: Path, queues: str = "cpu,gpu", pool: str = "solo",
                 app: str = "docground_testing.workers_harness", cli: bool = False, concurrency: int = 1,
                 cwd: Path = ROOT, hostname: str | None = None):
        WorkerProcess.count += 1
        self.name = f"w{WorkerProcess.count}"
        self.env, self.queues, self.pool, self.app, self.cli = env, queues, pool, app, cli
        self.concurrency, self.cwd, self.hostname = concurrency, cwd, hostname or f"{self.name}@%h"
        self.log_path = log_dir / f"worker-{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        if self.cli:
            cmd = [str(Path(sys.executable).with_name("docground")), "worker", "--queues", self.queues,
                   "--pool", self.pool, "--concurrency", str(self.concurrency)]
        else:
            cmd = [sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", self.queues, "--pool", self.pool,
                   "--concurrency", str(self.concurrency), "--loglevel", "info", "--hostname", self.hostname,
                   "--without-gossip", "--without-mingle"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 90) -> WorkerProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log()[-3000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout_s, f"worker {self.name} to be ready", 0.2)
        return self



def cluster_env(settings_fields: dict[str, object], **extra: str) -> dict[str, str]:
    """The environment of a worker that shares these settings with the test (DOCGROUND_<NAME>)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCGROUND_")}
    env.update({f"DOCGROUND_{k.upper()}": str(v) for k, v in settings_fields.items() if v is not None})
    # The checkout goes last: a package installed or linked elsewhere (bench/gpu_device/) comes first.
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(ROOT)]
    env.update({"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))})
    env.update(extra)
    return env


def long_pdf(pages: int, seed: int = 0, lines_per_page: int = 6) -> bytes:
    """A born-digital report of many short pages: a heading and a few numbered lines each."""
    rng = random.Random(seed)
    words = ("queue worker page batch redis broker chunk index embedding vector retry crash restart "
             "visibility timeout durable registry document status").split()
    doc = pymupdf.open()
    for n in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((60, 80), f"Section {n}: {rng.choice(words).title()} {rng.choice(words)}", fontsize=16)
        for i in range(lines_per_page):
            text = f"Line {n}.{i} " + " ".join(rng.choice(words) for _ in range(9)) + "."
            page.insert_text((60, 120 + 16 * i), text, fontsize=10)
    return doc.tobytes()


def stored_chunks(store, document_id: str) -> list[tuple[str, int, str]]:
    """Every chunk an embedded store holds for a document: (id, index, text), sorted by index."""
    q = store.q
    flt = q.Filter(must=[q.FieldCondition(key="document_id", match=q.MatchValue(document_id))])
    out, offset = [], None
    while True:
        records, offset = store.shard.scroll(q.ScrollRequest(offset=offset, limit=256, filter=flt, with_payload=True))
        out += [(str(r.id), r.payload["index"], r.payload["text"]) for r in records]
        if offset is None:
            return sorted(out, key=lambda c: c[1])
