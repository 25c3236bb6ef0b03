"""The batched upsert of the import keeps the rules of the one-row upsert exactly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from composer.store.database import Store

Row = tuple[str, str, str, dict[str, Any], list[str], str | None]

rows = st.lists(
    st.tuples(
        st.sampled_from(["a@x.org", "b@x.org", "c@x.org", "d@x.org"]),
        st.sampled_from(["", "Ana", "Bo"]),
        st.sampled_from(["", "en", "es"]),
        st.dictionaries(
            st.sampled_from(["city", "rating"]), st.sampled_from(["1", "Lima"]), max_size=2
        ),
        st.lists(st.sampled_from(["weekly", "news"]), max_size=2),
        st.sampled_from([None, "active", "unsubscribed", "bounced"]),
    ),
    max_size=12,
)


def _state(store: Store) -> list[tuple[Any, ...]]:
    return store.query(
        "SELECT s.email, s.name, s.status, s.language, s.attributes, "
        "(SELECT group_concat(l.name) FROM (SELECT l.name FROM memberships m JOIN lists l "
        "ON l.id = m.list_id WHERE m.subscriber_id = s.id ORDER BY l.name) l) "
        "FROM subscribers s ORDER BY s.email"
    )


@settings(max_examples=60, deadline=None)
@given(before=rows, batch=rows, as_text=st.booleans())
def test_upsert_many_equals_upserts_one_by_one(
    before: list[Row], batch: list[Row], as_text: bool
) -> None:
    """Attributes as a dict or as JSON text (as the import passes them)."""
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Store(Path(tmp) / "one.db"), Store(Path(tmp) / "many.db")
        with one.transaction() as db:
            for r in before:
                one.upsert(db, *r, stamp="t0")
        with many.transaction() as db:
            for r in before:
                many.upsert(db, *r, stamp="t0")
        with one.transaction() as db:
            expected = [one.upsert(db, *r, stamp="t1")[1] for r in batch]
        with many.transaction() as db:
            got = many.upsert_many(
                db,
                [
                    (e, n, lang, json.dumps(a, ensure_ascii=False) if as_text else a, ls, st_)
                    for e, n, lang, a, ls, st_ in batch
                ],
                "t1",
            )
        assert got == expected
        assert _state(many) == _state(one)
        one.close()
        many.close()
