"""An issue made ready to send, once per issue: loaded, rendered, checked, and
its message template; and ``build``, which writes one sample message to disk.

``check``, ``build``, ``preview`` and ``send`` all start here, so that what an
editor checks and previews is exactly what goes out.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from composer.config import Settings
from composer.errors import ComposerError
from composer.fsutil import relative, write_atomic
from composer.issue.checks import Finding, check_issue
from composer.issue.editions import choose
from composer.issue.files import resolve_issue_path
from composer.issue.load import LoadedIssue, load_issue
from composer.mail.message import MessageTemplate, personalise
from composer.render.media import Media
from composer.render.pipeline import RenderedIssue, render_edition
from composer.send.recipients import Recipients
from composer.send.signing import dkim_signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    loaded: LoadedIssue
    rendered: RenderedIssue  # the main edition
    findings: list[Finding]
    editions: dict[str, RenderedIssue] = field(default_factory=dict)  # main first

    def __post_init__(self) -> None:
        if not self.editions:
            object.__setattr__(self, "editions", {self.rendered.language: self.rendered})

    @property
    def slug(self) -> str:
        return self.loaded.issue.slug

    @property
    def main(self) -> str:
        return self.rendered.language

    @property
    def digest(self) -> str:
        """Fingerprint of what every subscriber gets, whatever their edition."""
        if len(self.editions) == 1:
            return self.rendered.digest
        joined = "\x00".join(f"{code}={r.digest}" for code, r in self.editions.items())
        return hashlib.sha256(joined.encode()).hexdigest()[:32]

    def edition_for(self, language: str) -> str:
        """The edition a subscriber whose language is ``language`` gets."""
        return choose(language, self.editions, self.main)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def prepare(spec: str, settings: Settings, only: str | None = None) -> Prepared:
    """Load, render and check the issue ``spec`` (a path or a date), every edition
    (``only``: the main one and that one)."""
    loaded = load_issue(resolve_issue_path(spec, settings.home))
    codes = list(loaded.editions)
    if only is not None:
        wanted = loaded.edition(only).language
        codes = [c for c in codes if c in (loaded.main, wanted)]
    media = Media(loaded.path.parent, settings.home, settings.base_url)
    editions = {
        code: render_edition(loaded, code, settings.home, cache_dir=settings.cache_dir, media=media)
        for code in codes
    }
    try:
        media.publish(settings.home / "media")
    except OSError as exc:
        raise ComposerError(
            f"{settings.home / 'media'}: cannot write images: {exc.strerror}"
        ) from None
    sizes = {code: r.html_bytes for code, r in editions.items()}
    return Prepared(loaded, editions[loaded.main], check_issue(loaded, sizes), editions)


def list_id(settings: Settings, loaded: LoadedIssue) -> str:
    """The List-Id (RFC 2919): the newsletter's title as a slug, under the From domain."""
    title = loaded.issue.newsletter.title.lower()
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in title)
    slug = "-".join(filter(None, slug.split("-")))
    return f"{slug or 'newsletter'}.{settings.mail_domain}"


def message_template(
    settings: Settings, prepared: Prepared, subject_prefix: str = "", edition: str | None = None
) -> MessageTemplate:
    """The messages of one edition (default: the main one)."""
    return MessageTemplate(
        prepared.editions[edition or prepared.main],
        from_address=settings.from_address,
        list_id=list_id(settings, prepared.loaded),
        domain=settings.mail_domain,
        subject_prefix=subject_prefix,
        signer=dkim_signer(settings),
    )


def message_templates(
    settings: Settings, prepared: Prepared, subject_prefix: str = ""
) -> dict[str, MessageTemplate]:
    """Every edition's messages, by language, the main edition first."""
    return {
        code: message_template(settings, prepared, subject_prefix, code)
        for code in prepared.editions
    }


@dataclass(frozen=True)
class BuildResult:
    prepared: Prepared
    files: list[Path]


def build(
    spec: str, settings: Settings, out: Path | None = None, edition: str | None = None
) -> BuildResult:
    """Render an issue and write email.html, email.txt and email.eml (sample
    subscriber) for each edition: the main one in ``out``, the others in
    ``out/<language>/`` (``edition``: that one only, in ``out``)."""
    prepared = prepare(spec, settings, only=edition)
    out = out or relative(settings.home / "build" / prepared.slug)
    recipients = Recipients(settings, prepared.slug)
    codes = list(prepared.editions)
    if edition is not None:
        codes = [prepared.loaded.edition(edition).language]
    files: list[Path] = []
    for code in codes:
        recipient = recipients.sample(code if code != prepared.main else None)
        html, text = personalise(prepared.editions[code], recipient)
        eml = message_template(settings, prepared, edition=code).build(recipient)
        folder = out if edition is not None or code == prepared.main else out / code
        written = [folder / "email.html", folder / "email.txt", folder / "email.eml"]
        try:
            for path, data in zip(written, (html.encode(), text.encode(), eml), strict=True):
                write_atomic(path, data)
        except OSError as exc:
            raise ComposerError(f"{folder}: cannot write the build: {exc.strerror}") from None
        files.extend(written)
    log.debug("wrote %s", ", ".join(map(str, files)))
    return BuildResult(prepared, files)
