"""One send at a time per database, however the database is reached.

Two guards, both belonging to the database itself rather than to the path
that names it:

- an OS lock (``flock``) on ``<real path of the database>.send.lock``: the
  same file for a symlink, a relative or an absolute path; the kernel
  releases it when the process dies, even by SIGKILL;
- a lease row inside the database (``leases``), taken and renewed in the
  database's own transactions, so that a send from another machine on a
  shared file is refused too. A lease whose process is gone (same host, that
  pid no longer running the same process) is taken over at once; one from
  another host only when it expires (a minute after its holder stopped
  renewing it).

On PostgreSQL there is no file to lock, and a send is shared: any number of
`send` processes, on any machines, send one issue together, each under a lease
of its own (``sender ISSUE HOLDER``) and each mailing only the deliveries it
claimed (``Store.claim``). A sender that is gone (its lease expired, or its
process on this host no longer running) is reaped by the others: what it had
in flight is in doubt, what it had claimed is theirs. Another issue waits until
the senders of this one are done.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import IO

from composer.dburl import DatabaseURL
from composer.errors import ComposerError, SendError
from composer.store.connection import DEFAULT_WAIT, Target
from composer.store.database import Lease, Store

log = logging.getLogger(__name__)

LEASE = "send"
TTL = 60.0  # seconds a lease lasts without renewal


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (to tell a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _identity() -> str:
    """host:pid:process start time:a nonce of this lock (two locks taken in one
    process are two holders: on PostgreSQL no file lock tells them apart)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}:{secrets.token_hex(4)}"


def _abandoned(lease: Lease) -> bool:
    """A lease from this host whose process is no longer running."""
    if lease.host != socket.gethostname():
        return False
    start = lease.holder.split(":")[2] if lease.holder.count(":") >= 2 else ""
    return _start_time(lease.pid) != start


def _describe(lease: Lease) -> str:
    return f"pid {lease.pid} on {lease.host}, since {lease.since}"


def gone(lease: Lease) -> bool:
    """A lease nobody holds any more: expired, or its process here has ended."""
    return lease.expires <= time.time() or _abandoned(lease)


def sender_issue(lease: Lease) -> str:
    return lease.name.split(" ")[1] if lease.name.count(" ") >= 2 else ""


class SendLock:
    def __init__(
        self, database: Target, wait: float = DEFAULT_WAIT, ttl: float = TTL, issue: str = ""
    ) -> None:
        self.database = database
        self.shared = isinstance(database, DatabaseURL) and bool(issue)
        self.issue = issue
        self.path: Path | None = None
        if isinstance(database, Path):
            real = Path(os.path.realpath(database))
            self.path = real.with_name(real.name + ".send.lock")
        self.wait = wait
        self.ttl = ttl
        self.holder = _identity()
        self.name = f"sender {issue} {self.holder}" if self.shared else LEASE
        self.lost = threading.Event()  # set if the lease was taken from us
        self._file: IO[str] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _refuse(self, who: str) -> SendError:
        return SendError(
            f"another `newsletter send` ({who}) is running on {self.database}; wait for it "
            "to finish or stop it (Ctrl-C), then run send again"
        )

    def __enter__(self) -> SendLock:
        if self.path is not None:
            self._lock_file(self.path)
        try:
            with Store(self.database, wait=self.wait) as store:
                held = self._other_issue(store) if self.shared else None
                if held is None:
                    held = store.take_lease(
                        self.name,
                        self.holder,
                        socket.gethostname(),
                        os.getpid(),
                        self.ttl,
                        _abandoned,
                    )
        except BaseException:
            self._unlock()
            raise
        if held is not None:
            self._unlock()
            other = sender_issue(held)
            raise self._refuse(_describe(held) + (f", sending {other}" if other else ""))
        self._renewer = threading.Thread(target=self._renew, name="send-lease", daemon=True)
        self._renewer.start()
        return self

    def _other_issue(self, store: Store) -> Lease | None:
        """A live sender of another issue (senders of one issue share the send)."""
        exclusive = store.lease(LEASE)
        if exclusive is not None and not gone(exclusive):
            return exclusive
        for lease in store.senders():
            if sender_issue(lease) != self.issue and not gone(lease):
                return lease
        return None

    def _lock_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise self._refuse(f"pid {pid}") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f

    def _renew(self) -> None:
        try:
            with Store(self.database, wait=self.ttl / 2) as store:
                while not self._stop.wait(self.ttl / 4):
                    if not store.renew_lease(self.name, self.holder, self.ttl):
                        log.error("the send lease on %s was taken over", self.database)
                        self.lost.set()
                        return
        except Exception as exc:  # noqa: BLE001 - reported through self.lost
            log.error("cannot renew the send lease on %s: %s", self.database, exc)
            self.lost.set()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        try:
            if not self.lost.is_set():
                with Store(self.database, wait=min(self.wait, 5.0)) as store:
                    store.release_lease(self.name, self.holder)
        except ComposerError as exc:  # it expires by itself; our process being gone frees it
            log.warning("could not release the send lease on %s: %s", self.database, exc)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def held(self) -> bool:
        """Whether a send is running now (without taking anything)."""
        if self.path is not None and self.path.exists():
            with self.path.open("a+") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(f, fcntl.LOCK_UN)
        if not Store.exists(self.database):
            return False
        with contextlib.suppress(Exception), Store(self.database, create=False) as store:
            leases = [store.lease(LEASE), *store.senders()]
            return any(lease is not None and not gone(lease) for lease in leases)
        return False
