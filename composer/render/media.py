"""Images kept next to the issue: checked, resized, named by content, published.

An image's ``src`` (or a Markdown image's target) may be a path relative to
the issue file (``images/chart.png``). Such a file must lie inside the
newsletter's folder and be a PNG, JPEG, GIF or WebP image. One wider than
twice its display width is resized to twice that width (sharp on a retina
screen, no heavier than that). It is published under a name made from its
content (``media/3f2a9c1e5b7d8e0f.png``), so a changed image never shows an
old copy from a cache, and the email links to it by its absolute URL under
``NEWSLETTER_BASE_URL``. ``build`` and ``send`` write it to the newsletter's
``media/`` folder, ``archive`` copies it beside the pages, ``serve`` serves it.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.errors import TemplateError
from composer.issue import markdown as md
from composer.issue.files import is_local
from composer.issue.model import Image, Issue

COLUMN = 552  # px: the email's text column (600 less two 24 px gutters)
MAX_FILE_BYTES = 20_000_000
MAX_PIXELS = 40_000_000  # beyond this, an "image" is a decompression bomb
FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
NAME_RE = re.compile(r"^[0-9a-f]{16}\.(png|jpg|gif|webp)$")


@dataclass(frozen=True)
class MediaFile:
    name: str  # content hash and extension
    data: bytes
    width: int  # of the file as published
    height: int


def local_path(src: str, issue_dir: Path, home: Path) -> Path | None:
    """The file ``src`` names, if it is one inside the newsletter's folder
    (``check`` reports the others, with their line)."""
    path = (issue_dir / src).resolve()
    if not path.is_relative_to(home.resolve()) or not path.is_file():
        return None
    return path


def process(path: Path, display_width: int) -> MediaFile:
    """The image at ``path`` as published: at most twice ``display_width`` wide."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TemplateError(f"{path}: {size / 1e6:.0f} MB; an email image is at most 20 MB")
    data = path.read_bytes()
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            kind = FORMATS.get(str(img.format))
            if kind is None:
                raise TemplateError(f"{path}: a {img.format} image; use PNG, JPEG, GIF or WebP")
            if img.width * img.height > MAX_PIXELS:
                raise TemplateError(f"{path}: {img.width}x{img.height} pixels is too big")
            width, height = img.size
            if width > 2 * display_width and not getattr(img, "is_animated", False):
                target = 2 * display_width
                height = max(1, round(height * target / width))
                width = target
                resized = img.resize((width, height), PILImage.Resampling.LANCZOS)
                out = io.BytesIO()
                options: dict[str, Any] = {"optimize": True}
                if kind == "jpg":
                    options["quality"] = 85
                    resized = resized.convert("RGB")
                resized.save(out, format=str(img.format), **options)
                data = out.getvalue()
    except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError) as exc:
        raise TemplateError(f"{path}: not a readable image ({exc})") from None
    name = f"{hashlib.sha256(data).hexdigest()[:16]}.{kind}"
    return MediaFile(name, data, width, height)


@dataclass
class Media:
    """The local images of one issue, as published under ``base_url``/media/."""

    issue_dir: Path
    home: Path
    base_url: str
    files: dict[str, MediaFile] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # URL -> display w, h
    _done: dict[tuple[Path, int], MediaFile] = field(default_factory=dict)

    def url(self, src: str, display_width: int) -> str:
        """The published URL of local image ``src`` (processed once); ``src``
        itself when there is no such file (``check`` says so, with its line)."""
        path = local_path(src, self.issue_dir, self.home)
        if path is None:
            return src
        item = self._done.get((path, display_width))
        if item is None:
            item = self._done[(path, display_width)] = process(path, display_width)
        self.files[item.name] = item
        url = f"{self.base_url}/media/{item.name}"
        shown = min(display_width, item.width)
        self.sizes[url] = (shown, max(1, round(item.height * shown / item.width)))
        return url

    def markdown(self, text: str) -> str:
        """Markdown with its local images' targets replaced by their URLs."""
        for ref in md.references(text):
            if ref.kind == "image" and is_local(ref.target):
                text = text.replace(f"]({ref.target})", f"]({self.url(ref.target, COLUMN)})")
        return text

    def image(self, image: Image) -> Image:
        if not is_local(image.src):
            return image
        return image.model_copy(update={"src": self.url(image.src, image.width or COLUMN)})

    def localise(self, value: Any) -> Any:
        """``value`` (an issue, or any part of one) with every local image published."""
        if isinstance(value, Image):
            return self.image(value)
        if isinstance(value, list):
            return [self.localise(v) for v in value]
        if hasattr(type(value), "model_fields"):
            update = {}
            for name in type(value).model_fields:
                current = getattr(value, name)
                new = (
                    self.markdown(current)
                    if isinstance(current, str) and name in MARKDOWN_FIELDS
                    else self.localise(current)
                )
                if new is not current:
                    update[name] = new
            return value.model_copy(update=update) if update else value
        return value

    def sized(self, html: str) -> str:
        """Every published image in ``html`` given its display width and height."""
        for url, (width, height) in self.sizes.items():
            html = html.replace(
                f'<img src="{url}"', f'<img src="{url}" width="{width}" height="{height}"'
            )
        return html

    def publish(self, folder: Path) -> list[Path]:
        """Write the files into ``folder`` (once: a name is its content)."""
        from composer.fsutil import write_atomic

        written = []
        try:
            for item in self.files.values():
                path = folder / item.name
                if not path.exists():
                    write_atomic(path, item.data, mode=0o644)
                    written.append(path)
        except OSError as exc:
            raise TemplateError(f"{folder}: cannot write images: {exc.strerror}") from None
        return written


MARKDOWN_FIELDS = frozenset(
    ("body", "text", "note", "see_also", "intro", "outro", "reason", "caption")
)


def localise_issue(issue: Issue, media: Media | None) -> Issue:
    result: Issue = media.localise(issue) if media is not None else issue
    return result
