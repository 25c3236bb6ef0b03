"""Images kept next to the issue: resized with Pillow, named by content, linked
by absolute URL, written for build/send, copied into the archive, served."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image

from tests.helpers import run, write_issue
from tests.servers import newsletter_server, raw_get


def _png(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (164, 22, 26)).save(path, format="PNG")


def _with_images(home: Path) -> Path:
    _png(home / "issues" / "images" / "wide.png", 1600, 400)
    _png(home / "issues" / "images" / "small.png", 300, 200)
    return write_issue(
        home,
        "2025-04-16.yaml",
        [
            (
                "      kicker: USA\n",
                "      kicker: USA\n      image: {src: images/wide.png, alt: A wide chart, "
                "width: 400}\n",
            ),
            (
                "        Privacy groups warn",
                "        ![A small chart](images/small.png)\n\n        Privacy groups warn",
            ),
        ],
    )


def test_local_images_are_resized_hashed_and_linked(newsletter_home: Path) -> None:
    _with_images(newsletter_home)
    result = run("build", "2025-04-16")
    assert result.exit_code == 0, result.output
    html = (newsletter_home / "build" / "2025-04-16" / "email.html").read_text(encoding="utf-8")
    urls = re.findall(r'src="(http://127\.0\.0\.1:8000/media/[0-9a-f]{16}\.png)"', html)
    assert len(set(urls)) == 2, urls
    assert "images/wide.png" not in html
    published = {p.name: p for p in (newsletter_home / "media").iterdir()}
    assert set(published) == {u.rsplit("/", 1)[1] for u in urls}
    sizes = sorted(Image.open(p).size for p in published.values())
    assert sizes == [(300, 200), (800, 200)]  # the wide one at twice its 400 px display
    # The Markdown image says its display size; every image keeps within the column.
    small = next(u for u in urls if Image.open(published[u.rsplit("/", 1)[1]]).size == (300, 200))
    assert f'<img src="{small}" width="300" height="200"' in html
    # The same content, the same name: a rebuild writes nothing new.
    assert run("build", "2025-04-16").exit_code == 0
    assert {p.name for p in (newsletter_home / "media").iterdir()} == set(published)


def test_the_archive_carries_the_images_and_serve_serves_them(newsletter_home: Path) -> None:
    _with_images(newsletter_home)
    assert run("archive", "--all", "--out", "site").exit_code == 0
    copied = list((newsletter_home / "site" / "media").iterdir())
    assert len(copied) == 2
    with newsletter_server(newsletter_home, "serve") as port:
        status, body = raw_get(port, f"/media/{copied[0].name}")
        assert status == 200
        assert b"content-type: image/png" in body.lower()
        assert b"immutable" in body
        assert body.split(b"\r\n\r\n", 1)[1] == copied[0].read_bytes()
        for bad in ("/media/../newsletter.db", "/media/x.png", "/media/%2e%2e%2f.env"):
            assert raw_get(port, bad)[0] == 404, bad


def test_check_locates_a_missing_or_escaping_image(newsletter_home: Path) -> None:
    (newsletter_home / "secret.png").write_bytes(b"x")
    write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "      kicker: USA\n",
                "      kicker: USA\n      image: {src: images/gone.png, alt: x}\n",
            ),
            ("        Privacy groups warn", "        ![x](../../secret.png)\n\n        Privacy"),
        ],
    )
    result = run("check", "2025-04-16")
    assert result.exit_code == 1
    assert "sections[0].story.image.src: image images/gone.png: no such file in issues" in (
        result.stdout
    )
    assert "image ../../secret.png is outside the newsletter's folder" in result.stdout


def test_a_file_that_is_no_image_is_a_clear_error(newsletter_home: Path) -> None:
    (newsletter_home / "issues" / "images").mkdir()
    (newsletter_home / "issues" / "images" / "fake.png").write_bytes(b"<svg>not a png</svg>")
    write_issue(
        newsletter_home,
        "2025-04-16.yaml",
        [
            (
                "      kicker: USA\n",
                "      kicker: USA\n      image: {src: images/fake.png, alt: x}\n",
            )
        ],
    )
    result = run("build", "2025-04-16")
    assert result.exit_code == 1
    assert "fake.png: not a readable image" in result.stderr
    assert "Traceback" not in result.stderr
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 megapixels, a few KB
    (newsletter_home / "issues" / "images" / "fake.png").write_bytes(bomb.getvalue())
    result = run("build", "2025-04-16")
    assert result.exit_code == 1 and "too big" in result.stderr, result.stderr
