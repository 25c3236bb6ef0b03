"""Debian's PostgreSQL on 127.0.0.1 for the tests: one server per test session
(a cluster made by ``initdb`` in a temporary folder, stopped at the end), one
fresh database per test. CI installs it (postgresql) and requires it
(NEWSLETTER_REQUIRE_POSTGRES=1); elsewhere the PostgreSQL tests skip, saying why.

The server runs with a password (scram-sha-256) over TCP, so the URL the tests
give the tool carries one, as a real deployment's does; ``fsync=off`` keeps the
suite fast (a process killed with SIGKILL, ours, never loses what the server
acknowledged; only a power cut would).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.smtp_server import free_port

REQUIRE_POSTGRES = os.environ.get("NEWSLETTER_REQUIRE_POSTGRES") == "1"
USER, PASSWORD = "newsletter", "pg-test-password"


def bindir() -> Path | None:
    """The newest PostgreSQL server installed (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


MISSING = (
    "PostgreSQL test skipped: Debian's postgresql is not installed "
    "(apt-get install postgresql; CI installs it and requires these tests)"
)


@dataclass
class PostgresServer:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    _numbers: itertools.count[int]

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def fresh_database(self) -> str:
        """A new empty database's URL."""
        name = f"t{os.getpid()}_{next(self._numbers)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _as_server_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's postgres user."""
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


def start(durable: bool = False) -> PostgresServer:
    """Start a server (raises RuntimeError when PostgreSQL is not installed).
    ``durable``: fsync and synchronous commits on, as in production (the
    benchmarks); the tests do without."""
    bin_ = bindir()
    if bin_ is None:
        raise RuntimeError(MISSING)
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="nl-postgres-"))
    data = folder / "data"
    (folder / "pw").write_text(PASSWORD + "\n")
    if root:  # the server's own user owns its files
        os.chmod(folder, 0o755)
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(folder / "pw", "postgres", "postgres")
    subprocess.run(
        _as_server_user(
            [
                str(bin_ / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--pwfile",
                str(folder / "pw"),
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        _as_server_user(
            [
                str(bin_ / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(folder),
                *(
                    []
                    if durable
                    else [
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                    ]
                ),
                "-c",
                "max_connections=200",
                "-c",
                f"log_directory={folder}",
                "-c",
                "logging_collector=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=(folder / "server.log").open("wb"),
    )
    server = PostgresServer(folder, port, process, itertools.count())
    deadline = time.monotonic() + 30
    while True:
        try:
            server.admin("SELECT 1")
            return server
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "server.log").read_text(errors="replace")[-2000:]
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start: {log}") from None
            time.sleep(0.1)
