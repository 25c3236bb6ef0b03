"""Answers of slow pure functions, kept between processes in the build cache.

A brief command asks a new process the same few questions every time, and some
answers cost far more to work out than to keep: email-validator compiles its
patterns (20 ms) to pass the From address's domain, Babel unpickles its locale
data (17 ms) to write the issue's date, and a message catalog is parsed and
compiled (13 ms), on every ``build`` of a 300 ms budget. ``recall`` keeps such
answers in ``build/.cache/memo.json``, each kind under a stamp naming the
versions that gave them: a kind whose stamp differs (a library upgraded) is
worked out afresh, and an unreadable or odd file is ignored.

The CLI says where the file is (``use``) and writes what was learned when the
process ends (``save``). With no folder set (tests, the library used directly)
every answer is worked out; an answer that raises is never kept.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from composer.fsutil import write_atomic

T = TypeVar("T")

FILE = "memo.json"
LIMIT = 1024  # answers of each kind; past it, nothing more is learned


class _Memo:
    def __init__(self) -> None:
        self.folder: Path | None = None
        self.kinds: dict[str, dict[str, Any]] = {}  # kind -> {"stamp", "answers"}
        self.loaded = False
        self.learned = False
        self.lock = threading.Lock()  # ``serve`` renders on several threads

    def load(self) -> None:
        self.loaded = True
        if self.folder is None:
            return
        try:
            data = json.loads((self.folder / FILE).read_text(encoding="utf-8"))
            kinds = {
                kind: {"stamp": text(entry["stamp"]), "answers": dict(entry["answers"])}
                for kind, entry in data.items()
                if isinstance(kind, str)
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return  # the memo is only ever a shortcut
        self.kinds = kinds


_MEMO = _Memo()


def use(folder: Path | None) -> None:
    """Keep answers in ``folder/memo.json`` from now on (None: keep none)."""
    with _MEMO.lock:
        if folder != _MEMO.folder:
            _MEMO.folder, _MEMO.kinds, _MEMO.loaded, _MEMO.learned = folder, {}, False, False


def recall(
    kind: str,
    key: str,
    stamp: Callable[[], str],
    compute: Callable[[], T],
    valid: Callable[[Any], bool],
) -> T:
    """``compute()``, or the answer kept for ``key`` under ``stamp()``.

    ``valid`` vets a kept answer (the file is ours, but anyone may edit it); the
    answer must survive JSON as it is (text, lists, string dictionaries)."""
    if _MEMO.folder is None:
        return compute()
    with _MEMO.lock:
        if not _MEMO.loaded:
            _MEMO.load()
        entry = _MEMO.kinds.get(kind)
        current = stamp()
        if entry is None or entry["stamp"] != current:
            entry = _MEMO.kinds[kind] = {"stamp": current, "answers": {}}
        answers: dict[str, Any] = entry["answers"]
        if key in answers and valid(answers[key]):
            kept: T = answers[key]
            return kept
    answer = compute()
    with _MEMO.lock:
        if key in answers or len(answers) < LIMIT:  # (a kept answer refused: replaced)
            answers[key] = answer
            _MEMO.learned = True
    return answer


def save() -> None:
    """Write what this process learned; a cache that cannot be written is no error."""
    with _MEMO.lock:
        if _MEMO.folder is None or not _MEMO.learned or not _MEMO.folder.is_dir():
            return  # (a command that built nothing leaves no cache folder behind)
        _MEMO.learned = False
        data = json.dumps(_MEMO.kinds, ensure_ascii=False).encode()
        path = _MEMO.folder / FILE
    with contextlib.suppress(OSError):
        write_atomic(path, data, durable=False)


@functools.cache
def versions(*distributions: str) -> str:
    """``name-version`` of each installed distribution, for a stamp."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in distributions:
        try:
            found.append(f"{name}-{version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}-?")
    return " ".join(found)


def text(value: Any) -> str:
    """``value`` if it is text, else ``TypeError``: for reading back a JSON cache."""
    if not isinstance(value, str):
        raise TypeError("not text")
    return value
