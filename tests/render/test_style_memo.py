"""premailer's results for CSS text, kept between processes (``render.html``).

Every comparison is with premailer left as it is, in a process of its own:
the memo is a shortcut only, never a change to the HTML.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from composer.issue.load import load_issue, parse_issue
from composer.render import html as html_module
from composer.render.html import _MEMO_FILE, compile_mjml, mark_directions
from composer.render.pipeline import render_issue
from tests.conftest import REPO, SEED_ISSUE
from tests.helpers import mount_tmpfs, run

pytestmark = pytest.mark.no_database

# argv: mode (plain | memo), a JSON list of HTML files, the cache folder.
# Prints a JSON list of the inlined HTML.
_INLINE = """
import json, pathlib, sys
from composer.render import html
files = json.loads(sys.argv[2])
if sys.argv[1] == "plain":
    import cssutils  # premailer as it is: with cssutils from the start
    untouched = html._import_premailer()
    html._premailer_class = lambda: untouched
    out = [html.inline_css(pathlib.Path(f).read_text()) for f in files]
else:
    cache = pathlib.Path(sys.argv[3])
    out = [html.inline_css_cached(pathlib.Path(f).read_text(), cache) for f in files]
print(json.dumps(out))
"""


def _inline(mode: str, files: list[Path], cache: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _INLINE, mode, json.dumps([str(f) for f in files]), str(cache)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    result: list[str] = json.loads(done.stdout)
    return result


def _before_inlining(tmp_path: Path) -> list[str]:
    """The seed issue as MRML writes it, before premailer: each theme, and the
    web version."""
    minimal = SEED_ISSUE.read_bytes().replace(
        b"date: 2025-04-16", b"date: 2025-04-16\ntheme: minimal"
    )
    issues = [
        render_issue(load_issue(SEED_ISSUE)),
        render_issue(load_issue(SEED_ISSUE), web=True),
        render_issue(parse_issue(minimal, tmp_path / "2025-04-16.yaml")),
    ]
    return [mark_directions(compile_mjml(r.mjml, r.issue.theme_name)) for r in issues]


def _edited(html: str) -> str:
    """The same document with new words and one style text never seen before."""
    edited = html.replace("Clearview", "Clearview (edited)").replace("the ", "this ")
    return edited.replace('style="', 'style="letter-spacing:1px;', 1)


def test_a_warm_memo_makes_the_html_premailer_makes(tmp_path: Path) -> None:
    sources = _before_inlining(tmp_path)
    first = [tmp_path / f"first{i}.html" for i in range(len(sources))]
    later = [tmp_path / f"later{i}.html" for i in range(len(sources))]
    for path, html in zip(first, sources, strict=True):
        path.write_text(html)
    for path, html in zip(later, sources, strict=True):
        path.write_text(_edited(html))
    cache = tmp_path / "cache"
    plain = _inline("plain", first + later, cache)

    assert _inline("memo", first, cache) == plain[: len(first)]  # the memo is made
    memo = json.loads((cache / _MEMO_FILE).read_text())
    assert memo["rules"] and memo["xpaths"] and memo["pairs"]
    # A new process, the memo warm, documents it has not inlined (new words, a
    # new style text): the same HTML as premailer's own.
    assert _inline("memo", later, cache) == plain[len(first) :]
    assert "letter-spacing:1px" in json.dumps(json.loads((cache / _MEMO_FILE).read_text()))


def test_a_broken_or_foreign_memo_is_ignored(tmp_path: Path) -> None:
    html = _before_inlining(tmp_path)[0]
    source = tmp_path / "issue.html"
    source.write_text(_edited(html))
    plain = _inline("plain", [source], tmp_path / "unused")
    cache = tmp_path / "cache"
    cache.mkdir()
    stamp_of = "from composer.render.html import _StyleMemo; print(_StyleMemo.stamp(), end='')"
    stamp = subprocess.run(
        [sys.executable, "-c", stamp_of], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    for broken in (
        "{not json",
        json.dumps({"stamp": stamp, "rules": {"p {}": 5}, "xpaths": {}, "pairs": {}}),
        json.dumps({"stamp": stamp, "rules": {}, "xpaths": {"p": ["//p"]}, "pairs": {}}),
        json.dumps({"stamp": stamp, "rules": {}, "xpaths": {}, "pairs": {"1a": [["a"]]}}),
        json.dumps({"stamp": stamp, "rules": [], "xpaths": {}, "pairs": {}}),
        json.dumps([stamp]),
        "[" * 100_000 + "]" * 100_000,
    ):
        (cache / _MEMO_FILE).write_text(broken)
        for stale in cache.glob("inline-*.html"):
            stale.unlink()
        assert _inline("memo", [source], cache) == plain


def test_a_memo_of_other_versions_is_not_used(tmp_path: Path) -> None:
    source = tmp_path / "issue.html"
    source.write_text(_before_inlining(tmp_path)[0])
    plain = _inline("plain", [source], tmp_path / "unused")
    cache = tmp_path / "cache"
    _inline("memo", [source], cache)
    memo = json.loads((cache / _MEMO_FILE).read_text())
    # Every declaration the memo holds made different: used, it changes the HTML.
    memo["pairs"] = {k: [[name, "17px"] for name, _ in v] for k, v in memo["pairs"].items()}
    for stamp, used in ((memo["stamp"], True), ("premailer-0.0 cssutils-0.0", False)):
        (cache / _MEMO_FILE).write_text(json.dumps({**memo, "stamp": stamp}))
        for stale in cache.glob("inline-*.html"):
            stale.unlink()
        assert (_inline("memo", [source], cache) != plain) is used


def test_the_inline_cache_keeps_only_the_latest_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_module, "KEEP_INLINED", 3)
    cache = tmp_path / "cache"
    pages = [f"<html><body><p class='x'>edit {i}</p></body></html>" for i in range(5)]
    for i, page in enumerate(pages):
        html_module.inline_css_cached(page, cache)
        stamp = 1_000_000 + i  # mtimes a second apart, in the order written
        for path in cache.glob("inline-*.html"):
            if "edit " + str(i) in path.read_text():
                os.utime(path, (stamp, stamp))
    kept = sorted(p.read_text() for p in cache.glob("inline-*.html"))
    assert len(kept) == 3 and all(f"edit {i}" in k for i, k in zip((2, 3, 4), kept, strict=True))


def test_inlining_never_imports_requests(tmp_path: Path) -> None:
    """premailer imports requests only to fetch stylesheets, which we never do
    (and it takes 45 ms): neither the memo nor premailer brings it in."""
    code = (
        "import pathlib, sys\n"
        "from composer.render.html import inline_css_cached\n"
        "inline_css_cached('<p>x</p>', pathlib.Path(sys.argv[1]))\n"
        "print('requests' in sys.modules, 'premailer' in sys.modules)\n"
    )
    for _ in range(2):  # without the memo, then with it
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        assert done.stdout.split() == ["False", "True"]
        for stale in (tmp_path / "cache").glob("inline-*.html"):
            stale.unlink()


def test_cssutils_comes_in_only_when_premailer_uses_it(tmp_path: Path) -> None:
    """With the memo warm, an edited issue is inlined without importing cssutils
    (30 ms); a page that needs it (a floating image: premailer reads its style
    with cssutils itself) brings it in, quiet, with premailer's own result."""
    code = (
        "import logging, pathlib, sys\n"
        "from composer.render.html import inline_css_cached\n"
        "out = inline_css_cached(pathlib.Path(sys.argv[2]).read_text(), pathlib.Path(sys.argv[1]))\n"
        "pathlib.Path(sys.argv[3]).write_text(out)\n"
        "print('cssutils' in sys.modules, logging.getLogger('CSSUTILS').level)\n"
    )
    base = _before_inlining(tmp_path)[0]
    image = '<img src="a.png" alt="" style="float:right;width:10px;mso-hide:all;color:nonsense">'
    pages = {
        "first": base,
        "edited": _edited(base),
        "image": base.replace("</body>", f"{image}</body>", 1),
    }
    seen = {}
    for name, page in pages.items():
        (tmp_path / f"{name}.html").write_text(page)
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                str(tmp_path / "cache"),
                str(tmp_path / f"{name}.html"),
                str(tmp_path / f"{name}.out"),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        assert done.stderr == ""
        seen[name] = done.stdout.split()
    assert seen["first"] == ["True", str(logging.CRITICAL)]  # the memo is made
    assert seen["edited"][0] == "False"
    assert seen["image"] == ["True", str(logging.CRITICAL)]
    plain = _inline("plain", [tmp_path / f"{n}.html" for n in pages], tmp_path / "unused")
    assert [(tmp_path / f"{n}.out").read_text() for n in pages] == plain
    assert 'align="right"' in plain[2]


def test_threads_inlining_at_once_share_the_memo(tmp_path: Path) -> None:
    """``serve`` renders pages on several threads: each saves the memo while
    the others add to it, and every page comes out as it does alone."""
    base = _before_inlining(tmp_path)[0]
    pages = [
        base.replace('style="', f'style="margin-top:{i}px;', 1).replace("Clearview", f"CV {i}")
        for i in range(12)
    ]
    alone = [html_module.inline_css(page) for page in pages]
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda page: html_module.inline_css_cached(page, cache), pages))
    assert together == alone
    assert json.loads((cache / _MEMO_FILE).read_text())["pairs"]


def test_a_full_cache_disk_never_fails_a_build(newsletter_home: Path) -> None:
    """The cache is only a shortcut: with no room for it, ``build`` still writes
    the issue, and no half-written cache file is left behind."""
    cache = newsletter_home / "build" / ".cache"
    mount_tmpfs(cache, "64k")  # room for the memo and compiled templates, not the HTML
    try:
        out = newsletter_home / "out"
        for edit in ("first", "second"):
            issue = newsletter_home / "issues" / SEED_ISSUE.name
            issue.write_text(SEED_ISSUE.read_text().replace("Clearview", f"Clearview {edit}"))
            result = run("build", str(issue), "--out", str(out))
            assert result.exit_code == 0, result.output
            assert f"Clearview {edit}" in (out / "email.html").read_text()
        assert not list(cache.glob("inline-*.html"))  # 72 KB: no room
        files = [p for p in cache.rglob("*") if p.is_file()]
        # Whole files only: no temporary or half-written one left behind.
        assert [p.name for p in files if p.name != _MEMO_FILE and p.suffix != ".cache"] == []
        for memo in (p for p in files if p.name == _MEMO_FILE):
            json.loads(memo.read_text())
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
