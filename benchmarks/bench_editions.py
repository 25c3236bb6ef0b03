"""Editions benchmarks (issue: any newsletter, in any language).
Run: python benchmarks/bench_editions.py [N] [--runs K]

Same run, same machine:
- rendering the seed issue alone vs with its Spanish edition (every edition is
  rendered once per issue: expected ~2x);
- per-message build with one edition vs two, each subscriber's edition chosen by
  their language as the engine does (expected ~1.0x: a dict look-up);
- `newsletter send` of the seed issue to N subscribers (default 20,000) on
  Postfix's smtp-sink, 4 connections, all English vs half Spanish, interleaved,
  medians of K runs (default 3).
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import sys
from pathlib import Path

from bench_send import ensure_postfix, free_port, make_home, send_env, start_sink, timed_child
from common import BIN, REPO, median_seconds, messages_and_runs

sys.path.insert(0, str(REPO))

from composer.config import load_settings  # noqa: E402
from composer.issue.editions import choose  # noqa: E402
from composer.issue.load import load_issue  # noqa: E402
from composer.render.pipeline import render_edition  # noqa: E402
from composer.send.prepare import message_templates, prepare  # noqa: E402
from composer.send.recipients import Recipients  # noqa: E402
from tests.helpers import bilingual_seed  # noqa: E402


def render_seconds(path: Path) -> float:
    def once() -> None:
        loaded = load_issue(path)
        for code in loaded.editions:
            render_edition(loaded, code)

    return median_seconds(once, 15, warmup=2)


def per_message_us(home: Path, languages: list[str]) -> float:
    settings = load_settings(home, env={})
    prepared = prepare(str(home / "issues" / "2025-04-16.yaml"), settings)
    templates = message_templates(settings, prepared)
    main = prepared.main
    make = Recipients(settings, prepared.slug)
    people = [(i, f"reader{i}@example.org", f"Reader {i}", languages[i % 2]) for i in range(2000)]
    chosen: dict[str, str | None] = {}

    def batch() -> None:
        for sid, email, name, language in people:
            code = chosen.get(language)
            if code is None and language not in chosen:
                code = choose(language, templates, main)
                chosen[language] = None if code == main else code
                code = chosen[language]
            template = templates[code or main]
            template.build_chunks(make.subscriber(sid, email, name, code), wire=True)

    return median_seconds(batch, 11, warmup=2) / len(people) * 1e6


def home_with_languages(n: int, bilingual: bool) -> Path:
    home = make_home(n)
    if bilingual:
        bilingual_seed(home)
        db = sqlite3.connect(home / "newsletter.db")
        db.execute("UPDATE subscribers SET language = 'es' WHERE id % 2 = 0")
        db.commit()
        db.close()
    return home


def send_rate(n: int, port: int, bilingual: bool) -> float:
    home = home_with_languages(n, bilingual)
    elapsed, _, out = timed_child(
        [str(BIN / "newsletter"), "send", "2025-04-16", "--yes", "--connections", "4"],
        send_env(home, port),
        home,
    )
    assert f"{n:,} sent" in out, out
    if bilingual:
        assert "es " in out.split("sent by edition:")[1], out
    shutil.rmtree(home)
    return n / elapsed


def main() -> None:
    n, runs = messages_and_runs(20_000, 3)
    one = home_with_languages(10, False)
    two = home_with_languages(10, True)
    seed = one / "issues" / "2025-04-16.yaml"
    both = two / "issues" / "2025-04-16.yaml"
    r1, r2 = render_seconds(seed), render_seconds(both)
    print(f"render, seed alone:          {r1 * 1000:8.1f} ms")
    print(f"render, seed + es edition:   {r2 * 1000:8.1f} ms  ({r2 / r1:.2f}x)")
    m1 = per_message_us(one, ["en", "en"])
    m2 = per_message_us(two, ["en", "es"])
    print(f"build per message, 1 edition:  {m1:6.1f} µs")
    print(f"build per message, 2 editions: {m2:6.1f} µs  ({m2 / m1:.2f}x)")
    ensure_postfix()
    port = free_port()
    sink = start_sink(port)
    try:
        mono, bi = [], []
        for _ in range(runs):  # interleaved: both see the same machine
            mono.append(send_rate(n, port, False))
            bi.append(send_rate(n, port, True))
    finally:
        sink.terminate()
        sink.wait()
    a, b = statistics.median(mono), statistics.median(bi)
    print(f"send {n:,}, one edition:          {a:8,.0f} msgs/s (median of {runs})")
    print(f"send {n:,}, two editions (half es): {b:8,.0f} msgs/s ({b / a:.2f}x)")
    shutil.rmtree(one)
    shutil.rmtree(two)


if __name__ == "__main__":
    main()
