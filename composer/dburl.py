"""A PostgreSQL database named by URL (kept apart from the backend: settings
name it without loading a database driver)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class DatabaseURL:
    """A PostgreSQL database named by URL (``postgresql://user:pw@host:port/db``).
    Printed, it hides the password: it appears in messages and logs."""

    url: str

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None and "password=" not in parts.query.lower():
            return self.url
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
        query = re.sub(r"(?i)\b(password=)[^&]*", r"\1***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def __repr__(self) -> str:
        return f"DatabaseURL({str(self)!r})"

    @staticmethod
    def accepts(raw: str) -> bool:
        return raw.startswith(("postgresql://", "postgres://"))
