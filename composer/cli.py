"""The ``newsletter`` command. Thin: parse, call one core function, print.

Every ``ComposerError`` becomes ``Error: ...`` (or one line per problem for
an invalid issue file) on stderr and exit status 1; usage errors exit 2 (Click).
Heavy libraries are imported inside the commands that use them, so that
``newsletter --help`` stays fast.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from composer.errors import ComposerError, IssueError

if TYPE_CHECKING:
    from composer.config import Settings
    from composer.delivery import Progress, SendSummary
    from composer.store import Store

app = typer.Typer(
    name="newsletter",
    help="Compose, check, preview and send an email newsletter from YAML issue files.",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
)

IssueArg = Annotated[
    str, typer.Argument(help="Issue file (issues/2025-04-16.yaml) or its date (2025-04-16).")
]


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log details to stderr.")
    ] = False,
) -> None:
    """Compose, check, preview and send an email newsletter from YAML issue files."""
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


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
    from composer.config import load_settings

    return load_settings()


def _kb(size: int) -> str:
    return f"{size / 1024:.1f} KB"


@app.command()
def build(
    issue: IssueArg,
    out: Annotated[
        Path | None, typer.Option(help="Folder to write to [default: build/DATE]")
    ] = None,
) -> None:
    """Render an issue: write email.html, email.txt and email.eml (for a sample subscriber)."""
    from composer.compose import build as build_issue

    with _errors():
        result = build_issue(issue, _settings(), out)
    for path in result.files:
        typer.echo(f"wrote {path}")
    size = result.rendered.html_bytes
    typer.echo(f"HTML part: {_kb(size)} (Gmail clips at 102 KB)")
    for finding in result.findings:
        _err(str(finding))


@app.command()
def check(issue: IssueArg) -> None:
    """Validate and lint an issue; exit 1 if it has errors, 0 with warnings listed."""
    from composer.compose import check as check_issue

    with _errors():
        loaded, _, findings = check_issue(issue, _settings())
    for finding in findings:
        typer.echo(str(finding))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    summary = f"{loaded.path}: {errors} error(s), {warnings} warning(s)"
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
    from composer.compose import new_issue

    when = None
    if date is not None:
        try:
            when = dt.date.fromisoformat(date)
        except ValueError:
            raise typer.BadParameter(
                f"{date!r} is not a date like 2025-04-23", param_hint="--date"
            ) from None
    with _errors():
        path = new_issue(_settings(), when)
    typer.echo(f"started {path}; fill it in, then run: newsletter check {path}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of issue files (for completion and validation in editors)."""
    from composer.model import json_schema

    json.dump(json_schema(), sys.stdout, indent=2, ensure_ascii=False)
    typer.echo()


# -- subscribers -------------------------------------------------------------

subscribers_app = typer.Typer(help="Manage subscribers (in the SQLite database).",
                              no_args_is_help=True, rich_markup_mode=None)
app.add_typer(subscribers_app, name="subscribers")

ListOpt = Annotated[str | None, typer.Option("--list", help="Only this list (or tag).")]
StatusOpt = Annotated[
    str | None, typer.Option(help="Only this status: active, unsubscribed, bounced, complained.")
]


@contextmanager
def _store() -> Iterator[Store]:
    from composer.store import Store

    with _errors(), Store(_settings().db_path) as store:
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
    from composer.subscribers import import_csv

    with _store() as store:
        report = import_csv(store, file, list_name)
    for problem in report.problems:
        _err(problem)
    typer.echo(f"imported {file}: {report.added} added, {report.updated} merged into existing, "
               f"{report.suppressed} left unsubscribed/bounced, {report.rejected} rejected")
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
    from composer.subscribers import add

    with _store() as store:
        address, outcome = add(store, email, name, list_name or [], language)
        current = store.subscriber(address)
    status = current.status if current else "?"
    typer.echo(f"{address}: {outcome} (status {status})")


@subscribers_app.command("remove")
def subscribers_remove(email: Annotated[str, typer.Argument(help="The address.")]) -> None:
    """Delete a subscriber and their delivery history (to forget them, e.g. on request)."""
    from composer.subscribers import normalise_email

    with _store() as store:
        address = normalise_email(email)
        if not store.remove(address):
            raise _not_found(address)
    typer.echo(f"{address}: removed")


def _not_found(address: str) -> typer.Exit:
    _err(f"Error: {address} is not a subscriber; see `newsletter subscribers list`")
    return typer.Exit(1)


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(email: Annotated[str, typer.Argument(help="The address.")]) -> None:
    """Unsubscribe an address (kept, so that it is never mailed or imported again)."""
    from composer.subscribers import normalise_email

    with _store() as store:
        address = normalise_email(email)
        subscriber = store.set_status(address, "unsubscribed", "newsletter subscribers unsubscribe")
        if subscriber is None:
            raise _not_found(address)
    typer.echo(f"{address}: unsubscribed")


@subscribers_app.command("list")
def subscribers_list(status: StatusOpt = None, list_name: ListOpt = None) -> None:
    """List subscribers: email, status, name, lists (tab-separated)."""
    from composer.subscribers import check_status

    with _store() as store:
        check_status(status)
        for s in store.subscribers(status, list_name):
            typer.echo(f"{s.email}\t{s.status}\t{s.name}\t{','.join(s.lists)}")


@subscribers_app.command("export")
def subscribers_export(
    file: Annotated[
        Path | None, typer.Argument(help="CSV file to write [default: stdout].")
    ] = None,
) -> None:
    """Export every subscriber as CSV (email, name, status, language, lists, ...)."""
    from composer.compose import write_atomic
    from composer.subscribers import export_csv

    with _store() as store:
        if file is None:
            export_csv(store, sys.stdout)
            return
        import io

        buffer = io.StringIO()
        n = export_csv(store, buffer)
        write_atomic(file, buffer.getvalue().encode())
    typer.echo(f"exported {n} subscribers to {file}", err=True)


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
    from composer.subscribers import unsubscribe_from_mailbox

    with _store() as store:
        report = unsubscribe_from_mailbox(store, _settings().secret_key.get(), mailbox)
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
        line = (f"{done:,}/{p.total:,} {share:6.1%}  {p.rate:,.0f} msg/s  "
                f"ETA {int(eta) // 60}:{int(eta) % 60:02d}  "
                f"(sent {p.sent:,}, deferred {p.deferred:,}, failed {p.failed:,}, "
                f"in doubt {p.in_doubt:,})")
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
        bool, typer.Option(help="Send the rest even though the issue changed since sending began.")
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
) -> None:
    """Send an issue to the active subscribers; run again to resume a stopped send."""
    from composer.delivery import SendOptions, plan_send, run_send, send_test_copy
    from composer.delivery import dry_run as build_all

    settings = _settings_checked()
    with _errors():
        _require_secret(settings, settings.uses_smtp and test is None)
    options = SendOptions(list_name=list_name, limit=limit, connections=connections,
                          rate_per_second=rate, rate_per_hour=per_hour, force=force,
                          resend_in_doubt=resend_in_doubt, retry_delay=retry_delay,
                          max_wait=max_wait)
    with _errors():
        if test is not None:
            label, result = send_test_copy(issue, settings, test)
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
    if plan.started_before:
        doubt = (" (will be resent)" if resend_in_doubt else
                 " (not resent; --resend-in-doubt to resend)") if plan.in_doubt else ""
        typer.echo(f"Earlier:    {plan.already_sent:,} sent, {plan.in_doubt:,} in doubt{doubt}")
    typer.echo(f"Transport:  {plan.transport}")
    if dry_run:
        with _errors():
            built = build_all(plan, settings, options)
        typer.echo(f"dry run: built {built.messages:,} messages "
                   f"({built.total_bytes / 1e6:.1f} MB); nothing sent")
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


def _stop_on_sigterm() -> None:
    """SIGTERM (systemd, a cron timeout) stops a send as cleanly as Ctrl-C."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _print_summary(summary: SendSummary, issue: str, settings: Settings) -> None:
    p, c = summary.progress, summary.counts
    rate = p.done / summary.elapsed if summary.elapsed > 0 else 0.0
    typer.echo(f"this run: {p.sent:,} sent, {p.failed:,} failed, {p.deferred:,} deferred, "
               f"{p.in_doubt:,} in doubt, in {summary.elapsed:.1f} s ({rate:,.0f} msg/s)")
    typer.echo(f"issue total: {c['sent']:,} sent, {c['failed']:,} failed, "
               f"{c['deferred']:,} deferred, {c['in_doubt']:,} in doubt, "
               f"{c['pending']:,} not yet sent")
    if summary.settled_in_doubt:
        typer.echo(f"{summary.settled_in_doubt} message(s) were in flight when an earlier run "
                   "stopped: they are in doubt (see `newsletter status`)")
    if not settings.uses_smtp:
        typer.echo(f"messages are in the local outbox: {settings.outbox / 'new'} "
                   "(a Maildir: open with `mutt -f outbox` or any mail client)")
    if summary.stopped or c["pending"] or c["deferred"]:
        if summary.stopped:
            _err(f"stopped: {summary.stopped}")
        _err(f"resume with: newsletter send {issue}")
        raise typer.Exit(130 if summary.interrupted else 1 if summary.stopped else 0)


def _settings_checked() -> Settings:
    with _errors():
        return _settings()


@app.command()
def status(issue: IssueArg) -> None:
    """Show an issue's delivery log: counts by state, failures and in-doubt messages."""
    from composer.delivery import status as issue_status

    with _errors():
        report = issue_status(issue, _settings())
    typer.echo(f"issue {report.issue}" + ("  (a send is running)" if report.running else ""))
    for label, n in report.counts.items():
        typer.echo(f"  {label:<13}{n:>9,}")
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

    import uvicorn

    from composer.preview import PreviewState
    from composer.web import preview_app

    with _errors():
        settings = _settings()
        state = PreviewState(settings, issue, as_email)
        if not state.path.exists():
            raise IssueError([f"{issue}: no such issue file"])
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
        uvicorn.run(preview_app(state), host="127.0.0.1", port=port, log_level="warning",
                    timeout_graceful_shutdown=1)
    finally:
        stop.set()


@app.command()
def archive(
    out: Annotated[Path, typer.Option(help="Folder to write the site to.")] = Path("archive"),
    all_issues: Annotated[
        bool, typer.Option("--all", help="Every valid issue, not only the sent ones.")
    ] = False,
) -> None:
    """Write the web archive: an index, each issue's web version, and an Atom feed."""
    from composer.archive import write_archive

    with _errors():
        written = write_archive(_settings(), out, all_issues)
    issues = len(written) - 2
    typer.echo(f"wrote {out / 'index.html'}, {out / 'feed.xml'} and {issues} issue page(s)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
) -> None:
    """Serve the archive and one-click unsubscribes (RFC 8058) over HTTP."""
    import uvicorn

    from composer.web import serve_app

    with _errors():
        settings = _settings()
        _require_secret(settings, host not in ("127.0.0.1", "localhost", "::1"))
    typer.echo(f"Serving {settings.base_url} on http://{host}:{port}/ "
               f"(database {settings.db_path}; Ctrl-C to stop)")
    uvicorn.run(serve_app(settings), host=host, port=port, log_level="warning",
                proxy_headers=True, server_header=False, timeout_graceful_shutdown=5)


def _require_secret(settings: Settings, needed: bool) -> None:
    from composer.config import DEV_SECRET
    from composer.errors import ConfigError

    if settings.secret_key.get() == DEV_SECRET:
        if needed:
            raise ConfigError("NEWSLETTER_SECRET_KEY is not set: unsubscribe links would be "
                              "signed with a public development key; set it (see .env.example)")
        _err("warning: NEWSLETTER_SECRET_KEY is not set; using a development key")


def main() -> None:
    app()
