"""The one error base class of newsletter-composer and its few subclasses.

Every error a user can cause or meet (bad issue file, bad CSV, SMTP refusal,
database trouble) is raised as a ``ComposerError`` whose message is one line
that names the file, line, field or host:port and says how to fix it. The CLI
maps it to ``Error: ...`` and exit status 1; nothing else reaches the user as a
traceback.
"""

from __future__ import annotations


class ComposerError(Exception):
    """Base class: ``str(err)`` is the complete, user-facing message."""

    exit_code = 1


class IssueError(ComposerError):
    """An issue file could not be read or is invalid.

    ``problems`` holds one line per problem (``file:line:col: field: message``);
    the message is the first of them plus a count, so it stays one line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)


class TemplateError(ComposerError):
    """A theme template is missing, broken or uses an undefined variable."""


class ConfigError(ComposerError):
    """A setting in the environment or ``.env`` is missing or invalid."""


class StoreError(ComposerError):
    """The SQLite database could not be opened, migrated or written."""


class SubscriberError(ComposerError):
    """A subscriber address or row is invalid."""


class TransportError(ComposerError):
    """The SMTP server or the outbox could not be reached or refused us."""


class ConnectError(TransportError):
    """A connection could not be made or was lost: worth trying again."""


class AuthError(TransportError):
    """The SMTP server refused our credentials: stop the whole run."""


class SendError(ComposerError):
    """A send cannot start or continue (locked, edited issue, paused)."""
