"""Answers kept between processes (``composer.memo``), and a brief command's
process: the collector off, the answers kept, the output the same."""

from __future__ import annotations

import datetime as dt
import gettext
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer import memo
from composer.issue.words import LOCALE_DIR, WORDS
from composer.mail import addresses
from composer.render import i18n

pytestmark = pytest.mark.no_database


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    cache = tmp_path / "cache"
    cache.mkdir()
    memo.use(cache)
    yield cache
    memo.use(None)


def _new_process(folder: Path) -> None:
    """What a new process knows: only the file."""
    memo.use(None)
    memo.use(folder)


def _ask(key: str, answer: str, calls: list[str], stamp: str = "v1") -> str:
    def compute() -> str:
        calls.append(key)
        return answer

    return memo.recall("kind", key, lambda: stamp, compute, lambda kept: isinstance(kept, str))


def test_with_no_folder_every_answer_is_worked_out() -> None:
    memo.use(None)
    calls: list[str] = []
    assert _ask("a", "A", calls) == _ask("a", "A", calls) == "A"
    memo.save()
    assert calls == ["a", "a"]


def test_an_answer_is_kept_for_the_next_process_under_its_stamp(folder: Path) -> None:
    calls: list[str] = []
    assert _ask("a", "A", calls) == "A"
    memo.save()
    _new_process(folder)
    assert _ask("a", "not asked", calls) == "A"
    assert calls == ["a"]
    # Another version of the library: worked out afresh, and kept under it.
    assert _ask("a", "A2", calls, stamp="v2") == "A2"
    memo.save()
    _new_process(folder)
    assert _ask("a", "not asked", calls, stamp="v2") == "A2"
    assert calls == ["a", "a"]


def test_an_answer_that_raises_is_not_kept(folder: Path) -> None:
    def fail() -> str:
        raise ValueError("no")

    with pytest.raises(ValueError):
        memo.recall("kind", "a", lambda: "v1", fail, lambda kept: True)
    memo.save()
    assert not (folder / memo.FILE).exists()


def test_a_kept_answer_that_fails_its_check_is_worked_out(folder: Path) -> None:
    (folder / memo.FILE).write_text(
        json.dumps({"kind": {"stamp": "v1", "answers": {"a": 42}}}), encoding="utf-8"
    )
    calls: list[str] = []
    assert _ask("a", "A", calls) == "A" and calls == ["a"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"kind": []}',
        '{"kind": {"stamp": 1, "answers": {}}}',
        '{"kind": {"stamp": "v1", "answers": []}}',
        '{"kind": {"stamp": "v1"}}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_an_odd_file_is_ignored(folder: Path, text: str) -> None:
    (folder / memo.FILE).write_text(text, encoding="utf-8")
    calls: list[str] = []
    assert _ask("a", "A", calls) == "A" and calls == ["a"]
    memo.save()
    _new_process(folder)
    assert _ask("a", "not asked", calls) == "A"  # and the file is whole again


def test_each_kind_keeps_at_most_its_limit(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memo, "LIMIT", 3)
    calls: list[str] = []
    for key in "abcde":
        _ask(key, key.upper(), calls)
    memo.save()
    kept = json.loads((folder / memo.FILE).read_text(encoding="utf-8"))
    assert kept["kind"]["answers"] == {"a": "A", "b": "B", "c": "C"}
    # A full kind still replaces an answer it refuses.
    kept["kind"]["answers"]["b"] = 7
    (folder / memo.FILE).write_text(json.dumps(kept), encoding="utf-8")
    _new_process(folder)
    assert _ask("b", "B", calls) == "B"
    memo.save()
    kept = json.loads((folder / memo.FILE).read_text(encoding="utf-8"))
    assert kept["kind"]["answers"] == {"a": "A", "b": "B", "c": "C"}


def test_nothing_is_written_where_there_is_no_cache_folder(tmp_path: Path) -> None:
    memo.use(tmp_path / "build" / ".cache")
    try:
        _ask("a", "A", [])
        memo.save()
    finally:
        memo.use(None)
    assert not (tmp_path / "build").exists()


def test_a_kept_domain_must_be_the_domain_itself(folder: Path) -> None:
    """The memo file is only a cache: an address still cannot carry anything
    onto the wire that email-validator would refuse."""
    stamp = memo.versions("email-validator", "idna")
    (folder / memo.FILE).write_text(
        json.dumps(
            {
                "domain": {
                    "stamp": stamp,
                    "answers": {
                        "example.org": "example.org\r\nBcc: all@example.net",
                        "example.net": "other.example",
                        "bücher.example": "xn--bcher-kva.example",
                        "bücher.example.org": "xn--other-kva.example.org",
                    },
                }
            }
        ),
        encoding="utf-8",
    )
    addresses._ascii_domain.cache_clear()
    try:
        assert addresses.normalise("Ana@Example.org") == "ana@example.org"
        assert addresses.normalise("ana@example.net") == "ana@example.net"
        assert addresses.normalise("ana@bücher.example") == "ana@xn--bcher-kva.example"
        assert addresses.normalise("ana@bücher.example.org") == "ana@xn--bcher-kva.example.org"
        assert addresses._spells("xn--bcher-kva.example", "bücher.example")
        assert not addresses._spells("xn--bcher-kva.example", "bucher.example")
        assert not addresses._spells("xn--zz.example", "bücher.example")  # not Punycode
    finally:
        addresses._ascii_domain.cache_clear()


def test_a_catalog_reads_as_gettext_reads_it_compiled_by_babel() -> None:
    """Each .po's translations as the memo keeps them are what gettext finds in
    the .mo Babel compiles, for every word of the themes."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in sorted(LOCALE_DIR.glob("*.po")):
        data = po.read_bytes()
        mo = io.BytesIO()
        write_mo(mo, read_po(io.BytesIO(data), locale=po.stem))
        mo.seek(0)
        compiled = gettext.GNUTranslations(mo)
        kept = json.loads(json.dumps(i18n.read_catalog(data, po.stem)))
        for msgid in WORDS:
            assert kept.get(msgid, msgid) == compiled.gettext(msgid), (po.name, msgid)


def test_a_kept_date_and_catalog_are_used(folder: Path) -> None:
    i18n._compiled.cache_clear()
    try:
        assert i18n.long_date(dt.date(2025, 4, 16), "en") == "April 16, 2025"
        assert i18n.Words("es", {})("Unsubscribe") == "Darse de baja"
        memo.save()
        kept = json.loads((folder / memo.FILE).read_text(encoding="utf-8"))
        kept["long-date"]["answers"]["en 2025-04-16"] = "kept"
        [key] = kept["catalog"]["answers"]
        kept["catalog"]["answers"][key] = {"Unsubscribe": "kept"}
        (folder / memo.FILE).write_text(json.dumps(kept), encoding="utf-8")
        _new_process(folder)
        i18n._compiled.cache_clear()
        assert i18n.long_date(dt.date(2025, 4, 16), "en") == "kept"
        assert i18n.Words("es", {})("Unsubscribe") == "kept"
    finally:
        i18n._compiled.cache_clear()


# argv: the command line. Prints whether the collector is on, how many objects
# are frozen, and which of the libraries the memo spares were imported.
_PROCESS = """
import gc, json, sys
from composer.cli import main
sys.argv = ["newsletter", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
spared = [m for m in ("babel", "email_validator") if m in sys.modules]
print(json.dumps([gc.isenabled(), gc.get_freeze_count(), spared]))
"""


def _process(home: Path, *args: str) -> tuple[bool, int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-c", _PROCESS, *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    enabled, frozen, spared = json.loads(done.stdout.splitlines()[-1])
    return enabled, frozen, spared


def test_a_brief_command_keeps_its_answers_and_builds_the_same(newsletter_home: Path) -> None:
    out = newsletter_home / "build" / "2025-04-16"
    enabled, frozen, spared = _process(newsletter_home, "build", "2025-04-16")
    assert not enabled and frozen > 10_000  # off throughout; all frozen for teardown
    assert spared == ["babel", "email_validator"]  # the first build learns
    first = [(out / n).read_bytes() for n in ("email.html", "email.txt")]
    assert (newsletter_home / "build" / ".cache" / memo.FILE).is_file()
    _, _, spared = _process(newsletter_home, "build", "2025-04-16")
    assert spared == []  # the next one recalls
    assert [(out / n).read_bytes() for n in ("email.html", "email.txt")] == first


def test_a_long_command_collects_as_usual(newsletter_home: Path) -> None:
    enabled, frozen, _ = _process(newsletter_home, "subscribers", "count")
    assert enabled and frozen > 10_000  # on again, start-up set aside
    assert not (newsletter_home / "build").exists()
