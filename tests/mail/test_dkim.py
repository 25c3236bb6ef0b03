"""DKIM canonicalisation chunk by chunk equals the whole body's, whatever the
values (empty ones included) and the whitespace around them; folding for 8bit
keeps lines short and shows the same."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.mail.dkim import _canonical_body
from composer.mail.message import _Form, fold_lines

pytestmark = pytest.mark.no_database

statics = st.lists(
    st.text(alphabet=st.sampled_from(list("ab .\t\r\n")), max_size=12).map(
        lambda t: t.replace("\r", "").replace("\n", "\r\n")
    ),
    min_size=2,
    max_size=5,
)
values = st.text(alphabet=st.sampled_from(list("xy .")), max_size=6).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(parts=statics, names=st.lists(values, min_size=4, max_size=4), eight_bit=st.booleans())
def test_canonical_body_in_chunks_equals_the_whole(
    parts: list[str], names: list[str], eight_bit: bool
) -> None:
    body: list[bytes | tuple[str, bool]] = [b"\r\npreamble\r\n"]
    for i, part in enumerate(parts):
        body.append(part.encode())
        if i < len(parts) - 1:
            body.append(("name" if i % 2 else "email", i % 3 == 0))
    body.append(b"\r\n--end--\r\n")
    form = _Form(body, eight_bit)
    vals = {"name": names[0], "email": names[1], "view_url": "v", "unsubscribe_url": "u"}
    raw = form.parts.copy()
    form.fill(raw, vals, wire=False)
    whole = b"".join(raw[2:])[2:]  # the body, after the blank line that ends the header
    assert b"".join(form.canonical_body(vals)) == _canonical_body(whole, "relaxed")


words = st.text(alphabet=st.sampled_from(list('abc<>=" ')), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(line=st.lists(words, min_size=50, max_size=120).map(" ".join), html=st.booleans())
def test_folding_breaks_only_at_spaces_outside_attribute_values(line: str, html: bool) -> None:
    folded = fold_lines(line, html)
    if folded is None:
        return  # nowhere to break: the message goes as quoted-printable
    assert folded.replace("\n", " ") == line  # each break is a space it replaced
    assert all(len(part.encode()) <= 990 for part in folded.split("\n"))
    if html:  # never inside a quoted attribute value
        for cut in (m.start() for m in re.finditer("\n", folded)):
            before = folded[:cut]
            inside_tag = before.rfind("<") > before.rfind(">")
            if inside_tag:
                tag = before[before.rfind("<") :]
                assert tag.count('"') % 2 == 0


def test_a_folded_line_has_room_for_the_longest_name() -> None:
    from composer.render.fields import token

    line = "word " * 150 + token("name") + " and " + token("email") + " more" * 120
    folded = fold_lines(line, html=False)
    assert folded is not None
    longest = {token("name"): "界" * 120, token("email"): "a" * 64 + "@" + "b" * 189}
    for part in folded.split("\n"):
        for tok, value in longest.items():
            part = part.replace(tok, value)
        assert len(part.encode()) <= 998
