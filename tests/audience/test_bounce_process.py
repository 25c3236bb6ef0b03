"""`newsletter bounces process`: a send through a real SMTP server, the test
MTA's bounces (written the way Postfix writes them) delivered into a Maildir,
then applied once: hard bounces and complaints stop mail, the rest does not."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audience.test_bounce_scan import dsn
from tests.helpers import Database, pairs, run
from tests.imap_server import ImapServer
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, Received, running

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces" / "emails"


def statuses(home: Path) -> dict[str, str]:
    return pairs(home, "SELECT email, status FROM subscribers")


def complaint(to: str, recipient: str, message_id: str) -> bytes:
    """An ARF feedback report (RFC 5965) as a mailbox provider's loop sends it."""
    text = f"""From: feedback@fbl.example.net
To: {to}
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.1.

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: {recipient}

--F
Content-Type: text/rfc822-headers

Message-ID: {message_id}
To: {recipient}
Subject: Weekly Update

--F--
"""
    return text.replace("\n", "\r\n").encode()


def out_of_office(to: str, sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Out of office\r\n"
        "Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n"
    ).encode()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, newsletter_home: Path) -> dict[str, Received]:
    add_subscribers(6)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, {**server.env(), "NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.org"})
        assert run("send", "2025-04-16", "--yes").exit_code == 0
    return {r.rcpt_tos[0]: r for r in handler.received}


def test_bounces_stop_mail_to_dead_and_complaining_addresses_only(
    sent: dict[str, Received], newsletter_home: Path
) -> None:
    people = sorted(sent)
    hard, soft, policy, complainer, away, fine = people
    box = mailbox.Maildir(str(newsletter_home / "bounce-mail"), create=True)

    def back(recipient: str) -> str:
        return sent[recipient].mail_from

    box.add(
        dsn(
            back(hard),
            hard,
            "5.1.1",
            f"550 5.1.1 <{hard}>: Recipient address rejected: User unknown",
        )
    )
    box.add(dsn(back(soft), soft, "5.2.2", "552 5.2.2 Mailbox full"))
    box.add(
        dsn(
            back(policy),
            policy,
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
        )
    )
    message_id = sent[complainer].message()["Message-ID"]
    box.add(complaint("abuse@example.org", complainer, message_id))
    box.add(out_of_office(back(away), away))
    result = run("bounces", "process", "bounce-mail")
    assert result.exit_code == 0, result.output
    assert "5 message(s): autoreply 1, complaint 1, hard 1, policy 1, soft 1" in result.stdout
    assert "subscribers: 1 bounced, 1 complained" in result.stdout
    after = statuses(newsletter_home)
    assert after[hard] == "bounced" and after[complainer] == "complained"
    assert {after[p] for p in (soft, policy, away, fine)} == {"active"}
    # Everything applied was moved out of the way; a second run does nothing.
    assert not list((newsletter_home / "bounce-mail" / "new").iterdir())
    assert len(list((newsletter_home / "bounce-mail" / ".Processed" / "cur").iterdir())) == 5
    again = run("bounces", "process", "bounce-mail")
    assert "0 message(s)" in again.stdout
    # The same messages delivered twice are applied once.
    for path in (newsletter_home / "bounce-mail" / ".Processed" / "cur").iterdir():
        (newsletter_home / "bounce-mail" / "new" / path.name.split(":")[0]).write_bytes(
            path.read_bytes()
        )
    run("bounces", "process", "bounce-mail")
    db = Database(newsletter_home)
    assert db.execute("SELECT count(*) FROM bounces").fetchone()[0] == 5
    db.close()
    # What the editor sees: bounces by kind, the complaint rate, per provider.
    shown = run("status", "2025-04-16").stdout
    assert "bounces      hard 1, soft 1, policy 1, autoreply 1" in shown, shown
    assert "complaints   1 of 6 sent (16.67%)" in shown
    assert "others: 6 sent, hard 1, soft 1, policy 1, complaint 1, autoreply 1" in shown


def test_soft_bounces_bounce_only_in_a_row_and_over_two_weeks(
    monkeypatch: pytest.MonkeyPatch, newsletter_home: Path
) -> None:
    (reader,) = add_subscribers(1)
    handler = Handler()
    issues = ["2025-04-16", "2025-04-23", "2025-04-30"]
    source = (newsletter_home / "issues" / "2025-04-16.yaml").read_text(encoding="utf-8")
    for issue in issues[1:]:
        (newsletter_home / "issues" / f"{issue}.yaml").write_text(
            source.replace("date: 2025-04-16", f"date: {issue}"), "utf-8"
        )
    with running(handler) as server:
        use(monkeypatch, {**server.env(), "NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.org"})
        for issue in issues:
            assert run("send", issue, "--yes").exit_code == 0
    box = mailbox.Maildir(str(newsletter_home / "soft"), create=True)
    for received, day in zip(handler.received, ("16", "23", "30"), strict=True):
        raw = dsn(received.mail_from, reader, "4.2.2", "452 4.2.2 Mailbox full")
        box.add(
            raw.replace(
                b"Subject:", f"Date: Wed, {day} Apr 2025 10:00:00 +0000\r\nSubject:".encode(), 1
            )
        )
    result = run("bounces", "process", "soft")
    assert "3 message(s): soft 3; subscribers: 1 bounced" in result.stdout, result.stdout
    assert statuses(newsletter_home)[reader] == "bounced"


def test_processing_survives_kill_9_at_any_moment(
    sent: dict[str, Received], newsletter_home: Path
) -> None:
    people = sorted(sent)
    box = mailbox.Maildir(str(newsletter_home / "many"), create=True)
    for i in range(300):
        who = people[i % len(people)]
        back = sent[who].mail_from
        box.add(dsn(back, who, "4.2.2", f"452 4.2.2 Mailbox full ({i})"))
    env = {**os.environ, "NEWSLETTER_HOME": str(newsletter_home)}
    for delay in (0.05, 0.2, 0.4):
        child = subprocess.Popen(
            [sys.executable, "-m", "composer", "bounces", "process", "many"],
            cwd=newsletter_home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert run("bounces", "process", "many").exit_code == 0
    db = Database(newsletter_home)
    rows = db.execute("SELECT count(*), count(DISTINCT message) FROM bounces").fetchone()
    db.close()
    assert rows == (300, 300)  # each message applied exactly once
    assert not list((newsletter_home / "many" / "new").iterdir())
    assert len(list((newsletter_home / "many" / ".Processed" / "cur").iterdir())) == 300


def _next_issue(home: Path, date: str) -> None:
    source = (home / "issues" / "2025-04-16.yaml").read_text(encoding="utf-8")
    (home / "issues" / f"{date}.yaml").write_text(
        source.replace("date: 2025-04-16", f"date: {date}"), "utf-8"
    )


def test_send_refuses_after_too_many_complaints(
    sent: dict[str, Received], newsletter_home: Path
) -> None:
    who = sorted(sent)[0]
    message_id = sent[who].message()["Message-ID"]
    box = mailbox.Maildir(str(newsletter_home / "fbl"), create=True)
    box.add(complaint("abuse@example.org", who, message_id))
    assert run("bounces", "process", "fbl").exit_code == 0
    _next_issue(newsletter_home, "2025-04-23")
    refused = run("send", "2025-04-23", "--dry-run")
    assert refused.exit_code == 1
    assert "the previous issue (2025-04-16) drew complaints from 16.67% of its 6" in (
        refused.stderr
    )
    assert run("send", "2025-04-23", "--dry-run", "--force").exit_code == 0


def test_send_warns_from_one_complaint_in_a_thousand(newsletter_home: Path) -> None:
    rows = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(600))
    (newsletter_home / "many.csv").write_text("email,name\n" + rows, encoding="utf-8")
    assert run("subscribers", "import", "many.csv").exit_code == 0
    assert run("send", "2025-04-16", "--yes").exit_code == 0  # to the local outbox
    one = email.message_from_bytes(
        next((newsletter_home / "outbox" / "new").iterdir()).read_bytes(),
        policy=email.policy.default,
    )
    message_id = str(one["Message-ID"])
    recipient = one["To"].addresses[0].addr_spec
    (newsletter_home / "fbl.eml").write_bytes(complaint("abuse@example.org", recipient, message_id))
    assert "complaint 1" in run("bounces", "process", "fbl.eml").stdout
    _next_issue(newsletter_home, "2025-04-23")
    planned = run("send", "2025-04-23", "--dry-run")
    assert planned.exit_code == 0
    assert "warning: the previous issue (2025-04-16) drew complaints from 0.17%" in (planned.stderr)


def test_a_bounce_mailbox_over_imap(
    sent: dict[str, Received],
    newsletter_home: Path,
    imap_server: ImapServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hard, other = sorted(sent)[:2]
    imap_server.deliver(dsn(sent[hard].mail_from, hard, "5.1.1", "550 5.1.1 User unknown"))
    imap_server.deliver(dsn(sent[other].mail_from, other, "5.2.2", "552 5.2.2 Mailbox full"))
    use(monkeypatch, imap_server.env())
    result = run("bounces", "process", imap_server.url)
    assert result.exit_code == 0, result.output
    assert "2 message(s): hard 1, soft 1; subscribers: 1 bounced" in result.stdout
    assert "imap-test-password" not in result.output
    assert statuses(newsletter_home)[hard] == "bounced"
    assert imap_server.count("INBOX") == 0 and imap_server.count("Processed") == 2
    assert "0 message(s)" in run("bounces", "process", imap_server.url).stdout


def test_imap_refuses_what_would_leak_or_trust_blindly(
    newsletter_home: Path, imap_server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", "wrong")
    monkeypatch.setenv("NEWSLETTER_IMAP_CA_FILE", str(imap_server.ca_file))
    wrong = run("bounces", "process", imap_server.url)
    assert wrong.exit_code == 1 and "refused the login" in wrong.stderr
    assert "wrong" not in wrong.stderr.replace("refused", "")
    monkeypatch.delenv("NEWSLETTER_IMAP_CA_FILE")
    untrusted = run("bounces", "process", imap_server.url)
    assert untrusted.exit_code == 1 and "certificate is not trusted" in untrusted.stderr
    leaked = run("bounces", "process", f"imaps://bounces:secret@127.0.0.1:{imap_server.port}/")
    assert leaked.exit_code == 1 and "NEWSLETTER_IMAP_PASSWORD, not in the URL" in leaked.stderr
    plain = run("bounces", "process", "imap://bounces@127.0.0.1/INBOX")
    assert plain.exit_code == 1 and "plain IMAP is refused" in plain.stderr
    for output in (wrong.output, untrusted.output, leaked.output):
        assert "Traceback" not in output


def test_processing_while_a_send_runs(newsletter_home: Path) -> None:
    from tests.send.test_resume import _start_send, _wait_for

    addresses = add_subscribers(20)
    box = mailbox.Maildir(str(newsletter_home / "during"), create=True)
    for address in addresses[:10]:  # returned mail about the previous issue, by address
        box.add(dsn("newsletter@example.org", address, "5.1.1", "550 5.1.1 User unknown"))
    handler = Handler(delay=0.1)  # one connection: the send lasts about 2 s
    with running(handler) as server:
        sending = _start_send(newsletter_home, server.env(), "--connections", "1")
        _wait_for(handler, 1, sending)
        result = run("bounces", "process", "during")
        assert sending.poll() is None  # applied while the send was running
        sending.communicate(timeout=120)
    assert result.exit_code == 0, result.output
    assert "subscribers: 10 bounced" in result.stdout
    assert sending.returncode == 0
    after = statuses(newsletter_home)
    assert [after[a] for a in addresses[:10]] == ["bounced"] * 10
    assert [after[a] for a in addresses[10:]] == ["active"] * 10
