"""Load an issue file into a validated ``Issue``, with file:line:col errors.

YAML is composed into nodes first (libyaml when available), so that every
value keeps its position; pydantic's error paths are then mapped back to the
node they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from composer.errors import IssueError
from composer.issue.editions import EDITION_KEYS, LANGUAGE_RE, Positions, edition_data, unmoved
from composer.issue.model import BLOCK_TYPES, Issue

try:  # libyaml's composer is ~10x faster than the pure-Python one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is in the manylinux wheels
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


_SCALARS = yaml.constructor.SafeConstructor()


@dataclass(frozen=True)
class LoadedIssue:
    """A validated issue, each of its editions, and where it came from."""

    issue: Issue  # the main edition
    path: Path
    source: bytes
    root: yaml.Node
    editions: dict[str, Issue] = field(default_factory=dict)  # by language, main first
    data: Any = None  # the file's plain values (editions compared in ``check``)
    moved: dict[str, Positions] = field(default_factory=dict)  # per edition, see editions.merge

    def __post_init__(self) -> None:
        if not self.editions:
            object.__setattr__(self, "editions", {self.issue.language: self.issue})

    @property
    def main(self) -> str:
        return self.issue.language

    def edition(self, code: str) -> Issue:
        """The edition in ``code`` (any case); a located error names the ones there are."""
        for known, issue in self.editions.items():
            if known.lower() == code.lower():
                return issue
        raise IssueError(
            [
                f"{self.path}: no {code!r} edition; this issue has "
                + ", ".join(self.editions)
                + " (add one under editions:)"
            ]
        )

    def locate(
        self, loc: tuple[int | str, ...], edition: str | None = None, merged: bool = True
    ) -> str:
        """``file:line:col`` of ``loc``: in edition's overlay where it gives that
        value, else in the main edition. ``merged``: ``loc`` is a path in the
        edition as merged (a block an ``omit`` moved is found where it is written)."""
        if edition is not None and edition != self.main:
            if merged:
                loc = unmoved(loc, self.moved.get(edition, {}))
            found = _find(self.root, ("editions", edition, *loc))
            if found is not None:
                return f"{self.path}:{_mark(found)}"
        return f"{self.path}:{_position(self.root, loc)}"


def _walk(
    node: yaml.Node, loc: tuple[int | str, ...], at_key: bool = False
) -> tuple[yaml.Node, bool]:
    """The deepest node along ``loc`` (the key of the last one if ``at_key``), and
    whether the whole of ``loc`` was there."""
    for i, part in enumerate(loc):
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = key if at_key and i == len(loc) - 1 else value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            return node, False
        node = child
    return node, True


def _find(node: yaml.Node, loc: tuple[int | str, ...]) -> yaml.Node | None:
    """The node at exactly ``loc``, or None."""
    found, whole = _walk(node, loc)
    return found if whole else None


def _mark(node: yaml.Node) -> str:
    return f"{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _position(node: yaml.Node, loc: tuple[int | str, ...], at_key: bool = False) -> str:
    """``line:col`` (1-based) of the deepest node along ``loc`` (of its key if ``at_key``)."""
    return _mark(_walk(node, loc, at_key)[0])


# Bounded work for any input: an issue file is text an editor wrote, so these
# limits are far above any real issue (the seed is 17 KB, its longest field 1.3 KB)
# and far below what would cost a machine memory or minutes.
MAX_FILE_BYTES = 1_000_000
MAX_TEXT_CHARS = 50_000
MAX_NODES = 50_000
# Plain YAML only: no aliases, no language-specific or custom tags.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")
}


def _where(path: Path, node: yaml.Node) -> str:
    mark = node.start_mark
    return f"{path}:{mark.line + 1}:{mark.column + 1}"


class _Builder:
    """Plain Python values from a node tree, refusing what an issue file has no use
    for: duplicate keys, aliases (a billion-laughs file, a self-referencing one),
    tags beyond plain YAML, huge values, too many nodes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: set[int] = set()

    def fail(self, node: yaml.Node, message: str) -> IssueError:
        return IssueError([f"{_where(self.path, node)}: {message}"])

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self.seen:
            return self._alias(node)
        self.seen.add(id(node))
        if len(self.seen) > MAX_NODES:
            raise self.fail(
                node,
                f"more than {MAX_NODES:,} values; an issue file is "
                "not that big: split it or remove repeated parts",
            )
        if node.tag not in _PLAIN_TAGS:
            raise self.fail(
                node,
                f"the tag {node.tag} is not allowed in an issue file; "
                "remove it (plain text, numbers, lists and fields only)",
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node)
                if not isinstance(key, str | int | float | bool | None):
                    raise self.fail(key_node, "a field name must be plain text")
                if key in out:
                    raise self.fail(key_node, f"{key}: duplicate key; keep only one")
                out[key] = self.build(value_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child) for child in node.value]
        return self._scalar(node)

    def _alias(self, node: yaml.Node) -> Any:
        raise self.fail(
            node,
            "YAML anchors and aliases (&name, *name) are not allowed in "
            "issue files; write the value out where it is used",
        )

    def _scalar(self, node: yaml.Node) -> Any:
        text = str(node.value)
        if len(text) > MAX_TEXT_CHARS:
            raise self.fail(
                node,
                f"this text is {len(text):,} characters; a field holds at "
                f"most {MAX_TEXT_CHARS:,} (an email must stay under 102 KB)",
            )
        try:
            return _SCALARS.construct_object(node)
        except Exception as exc:  # noqa: BLE001 - any failure is this value's, located
            kind = node.tag.rpartition(":")[2]
            detail = str(exc).splitlines()[0][:120]
            raise self.fail(
                node, f"cannot read {text[:40]!r} as {kind} ({detail}); quote it to make it text"
            ) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts) or "(document)"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's discriminator tags (``sections.0.lead.story``)."""
    tags = set(BLOCK_TYPES)
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in tags and i > 0 and isinstance(loc[i - 1], int):
            continue
        out.append(part)
    return tuple(out)


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "extra_forbidden":
        return "unknown field; check the spelling (see `newsletter schema`)"
    if kind == "union_tag_invalid":
        return f"type must be one of {', '.join(BLOCK_TYPES)}"
    if kind == "union_tag_not_found":
        return f"each section needs a type: {', '.join(BLOCK_TYPES)}"
    message: str = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    if isinstance(got, dict | list):
        got = type(got).__name__
    return f"{message[0].lower()}{message[1:]} (got {got!r})"


def parse_yaml(source: bytes, path: Path) -> tuple[yaml.Node, Any]:
    """The node tree and plain data of an issue file, with file:line errors."""
    if len(source) > MAX_FILE_BYTES:
        raise IssueError(
            [
                f"{path}:1:1: the file is {len(source) / 1e6:.1f} MB; an issue file "
                f"is at most {MAX_FILE_BYTES / 1e6:g} MB (an email must stay under "
                "102 KB)"
            ]
        )
    try:
        root = yaml.compose(source, Loader=_Loader)
    except RecursionError:
        raise IssueError(
            [f"{path}:1:1: nested too deeply; an issue file has a few levels of fields and lists"]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        raise IssueError(
            [
                f"{path}:{where}: YAML syntax error: {exc.problem or exc.context}; "
                "check indentation and quote text containing ': ' or '#'"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise IssueError([f"{path}:1:1: YAML error: {exc}"]) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise IssueError([f"{path}:1:1: an issue file must be a YAML mapping of fields"])
    try:
        return root, _Builder(path).build(root)
    except RecursionError:
        raise IssueError(
            [f"{path}:1:1: nested too deeply; an issue file has a few levels of fields and lists"]
        ) from None


def _line_col(problem: str) -> tuple[int, int]:
    parts = problem.split(":")
    try:
        return int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return 0, 0


def _validate(
    data: Any,
    root: yaml.Node,
    path: Path,
    edition: str | None = None,
    moved: Positions | None = None,
) -> tuple[Issue | None, list[str]]:
    """``data`` as an ``Issue``, or the located problems (an edition's are placed
    in its overlay where it gives the value, else in the main edition)."""
    try:
        return Issue.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = _clean_loc(tuple(error["loc"]))
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = (*loc, "type")
            at_key = error["type"] == "extra_forbidden"
            where = _position(root, loc, at_key)
            name = _field_path(loc)
            if edition is not None:
                own = unmoved(loc, moved or {})
                found = _find(root, ("editions", edition, *own))
                if found is not None or at_key:
                    where = _position(root, ("editions", edition, *own), at_key)
                name = f"editions.{edition}.{name}"
            problems.append(f"{path}:{where}: {name}: {_describe(error)}")
        return None, problems


def _edition_problems(root: yaml.Node, path: Path, code: str, overlay: Any, main: str) -> list[str]:
    where = f"{path}:{_position(root, ('editions', code))}"
    if code.lower() == main.lower():
        return [
            f"{path}:{_position(root, ('editions', code), True)}: editions.{code}: this is "
            "the main edition's language (newsletter.language); write it at the top level"
        ]
    if not LANGUAGE_RE.match(code):
        return [f"{where}: editions.{code}: not a language tag: use 'es', 'fr', 'pt-BR'"]
    if not isinstance(overlay, dict):
        return [f"{where}: editions.{code}: give the fields that differ: subject, sections, ..."]
    problems = []
    for key in overlay:
        if key not in EDITION_KEYS:
            problems.append(
                f"{path}:{_position(root, ('editions', code, key), True)}: editions.{code}."
                f"{key}: an edition can change only {', '.join(EDITION_KEYS)}; the rest is shared"
            )
    nl = overlay.get("newsletter")
    if isinstance(nl, dict) and "language" in nl:
        problems.append(
            f"{path}:{_position(root, ('editions', code, 'newsletter', 'language'), True)}: "
            f"editions.{code}.newsletter.language: an edition's language is its key ({code}); "
            "remove this"
        )
    return problems


def parse_issue(source: bytes, path: Path) -> LoadedIssue:
    """Validate ``source`` (the bytes of ``path``) into an ``Issue`` and its editions."""
    root, data = parse_yaml(source, path)
    issue, problems = _validate(data, root, path)
    editions: dict[str, Issue] = {}
    moved: dict[str, Positions] = {}
    if issue is not None:
        editions[issue.language] = issue
        for code, overlay in (data.get("editions") or {}).items():
            found = _edition_problems(root, path, str(code), overlay, issue.language)
            if not found:
                moves = moved[str(code)] = {}
                merged = edition_data(data, str(code), overlay, moves)
                edition, found = _validate(merged, root, path, str(code), moves)
                if edition is not None:
                    editions[str(code)] = edition
            problems.extend(found)
    if problems:
        prefix = len(str(path))
        problems.sort(key=lambda p: _line_col(p[prefix:]))
        raise IssueError(problems)
    assert issue is not None
    return LoadedIssue(
        issue=issue, path=path, source=source, root=root, editions=editions, data=data, moved=moved
    )


def read_source(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise IssueError(
                [
                    f"{path}:1:1: the file is {size / 1e6:.1f} MB; an issue file is "
                    f"at most {MAX_FILE_BYTES / 1e6:g} MB"
                ]
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise IssueError(
            [
                f"{path}: no such issue file; list them with `ls issues/` or start one "
                "with `newsletter new`"
            ]
        ) from None
    except OSError as exc:
        raise IssueError([f"{path}: cannot read: {exc.strerror}"]) from None


def load_issue(path: Path) -> LoadedIssue:
    return parse_issue(read_source(path), path)
