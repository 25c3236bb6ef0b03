"""Writing files so that a reader sees the old file or the new one, never half.

Files get the permissions a plain ``open()`` would give them (0666 less the
umask), not ``mkstemp``'s 0600: an archive or a build is meant to be read by
others (a web server running as another user). Secrets ask for 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK


def write_atomic(path: Path, data: bytes, mode: int | None = None, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a failed
    write leaves no temporary file). ``durable=False``, for caches: no fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, FILE_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def relative(path: Path) -> Path:
    """``path`` relative to the working folder when it is under it (for messages)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
