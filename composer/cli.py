"""The ``newsletter`` command. Thin: parse, call one core function, print.

Every ``ComposerError`` becomes ``Error: ...`` (or one line per problem for
an invalid issue file) on stderr and exit status 1; usage errors exit 2
(Click). Output goes to stdout, errors and warnings to stderr. Heavy
libraries are imported inside the commands that use them, so that
``newsletter --help`` stays fast.

``-v`` and ``--dir DIR`` are accepted anywhere on the command line.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from composer.errors import ComposerError, IssueError, StoreError

if TYPE_CHECKING:
    from composer.config import Settings
    from composer.send.engine import Progress, SendSummary
    from composer.store.database import Store

IN_DOUBT_EXIT = 3  # `send` finished, but some messages are in doubt

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass(frozen=True)
class _Globals:
    """Options given anywhere on the command line, for this invocation."""

    verbose: bool = False
    home: str | None = None


# Set for each invocation when the command line is parsed.
_GLOBALS: ContextVar[_Globals | None] = ContextVar("composer_globals", default=None)


def _take_globals(args: list[str]) -> tuple[list[str], _Globals]:
    """Remove ``-v``/``--verbose`` and ``--dir DIR`` from anywhere before ``--``."""
    verbose, home = False, None
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in ("-v", "--verbose"):
            verbose = True
        elif arg == "--dir":
            if i + 1 >= len(args):
                raise typer.BadParameter("--dir needs a folder", param_hint="--dir")
            home = args[i + 1]
            i += 1
        elif arg.startswith("--dir="):
            home = arg.removeprefix("--dir=")
        else:
            rest.append(arg)
        i += 1
    return rest, _Globals(verbose, home)


class _Group(TyperGroup):
    """Global options anywhere; full one-line descriptions in the command list."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args, found = _take_globals(list(args))
            _GLOBALS.set(found)
            _configure_logging(found.verbose)
        result: list[str] = super().parse_args(ctx, args)
        return result

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, (cmd.help or "").strip().splitlines()[0]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_HANDLER_NAME = "composer-cli"


def _configure_logging(verbose: bool) -> None:
    """Our own log lines (``composer.*``) to stderr; libraries' debug output stays off."""
    logger = logging.getLogger("composer")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


def _globals() -> _Globals:
    return _GLOBALS.get() or _Globals()


def _version(value: bool) -> None:
    if value:
        from composer import __version__

        typer.echo(f"newsletter-composer {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="newsletter",
    cls=_Group,
    help="Compose, check, preview and send an email newsletter from YAML issue files.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings=CONTEXT,
)

IssueArg = Annotated[
    str, typer.Argument(help="Issue file (issues/2025-04-16.yaml) or its date (2025-04-16).")
]


# Commands whose work is bounded by one issue or a few rows: they run to the
# end with the cyclic garbage collector off (see ``main``). Any other command,
# group or future addition gets it back before it starts.
_BRIEF = frozenset(
    {"build", "check", "new", "schema", "strings", "init", "dkim", "theme", "doctor", "status"}
)
_collector_held = False  # ``main`` turned the collector off and it is still off
# Whether this invocation is one of ``_BRIEF``: only those keep answers in the
# build cache's memo (``composer.memo``), which is where a new process's fixed
# costs are most of the wait.
_BRIEF_RUN: ContextVar[bool] = ContextVar("composer_brief", default=False)


def _resume_collector() -> None:
    """The collector back on, with everything start-up made set aside for good
    (module contents, classes, compiled schemas: alive until exit anyway), so
    that a long send or import never walks it."""
    global _collector_held
    if _collector_held:
        _collector_held = False
        gc.freeze()
        gc.enable()


@app.callback(epilog="-v/--verbose and --dir DIR may also be given after the command.")
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what newsletter does to stderr.")
    ] = False,
    folder: Annotated[
        str | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="The newsletter's folder [default: NEWSLETTER_HOME, or the working "
            "folder or its nearest parent with an issues/ folder]",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Compose, check, preview and send an email newsletter from YAML issue files."""
    brief = ctx.invoked_subcommand in _BRIEF
    _BRIEF_RUN.set(brief)
    if not brief:
        _resume_collector()


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Map our errors to messages and exit codes; nothing else is caught."""
    try:
        yield
    except IssueError as exc:
        for problem in exc.problems:
            _err(problem)
        raise typer.Exit(1) from None
    except ComposerError as exc:
        _err(f"Error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def _settings() -> Settings:
    from composer import memo
    from composer.config import load_settings
    from composer.home import find_home

    settings = load_settings(find_home(_globals().home))
    memo.use(settings.cache_dir if _BRIEF_RUN.get() else None)
    return settings


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


@app.command()
def build(
    issue: IssueArg,
    out: Annotated[
        Path | None, typer.Option(help="Folder to write to [default: build/DATE]")
    ] = None,
    edition: Annotated[
        str | None,
        typer.Option(help="Only this language's edition, e.g. es [default: every edition]"),
    ] = None,
) -> None:
    """Render an issue: write email.html, email.txt and email.eml (for a sample subscriber).

    The main edition goes in build/DATE/, each other language's in build/DATE/LANG/.
    """
    from composer.send.prepare import build as build_issue

    with _errors():
        result = build_issue(issue, _settings(), out, edition)
    for path in result.files:
        typer.echo(f"wrote {path}")
    for code, rendered in result.prepared.editions.items():
        if edition is None or code != result.prepared.main or len(result.prepared.editions) == 1:
            label = f" ({code})" if len(result.prepared.editions) > 1 else ""
            typer.echo(
                f"HTML part{label}: {_kb(rendered.html_bytes)} as sent (Gmail clips at 102 KB)"
            )
    for finding in result.prepared.findings:
        _err(str(finding))


@app.command()
def check(issue: IssueArg) -> None:
    """Validate and lint an issue; exit 1 if it has errors, 0 with warnings listed."""
    from composer.send.prepare import prepare

    with _errors():
        prepared = prepare(issue, _settings())
    findings = prepared.findings
    for finding in findings:
        typer.echo(str(finding))
    errors = len(prepared.errors)
    warnings = len(findings) - errors
    summary = f"{prepared.loaded.path}: {errors} error(s), {warnings} warning(s)"
    if errors:
        _err(summary)
        raise typer.Exit(1)
    typer.echo(summary)


@app.command()
def new(
    date: Annotated[
        str | None, typer.Option(help="Date of the new issue, YYYY-MM-DD [default: a week on]")
    ] = None,
) -> None:
    """Start the next issue from the structure of the latest one, stories emptied."""
    from composer.issue.files import new_issue

    when = None
    if date is not None:
        try:
            when = dt.date.fromisoformat(date)
        except ValueError:
            raise typer.BadParameter(
                f"{date!r} is not a date like 2025-04-23", param_hint="--date"
            ) from None
    with _errors():
        path = new_issue(_settings().home, when)
    typer.echo(f"started {path}; fill it in, then run: newsletter check {path}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of issue files (for completion and validation in editors)."""
    from composer.issue.model import json_schema

    json.dump(json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    typer.echo()


@app.command()
def strings(
    language: Annotated[
        str, typer.Option(help="Show the words in this language, e.g. es or ar.")
    ] = "en",
) -> None:
    """List the theme's own words, as newsletter.strings may replace them, in a language."""
    from composer.issue.words import WORDS, catalog_languages
    from composer.render.i18n import Words

    words = Words(language, {})
    typer.echo(f"# The theme's words in {language!r} (catalogs: {', '.join(catalog_languages())}).")
    typer.echo("# Replace any of them in the issue file, under newsletter: strings:")
    for msgid, where in WORDS.items():
        typer.echo(f"# {where}")
        key, value = (json.dumps(t, ensure_ascii=False) for t in (msgid, words(msgid)))
        typer.echo(f"{key}: {value}")


@app.command()
def init(
    folder: Annotated[
        Path, typer.Argument(help="Folder to create the newsletter in [default: here].")
    ] = Path("."),
    title: Annotated[str, typer.Option(help="The newsletter's title.")] = "My Newsletter",
) -> None:
    """Create a newsletter: .env with a fresh secret key, and issues/ with a first issue."""
    from composer.fsutil import relative
    from composer.home import init_newsletter

    with _errors():
        made = init_newsletter(folder, title)
    issue = made.first_issue.stem
    where = relative(made.folder.resolve())
    go = "" if str(where) == "." else f"  cd {where}\n"
    typer.echo(
        f"created a newsletter in {where}/:\n"
        f"  {made.env_file}  settings, with a fresh secret key (keep it private)\n"
        f"  {made.first_issue}  your first issue: edit it\n"
        f"next:\n{go}"
        f"  newsletter build {issue}      write build/{issue}/email.html\n"
        f"  newsletter preview {issue}    see it in the browser as you edit\n"
        "  newsletter subscribers import FILE.csv\n"
        f"  newsletter send {issue}       (set NEWSLETTER_FROM and SMTP_HOST in .env "
        "first; without SMTP_HOST it goes to the local outbox)"
    )


def _command_group(name: str, help: str) -> typer.Typer:
    """A group of subcommands (``newsletter theme ...``) with the app's conventions."""
    group = typer.Typer(
        help=help, cls=_Group, no_args_is_help=True, rich_markup_mode=None, context_settings=CONTEXT
    )
    app.add_typer(group, name=name)
    return group


theme_app = _command_group("theme", "Themes: copy a bundled one into the newsletter to restyle it.")
dkim_app = _command_group("dkim", "DKIM: make a signing key; check a message's signatures.")


@dkim_app.command("keygen")
def dkim_keygen(
    selector: Annotated[
        str, typer.Option("--selector", help="The key's name in DNS, e.g. news2026.")
    ],
    kind: Annotated[
        str, typer.Option("--type", help="rsa (2048-bit, every receiver) or ed25519 (RFC 8463).")
    ] = "rsa",
) -> None:
    """Make a DKIM signing key; print the DNS record to publish and its settings.

    The key goes to dkim/SELECTOR.TYPE.pem (mode 0600); an existing key is never
    overwritten (rotate by publishing a new selector)."""
    from composer.fsutil import relative
    from composer.send.signing import make_key

    if kind not in ("rsa", "ed25519"):
        raise typer.BadParameter("rsa or ed25519", param_hint="--type")
    with _errors():
        made = make_key(_settings(), selector, kind)
    typer.echo(f"wrote {relative(made.path)} (private: keep it so)")
    typer.echo("publish this DNS record:")
    # A TXT string holds at most 255 bytes: a 2048-bit key's record is two strings.
    strings = " ".join(f'"{made.record[i : i + 250]}"' for i in range(0, len(made.record), 250))
    typer.echo(f"  {made.record_name}. IN TXT {strings}")
    typer.echo("then sign with it: add to .env")
    for line in made.settings:
        typer.echo(f"  {line}")


@dkim_app.command("check")
def dkim_check(
    file: Annotated[Path, typer.Argument(help="A built or received message (.eml).")],
    record: Annotated[
        list[str] | None,
        typer.Option(
            "--record",
            help="SELECTOR=TXT: check against this record instead of DNS (repeatable).",
        ),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never ask DNS.")] = False,
) -> None:
    """Check a message's DKIM signatures against the published DNS records.

    Each must be valid and cover both List-Unsubscribe headers (else receivers
    offer no one-click unsubscribe); exit 1 unless one valid signature does."""
    from composer.send.signing import check_message

    records = {}
    for item in record or []:
        selector, eq, text = item.partition("=")
        if not eq or not text.strip():
            raise typer.BadParameter(
                "SELECTOR=TXT, e.g. news2026='v=DKIM1; k=rsa; p=...'", param_hint="--record"
            )
        records[selector.strip()] = text
    with _errors():
        verdicts = check_message(_settings(), file, records, offline)
    good = False
    for v in verdicts:
        covers = "covers" if v.covers_unsubscribe else "does NOT cover"
        typer.echo(
            f"{v.algorithm} d={v.domain} s={v.selector}: {v.reason}; {covers} both "
            "List-Unsubscribe headers"
        )
        good = good or (v.valid and v.covers_unsubscribe)
    if not good:
        _err(f"{file}: no valid DKIM signature covers both List-Unsubscribe headers")
        raise typer.Exit(1)


@theme_app.command("copy")
def theme_copy(
    name: Annotated[str, typer.Argument(help="A bundled theme: default, minimal, ...")],
    as_name: Annotated[
        str | None, typer.Option("--as", help="Name of the copy [default: NAME].")
    ] = None,
) -> None:
    """Copy a bundled theme into the newsletter's templates/ to restyle it."""
    import re

    from composer.fsutil import relative
    from composer.render.themes import copy_theme

    if as_name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", as_name):
        raise typer.BadParameter("use lower-case letters, digits, - and _", param_hint="--as")
    with _errors():
        target = copy_theme(name, _settings().home, as_name)
    typer.echo(
        f"copied theme {name!r} to {relative(target)}/; edit it there, and use it with "
        f"`theme: {target.name}` in the newsletter's issues"
    )


@theme_app.command("list")
def theme_list() -> None:
    """List the themes: the bundled ones and the newsletter's own."""
    from composer.render.themes import bundled_themes, own_root

    with _errors():
        own = own_root(_settings().home)
    for name in bundled_themes():
        typer.echo(f"{name}\tbundled")
    if own is not None:
        for folder in sorted(p for p in own.iterdir() if p.is_dir()):
            typer.echo(f"{folder.name}\t{folder}")


# -- subscribers -------------------------------------------------------------

subscribers_app = _command_group("subscribers", "Manage subscribers (in the database).")
bounces_app = _command_group("bounces", "Bounces and complaints: read what came back.")


db_app = _command_group("db", "The database: copy a SQLite newsletter into PostgreSQL.")


@db_app.command("migrate-to")
def db_migrate_to(
    url: Annotated[
        str,
        typer.Argument(help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE (an empty database)."),
    ],
) -> None:
    """Copy this newsletter's SQLite database into PostgreSQL, verified by counts.

    One transaction: the target gets everything or nothing. The SQLite file is left
    as it is (keep it as a backup); then set NEWSLETTER_DB to the URL.
    """
    from composer.dburl import DatabaseURL
    from composer.send.lock import SendLock
    from composer.store.copy import migrate_to

    if not DatabaseURL.accepts(url):
        raise typer.BadParameter(
            "give a PostgreSQL URL: postgresql://USER:PASSWORD@HOST:PORT/DATABASE", param_hint="URL"
        )
    settings = _settings()
    target = DatabaseURL(url)
    with _errors():
        source = settings.database
        if not isinstance(source, Path):
            raise StoreError(
                f"NEWSLETTER_DB already names PostgreSQL ({source}); migrate-to copies from the "
                "SQLite file: unset NEWSLETTER_DB (or set it to the file) and run again"
            )
        with SendLock(source, wait=5.0):  # no send adds deliveries meanwhile
            copied = migrate_to(source, target)
    for table, n in copied.rows.items():
        typer.echo(f"  {table:<12} {n:>9,}")
    typer.echo(f"copied {source} into {target}: verified, every table has as many rows")
    typer.echo(f"next: set NEWSLETTER_DB={target} in .env (keep {source.name} as a backup)")


@bounces_app.command("process")
def bounces_process(
    source: Annotated[
        str,
        typer.Argument(
            help="A Maildir folder, an mbox file, a folder of .eml files, or "
            "imaps://USER@HOST[:PORT]/FOLDER (password in NEWSLETTER_IMAP_PASSWORD)."
        ),
    ],
) -> None:
    """Apply returned messages: hard bounces and complaints stop mail to their subscriber.

    Soft bounces count (see NEWSLETTER_SOFT_BOUNCES), policy refusals count against
    the issue only, auto-replies are ignored. Each message is applied once and then
    moved out of the way (a Maildir's .Processed folder, processed/, NAME.processed).
    """
    from composer.audience.bounces import process

    settings = _settings_checked()

    def show(name: str, bounce: Any, changed: str | None) -> None:
        note = f" -> subscriber {changed}" if changed else ""
        typer.echo(f"{name}: {bounce.kind} {bounce.recipient or '-'}{note}")

    with _errors():
        done = process(settings, source, show)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(done.kinds.items())) or "none"
    changed = ", ".join(f"{n} {k}" for k, n in sorted(done.changed.items())) or "no change"
    typer.echo(f"{done.messages} message(s): {kinds}; subscribers: {changed}")
    if done.moved_to:
        typer.echo(f"moved to {', '.join(sorted(done.moved_to))}")


@bounces_app.command("scan")
def bounces_scan(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Maildir folders, mbox files, .eml files or folders of them."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Read returned messages and say what each is: kind, recipient, status, subscriber.

    Changes nothing: no message is moved and no subscriber changed.
    """
    from composer.audience.bounces import scan

    settings = _settings_checked()
    with _errors():
        for found in scan(settings, paths):
            if as_json:
                typer.echo(json.dumps(found.as_dict(), ensure_ascii=False))
                continue
            b = found.bounce
            who = f" [subscriber {found.subscriber}]" if found.subscriber else ""
            issue = f" [issue {found.issue}]" if found.issue else ""
            status = f" {b.status}" if b.status else ""
            typer.echo(
                f"{found.file}: {b.kind} {b.recipient or '-'}{status}{who}{issue}"
                f"{': ' + b.diagnostic[:100] if b.diagnostic else ''}"
            )


ListOpt = Annotated[str | None, typer.Option("--list", help="Only this list (or tag).")]
StatusOpt = Annotated[
    str | None, typer.Option(help="Only this status: active, unsubscribed, bounced, complained.")
]


@contextmanager
def _store(create: bool = False) -> Iterator[Store]:
    """The newsletter's database; only commands that add subscribers create it."""
    from composer.store.database import Store

    with _errors(), Store(_settings().database, create=create) as store:
        yield store


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with an email column (Mailchimp exports work).")
    ],
    list_name: Annotated[
        str | None, typer.Option("--list", help="Also add everyone in the file to this list.")
    ] = None,
) -> None:
    """Import subscribers from CSV: bad rows go to FILE.rejects.csv, the rest are merged."""
    from composer.audience.subscribers import import_csv

    with _store(create=True) as store:
        report = import_csv(store, file, list_name)
    for problem in report.problems:
        _err(problem)
    for merge in report.merges:
        _err(f"warning: {merge}")
    if report.merged > len(report.merges):
        _err(f"warning: and {report.merged - len(report.merges):,} more rows merged so")
    typer.echo(
        f"imported {file}: {report.added} added, {report.updated} merged into existing, "
        f"{report.suppressed} left unsubscribed/bounced, {report.rejected} rejected"
    )
    if report.rejects_file is not None:
        typer.echo(f"rejected rows, with the reason, are in {report.rejects_file}")


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    list_name: Annotated[
        list[str] | None, typer.Option("--list", help="Add to this list (repeatable).")
    ] = None,
    language: Annotated[str, typer.Option(help="Language code, e.g. en or es.")] = "",
) -> None:
    """Add one subscriber (or update the name and lists of an existing one)."""
    from composer.audience.subscribers import add

    with _store(create=True) as store:
        address, outcome = add(store, email, name, list_name or [], language)
        current = store.subscriber(address)
    status = current.status if current else "?"
    typer.echo(f"{address}: {outcome} (status {status})")


@subscribers_app.command("remove")
def subscribers_remove(email: Annotated[str, typer.Argument(help="The address.")]) -> None:
    """Delete a subscriber, their delivery history and consent records (to forget them)."""
    from composer.mail.addresses import normalise

    with _store() as store:
        address = normalise(email)
        if not store.remove(address):
            raise _not_found(address)
    typer.echo(f"{address}: removed")


def _not_found(address: str) -> typer.Exit:
    _err(f"Error: {address} is not a subscriber; see `newsletter subscribers list`")
    return typer.Exit(1)


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(email: Annotated[str, typer.Argument(help="The address.")]) -> None:
    """Unsubscribe an address (kept, so that it is never mailed or imported again)."""
    from composer.mail.addresses import normalise

    with _store() as store:
        address = normalise(email)
        subscriber = store.set_status(address, "unsubscribed", "newsletter subscribers unsubscribe")
        if subscriber is None:
            raise _not_found(address)
    typer.echo(f"{address}: unsubscribed")


@subscribers_app.command("list")
def subscribers_list(status: StatusOpt = None, list_name: ListOpt = None) -> None:
    """List subscribers: email, status, name, lists (tab-separated)."""
    from composer.audience.subscribers import check_status

    with _errors():
        check_status(status)
    with _store() as store:
        for s in store.subscribers(status, list_name):
            typer.echo(f"{s.email}\t{s.status}\t{s.name}\t{','.join(s.lists)}")


@subscribers_app.command("export")
def subscribers_export(
    file: Annotated[
        Path | None, typer.Argument(help="CSV file to write [default: stdout].")
    ] = None,
    consent: Annotated[
        bool,
        typer.Option(
            "--consent",
            help="The consent records instead: each sign-up's time, IP address, browser, "
            "page, consent text and lists shown, and its confirmation.",
        ),
    ] = False,
) -> None:
    """Export every subscriber as CSV (email, name, status, language, lists, ...)."""
    from composer.audience.subscribers import export_file

    with _store() as store:
        if file is None:
            export_file(store, None, consent)
            return
        n = export_file(store, file, consent)
    typer.echo(f"exported {n} {'consent records' if consent else 'subscribers'} to {file}")


@subscribers_app.command("count")
def subscribers_count(list_name: ListOpt = None) -> None:
    """Count subscribers by status."""
    with _store() as store:
        counts = store.count_by_status(list_name)
    for status, n in counts.items():
        typer.echo(f"{status:<13}{n:>9,}")
    typer.echo(f"{'total':<13}{sum(counts.values()):>9,}")


@subscribers_app.command("unsubscribe-mailbox")
def subscribers_unsubscribe_mailbox(
    mailbox: Annotated[Path, typer.Argument(help="Maildir folder or mbox file.")],
) -> None:
    """Apply unsubscribe requests mailed to the List-Unsubscribe mailto: address."""
    from composer.audience.subscribers import unsubscribe_from_mailbox

    with _store() as store:
        report = unsubscribe_from_mailbox(store, _settings().verify_keys, mailbox)
    typer.echo(f"{report.applied} unsubscribe request(s) applied")
    for sender in report.unmatched:
        typer.echo(f"no valid token, handle by hand: {sender}")


# -- sending -----------------------------------------------------------------


def _progress_printer() -> Callable[[Progress], None]:
    """A live bar on a terminal; a line every 10 s otherwise (logs, CI)."""
    import time

    tty = sys.stderr.isatty()
    last = [time.monotonic()]

    def show(p: Progress) -> None:
        done = p.done
        share = done / p.total if p.total else 1.0
        eta = (p.total - done) / p.rate if p.rate > 0 else 0
        line = (
            f"{done:,}/{p.total:,} {share:6.1%}  {p.rate:,.0f} msg/s  "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}  "
            f"(sent {p.sent:,}, deferred {p.deferred:,}, failed {p.failed:,}, "
            f"in doubt {p.in_doubt:,})"
        )
        if tty:
            bar = "#" * int(share * 24)
            sys.stderr.write(f"\r[{bar:<24}] {line}\x1b[K")
            sys.stderr.flush()
        elif time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            _err(line)

    return show


@app.command()
def send(
    issue: IssueArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before sending.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build every message; send nothing.")
    ] = False,
    test: Annotated[
        str | None, typer.Option(help="Send one copy to this address, subject [TEST], unrecorded.")
    ] = None,
    edition: Annotated[
        str | None, typer.Option(help="With --test: the copy of this language's edition.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send to at most N subscribers.")] = None,
    list_name: ListOpt = None,
    connections: Annotated[int, typer.Option(min=1, max=32, help="SMTP connections.")] = 4,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="At most this many messages per second.")
    ] = None,
    per_hour: Annotated[
        float | None, typer.Option(min=1, help="At most this many messages per hour.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Send although the issue changed since sending began, or the previous "
            "issue drew complaints from 0.3% or more."
        ),
    ] = False,
    resend_in_doubt: Annotated[
        bool, typer.Option(help="Send again the messages whose delivery is in doubt.")
    ] = False,
    retry_delay: Annotated[
        float, typer.Option(min=0, help="Seconds before the first retry of a 4xx (x4 after).")
    ] = 60.0,
    max_wait: Annotated[
        float, typer.Option(min=0, help="Seconds this run waits for deferred retries.")
    ] = 900.0,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Wait until this time, then send: '2025-04-16 09:00' (in --tz)."),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of --at and --not-after [default: the machine's]."),
    ] = None,
    not_after: Annotated[
        str | None,
        typer.Option(
            "--not-after", help="Do not start after this time, and stop a send still running then."
        ),
    ] = None,
) -> None:
    """Send an issue to the active subscribers; run again to resume a stopped send."""
    from composer.send.engine import run_send
    from composer.send.plan import (
        COMPLAINT_WARN,
        SendOptions,
        build_test_copy,
        plan_send,
        send_test_copy,
    )
    from composer.send.plan import dry_run as build_all
    from composer.send.preflight import check_ready

    if edition is not None and test is None:
        raise typer.BadParameter(
            "goes with --test: each subscriber gets the edition of their language",
            param_hint="--edition",
        )
    settings = _settings_checked()
    with _errors():
        _require_secret(settings, settings.uses_smtp and test is None)
        start, deadline = _schedule(at, tz, not_after, test is not None or dry_run)
    options = SendOptions(
        not_after=deadline.timestamp() if deadline else None,
        list_name=list_name,
        limit=limit,
        connections=connections,
        rate_per_second=rate,
        rate_per_hour=per_hour,
        force=force,
        resend_in_doubt=resend_in_doubt,
        retry_delay=retry_delay,
        max_wait=max_wait,
    )
    with _errors():
        if test is not None and dry_run:
            size = build_test_copy(issue, settings, test, edition)
            typer.echo(f"dry run: built the test copy to {test} ({size / 1000:.1f} KB); not sent")
            return
        if not dry_run:
            check_ready(settings)
        if start is not None:
            _wait_for(start, deadline, issue, settings, yes)
        if test is not None:
            label, result = send_test_copy(issue, settings, test, edition)
            typer.echo(f"test copy to {test} via {label}: {result.kind}: {result.reply}")
            if result.kind != "sent":
                raise typer.Exit(1)
            return
        plan = plan_send(issue, settings, options)
    typer.echo(f"Issue:      {plan.issue}  {plan.subject}")
    typer.echo(f"From:       {plan.sender}")
    audience = f"{plan.audience:,} subscriber(s)"
    if plan.waiting:
        audience += f" ({plan.new:,} new, {plan.waiting:,} left by an earlier run)"
    typer.echo(f"Audience:   {audience}" + (f" on list {list_name!r}" if list_name else ""))
    if len(plan.editions) > 1:
        typer.echo(f"Editions:   {_per_edition(plan.editions)}")
    if plan.previous_complaints is not None:
        previous, complaints, sent = plan.previous_complaints
        if sent and complaints / sent >= COMPLAINT_WARN:
            _err(
                f"warning: the previous issue ({previous}) drew complaints from "
                f"{complaints / sent:.2%} of its recipients; from 0.3% `send` refuses"
            )
    if plan.started_before:
        doubt = (
            (
                " (will be resent)"
                if resend_in_doubt
                else " (not resent; --resend-in-doubt to resend)"
            )
            if plan.in_doubt
            else ""
        )
        typer.echo(f"Earlier:    {plan.already_sent:,} sent, {plan.in_doubt:,} in doubt{doubt}")
    typer.echo(f"Transport:  {plan.transport}")
    if dry_run:
        with _errors():
            built = build_all(plan, settings, options)
        typer.echo(
            f"dry run: built {built.messages:,} messages "
            f"({built.total_bytes / 1e6:.1f} MB); nothing sent"
        )
        return
    if plan.audience == 0 and not (resend_in_doubt and plan.in_doubt):
        typer.echo("nothing to send: every active subscriber has this issue")
        return
    if not yes and not typer.confirm(f"Send to {plan.audience:,} subscriber(s) now?"):
        _err("not sent")
        raise typer.Exit(1)
    _stop_on_sigterm()
    with _errors():
        summary = run_send(plan, settings, options, _progress_printer())
    if sys.stderr.isatty():
        _err("")
    _print_summary(summary, issue, settings)


def _schedule(
    at: str | None, tz: str | None, not_after: str | None, now_only: bool
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """--at and --not-after as times (ConfigError for what is not one); a
    --not-after already past is refused here, before anything is done."""
    from composer.errors import ConfigError
    from composer.send.schedule import describe, parse_time, zone

    if now_only and at is not None:
        raise ConfigError("--at schedules a real send; it does not go with --test or --dry-run")
    if at is None and not_after is None:
        return None, None
    where = zone(tz)
    start = parse_time(at, where, "--at") if at is not None else None
    deadline = parse_time(not_after, where, "--not-after") if not_after is not None else None
    if start is not None and deadline is not None and deadline <= start:
        raise ConfigError(f"--not-after {describe(deadline)} is not after --at {describe(start)}")
    if deadline is not None and deadline.timestamp() <= time.time():
        raise ConfigError(
            f"--not-after {describe(deadline)} has passed; nothing sent "
            "(give a later --not-after, or none, to send anyway)"
        )
    return start, deadline


def _wait_for(
    start: dt.datetime, deadline: dt.datetime | None, issue: str, settings: Settings, yes: bool
) -> None:
    """Check the issue now (so that a mistake shows before the night), ask unless
    --yes, then wait for ``start``. Ctrl-C or SIGTERM ends the wait: nothing sent."""
    from composer.send.prepare import prepare
    from composer.send.schedule import describe, wait_until

    prepare(issue, settings)  # errors now, not at the scheduled time
    if start.timestamp() <= time.time():
        return
    if not yes and not typer.confirm(f"Send {issue} at {describe(start)}?"):
        _err("not scheduled")
        raise typer.Exit(1)
    _stop_on_sigterm()
    until = f" (not after {describe(deadline)})" if deadline else ""
    _err(f"waiting until {describe(start)} to send {issue}{until}; Ctrl-C cancels")
    try:
        wait_until(start, lambda left: _err(f"sending {issue} in {_duration(left)}"))
    except KeyboardInterrupt:
        _err(f"cancelled before {describe(start)}: nothing sent")
        raise typer.Exit(130) from None
    _err(f"{describe(start)}: sending {issue}")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, a cron timeout) stops a send as cleanly as Ctrl-C."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _print_summary(summary: SendSummary, issue: str, settings: Settings) -> None:
    p, c = summary.progress, summary.counts
    for note in summary.notes:
        _err(f"warning: {note}")
    rate = p.done / summary.elapsed if summary.elapsed > 0 else 0.0
    typer.echo(
        f"this run: {p.sent:,} sent, {p.failed:,} failed, {p.deferred:,} deferred, "
        f"{p.in_doubt:,} in doubt, in {summary.elapsed:.1f} s ({rate:,.0f} msg/s)"
    )
    typer.echo(
        f"issue total: {c['sent']:,} sent, {c['failed']:,} failed, "
        f"{c['deferred']:,} deferred, {c['in_doubt']:,} in doubt, "
        f"{c['pending']:,} not yet sent"
    )
    if len(summary.sent_by_edition) > 1:
        typer.echo(f"sent by edition: {_per_edition(summary.sent_by_edition)}")
    if summary.settled_in_doubt:
        typer.echo(
            f"{summary.settled_in_doubt} message(s) were in flight when an earlier run "
            "stopped: they are in doubt (see `newsletter status`)"
        )
    if not settings.uses_smtp:
        typer.echo(
            f"messages are in the local outbox: {settings.outbox / 'new'} "
            "(a Maildir: open with `mutt -f outbox` or any mail client)"
        )
    if summary.stopped or c["pending"] or c["deferred"]:
        if summary.stopped:
            _err(f"stopped: {summary.stopped}")
        _err(f"resume with: newsletter send {issue}")
        if summary.interrupted or summary.stopped:
            raise typer.Exit(130 if summary.interrupted else 1)
    if summary.in_doubt_left:
        _err(
            f"{summary.in_doubt_left} message(s) in doubt: they may or may not have been "
            f"delivered; see `newsletter status {issue}` (send them again with "
            "--resend-in-doubt)"
        )
        raise typer.Exit(IN_DOUBT_EXIT)


def _per_edition(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n:,}" for code, n in counts.items())


def _settings_checked() -> Settings:
    with _errors():
        return _settings()


@app.command()
def doctor(
    offline: Annotated[
        bool, typer.Option("--offline", help="Local checks only: no DNS, no https.")
    ] = False,
) -> None:
    """Say whether this newsletter is ready to send, check by check, with how to fix each.

    Settings, DKIM keys and their DNS records, SPF, DMARC, the unsubscribe mailbox,
    the one-click unsubscribe endpoint over https, the latest issue. Exit 1 if
    something needs fixing."""
    from composer.send.doctor import doctor as run_doctor

    settings = _settings_checked()
    with _errors():
        checks = run_doctor(settings, offline)
    marks = {True: "ok ", False: "FIX", None: " - "}
    for check in checks:
        typer.echo(f"{marks[check.ok]}  {check.name}: {check.detail}")
    if any(check.ok is False for check in checks):
        raise typer.Exit(1)


@app.command()
def status(issue: IssueArg) -> None:
    """Show an issue's delivery log: counts by state, failures and in-doubt messages."""
    from composer.send.status import status as issue_status

    with _errors():
        report = issue_status(issue, _settings())
    typer.echo(f"issue {report.issue}" + ("  (a send is running)" if report.running else ""))
    for label, n in report.counts.items():
        typer.echo(f"  {label:<13}{n:>9,}")
    totals = report.bounce_totals()
    if totals:
        order = ("hard", "soft", "policy", "autoreply", "unknown")
        shown = ", ".join(f"{k} {totals[k]:,}" for k in order if totals.get(k))
        typer.echo(f"bounces      {shown or 'none'}")
        sent = report.counts.get("sent", 0)
        typer.echo(
            f"complaints   {totals.get('complaint', 0):,} of {sent:,} sent "
            f"({report.complaint_rate:.2%})"
        )
        typer.echo("by provider")
        for name in sorted({*report.sent_by_provider, *report.bounces}):
            per = report.bounces.get(name, {})
            kinds = order[:3] + ("complaint",) + order[3:]
            parts = [f"{report.sent_by_provider.get(name, 0):,} sent"]
            parts += [f"{k} {per[k]:,}" for k in kinds if per.get(k)]
            typer.echo(f"  {name}: {', '.join(parts)}")
    if len(report.by_relay) > 1:
        typer.echo("by relay")
        for name, per in sorted(report.by_relay.items()):
            typer.echo(f"  {name}: " + ", ".join(f"{k} {n:,}" for k, n in per.items()))
    for email, label, reply, attempts in report.problems:
        typer.echo(f"{label:<9} {email}  {reply}  (attempts: {attempts})")


# -- the web -----------------------------------------------------------------


@app.command()
def preview(
    issue: IssueArg,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8040,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
    as_email: Annotated[
        str | None, typer.Option("--as", help="Personalise as this subscriber.")
    ] = None,
) -> None:
    """Preview an issue in the browser, as sent; it updates as you edit the file or templates."""
    import threading
    import webbrowser

    from composer.web.app import preview_app
    from composer.web.preview import PreviewState
    from composer.web.server import run

    with _errors():
        settings = _settings()
        _check_port("127.0.0.1", port)
        state = PreviewState(settings, issue, as_email)
        if not state.path.is_file():
            raise IssueError([f"{state.shown_path}: no such issue file"])
        if as_email is not None and state.error and "--as" in state.error:
            raise ComposerError(state.error)
    stop = threading.Event()
    watcher = threading.Thread(target=state.watch, args=(stop,), daemon=True)
    watcher.start()
    url = f"http://127.0.0.1:{port}/"
    typer.echo(f"Preview of {state.path.name} at {url} (Ctrl-C to stop)")
    if open_browser:
        webbrowser.open(url)
    try:
        run(preview_app(state), "127.0.0.1", port, public=False)
    finally:
        stop.set()


@app.command()
def archive(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write the site to [default: archive/ in the newsletter's folder]"
        ),
    ] = None,
    all_issues: Annotated[
        bool, typer.Option("--all", help="Every valid issue, not only the sent ones.")
    ] = False,
) -> None:
    """Write the web archive: an index, each issue's web version, and an Atom feed."""
    from composer.fsutil import relative
    from composer.web.archive import write_archive

    with _errors():
        settings = _settings()
        out = out or relative(settings.home / "archive")
        written = write_archive(settings, out, all_issues)
    issues = len(written) - 2
    typer.echo(f"wrote {out / 'index.html'}, {out / 'feed.xml'} and {issues} issue page(s)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
) -> None:
    """Serve the archive, sign-up with double opt-in, preferences and one-click unsubscribes."""
    from composer.web.app import serve_app
    from composer.web.server import run

    with _errors():
        settings = _settings()
        _require_secret(settings, host not in ("127.0.0.1", "localhost", "::1"))
        _check_port(host, port)
    typer.echo(
        f"Serving {settings.base_url} on http://{host}:{port}/ "
        f"(database {settings.database}; Ctrl-C to stop)"
    )
    run(serve_app(settings), host, port, public=True)


def _check_port(host: str, port: int) -> None:
    """A port already in use (or an address not on this machine) is a one-line error."""
    import socket

    from composer.errors import ConfigError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: unknown address ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"{host}:{port}: cannot listen there ({exc.strerror}); choose another --port"
            ) from None


def _require_secret(settings: Settings, needed: bool) -> None:
    from composer.config import DEV_SECRET
    from composer.errors import ConfigError

    if settings.secret_key.get() == DEV_SECRET:
        if needed:
            raise ConfigError(
                "NEWSLETTER_SECRET_KEY is not set: unsubscribe links would be "
                "signed with a public development key; set it (see .env.example)"
            )
        _err("warning: NEWSLETTER_SECRET_KEY is not set; using a development key")


def main() -> None:
    """The ``newsletter`` process, with CPython's cyclic collector kept out of
    the way of a brief command.

    Start-up makes some 70,000 tracked objects and no garbage, yet the collections its
    allocations trigger walk them over and over (about 20 ms of a 400 ms
    ``build``), and the interpreter's teardown walks the whole heap again in
    full collections (about 45 ms). So the collector starts off; a command not
    in ``_BRIEF`` turns it back on before its work; and whatever is alive at
    the end is frozen, which leaves teardown to free it by reference counts
    alone (files and connections are closed by their ``with`` blocks, as ever).
    Tests that invoke ``app`` in-process never come through here."""
    global _collector_held
    gc.disable()
    _collector_held = True
    try:
        app()
    finally:
        from composer import memo

        memo.save()
        gc.freeze()
