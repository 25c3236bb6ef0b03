"""Design benchmarks (issue: at its best in every inbox). Run: python benchmarks/bench_design.py

Same run, same machine:
- the HTML part's size as sent (quoted-printable, CRLF) of the seed issue, and of
  the seed with five more other-news links in every region, against the 85 KB
  target and Gmail's 102 KB clip;
- the 8bit form's size (sent to relays that offer 8BITMIME);
- in-process render time (both parts, every theme) of the seed and of the
  release-notes newsletter that uses every block type, median of 15, against
  the render of the same issue with the text part only (Jinja, no MJML/premailer).
"""

from __future__ import annotations

import sys

from common import REPO, median_seconds

sys.path.insert(0, str(REPO))

from composer.issue.load import parse_issue  # noqa: E402
from composer.render.fields import Placeholders  # noqa: E402
from composer.render.pipeline import render_issue, words_for  # noqa: E402
from composer.render.text import render_text  # noqa: E402
from composer.render.themes import bundled_themes, environment  # noqa: E402
from tests.helpers import seed_with_more_links  # noqa: E402

SEED = REPO / "issues" / "2025-04-16.yaml"
NOTES = REPO / "tests" / "data" / "release-notes.yaml"


def main() -> None:
    seed = SEED.read_text(encoding="utf-8")
    limit, clip = 85 * 1024, 102 * 1024
    for name, source in (("seed", seed), ("seed + 30 links", seed_with_more_links(seed))):
        rendered = render_issue(parse_issue(source.encode(), SEED))
        qp = rendered.html_bytes
        raw = len(rendered.html.encode())
        print(
            f"{name:<16} HTML as sent {qp:>7,} B ({qp / limit:.2f} of the 85 KB target, "
            f"{qp / clip:.2f} of Gmail's clip); 8bit {raw:,} B"
        )
    for path, label in ((SEED, "seed"), (NOTES, "release notes")):
        source = path.read_bytes()
        for theme in bundled_themes():
            themed = source.replace(b"\ndate:", f"\ntheme: {theme}\ndate:".encode(), 1)
            loaded = parse_issue(themed, path.with_name("2025-04-16.yaml"))
            whole = median_seconds(lambda loaded=loaded: render_issue(loaded), 15, warmup=2)
            issue = loaded.issue
            env = environment(issue.theme_name, None)
            text = median_seconds(
                lambda issue=issue, env=env: render_text(
                    issue, Placeholders(), env, words=words_for(issue)
                ),
                15,
                warmup=2,
            )
            print(
                f"render {label:<14} {theme:<8} {whole * 1000:6.1f} ms "
                f"(text part alone {text * 1000:5.1f} ms, {text / whole:.2f})"
            )


if __name__ == "__main__":
    main()
