"""An issue made ready to send, once per issue: loaded, rendered, checked, and
its message template; and ``build``, which writes one sample message to disk.

``check``, ``build``, ``preview`` and ``send`` all start here, so that what an
editor checks and previews is exactly what goes out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from composer.config import Settings
from composer.errors import ComposerError
from composer.fsutil import relative, write_atomic
from composer.issue.checks import Finding, check_issue
from composer.issue.files import resolve_issue_path
from composer.issue.load import LoadedIssue, load_issue
from composer.mail.message import MessageTemplate, personalise
from composer.render.pipeline import RenderedIssue, render_issue
from composer.send.recipients import Recipients
from composer.send.signing import dkim_signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    loaded: LoadedIssue
    rendered: RenderedIssue
    findings: list[Finding]

    @property
    def slug(self) -> str:
        return self.loaded.issue.slug

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def prepare(spec: str, settings: Settings) -> Prepared:
    """Load, render and check the issue ``spec`` (a path or a date)."""
    loaded = load_issue(resolve_issue_path(spec, settings.home))
    rendered = render_issue(loaded, settings.home, cache_dir=settings.cache_dir)
    return Prepared(loaded, rendered, check_issue(loaded, rendered.html_bytes))


def list_id(settings: Settings, loaded: LoadedIssue) -> str:
    """The List-Id (RFC 2919): the newsletter's title as a slug, under the From domain."""
    title = loaded.issue.newsletter.title.lower()
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in title)
    slug = "-".join(filter(None, slug.split("-")))
    return f"{slug or 'newsletter'}.{settings.mail_domain}"


def message_template(
    settings: Settings, prepared: Prepared, subject_prefix: str = ""
) -> MessageTemplate:
    return MessageTemplate(
        prepared.rendered,
        from_address=settings.from_address,
        list_id=list_id(settings, prepared.loaded),
        domain=settings.mail_domain,
        subject_prefix=subject_prefix,
        signer=dkim_signer(settings),
    )


@dataclass(frozen=True)
class BuildResult:
    prepared: Prepared
    files: list[Path]


def build(spec: str, settings: Settings, out: Path | None = None) -> BuildResult:
    """Render an issue and write email.html, email.txt and email.eml (sample subscriber)."""
    prepared = prepare(spec, settings)
    recipient = Recipients(settings, prepared.slug).sample()
    html, text = personalise(prepared.rendered, recipient)
    eml = message_template(settings, prepared).build(recipient)
    out = out or relative(settings.home / "build" / prepared.slug)
    files = [out / "email.html", out / "email.txt", out / "email.eml"]
    try:
        for path, data in zip(files, (html.encode(), text.encode(), eml), strict=True):
            write_atomic(path, data)
    except OSError as exc:
        raise ComposerError(f"{out}: cannot write the build: {exc.strerror}") from None
    log.debug("wrote %s", ", ".join(map(str, files)))
    return BuildResult(prepared, files)
