"""One send at a time per database."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from composer.errors import SendError


class SendLock:
    """One send at a time per database: an OS lock on ``<db>.send.lock``,
    released by the kernel even if the process is killed."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".send.lock")
        self._file: IO[str] | None = None

    def __enter__(self) -> SendLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise SendError(
                f"another `newsletter send` (pid {pid}) is running on "
                f"{self.path.with_suffix('').with_suffix('')}; wait for it to "
                "finish or stop it (Ctrl-C), then run send again"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()

    def held(self) -> bool:
        """Whether a send is running now (without taking the lock)."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
        return False
