"""`newsletter bounces scan`: Maildir, mbox and .eml files read, each bounce
matched to its subscriber and issue (VERP first, then our Message-ID, then the
address), nothing changed."""

from __future__ import annotations

import json
import mailbox
import shutil
from pathlib import Path

import pytest

from tests.helpers import run
from tests.send.test_send import add_subscribers, use
from tests.smtp_server import Handler, running

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces" / "emails"


def dsn(to: str, recipient: str, status: str, diagnostic: str, message_id: str = "") -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464)."""
    text = f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net said: {diagnostic}

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B
Content-Type: text/rfc822-headers

Message-ID: {message_id or "<other@example.net>"}
To: {recipient}
Subject: Weekly Update

--B--
"""
    return text.replace("\n", "\r\n").encode()


@pytest.fixture
def verp_sent(monkeypatch: pytest.MonkeyPatch, newsletter_home: Path) -> Handler:
    add_subscribers(3)
    handler = Handler()
    with running(handler) as server:
        use(monkeypatch, {**server.env(), "NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.org"})
        assert run("send", "2025-04-16", "--yes").exit_code == 0
    return handler


def test_scan_matches_by_verp_message_id_and_address(
    verp_sent: Handler, newsletter_home: Path
) -> None:
    sent = {r.rcpt_tos[0]: r for r in verp_sent.received}
    first, second, third = sorted(sent)
    box = mailbox.Maildir(str(newsletter_home / "bounces"), create=True)
    # 1. Back to the VERP address: the token decides, even if the report names
    #    a forwarding address.
    box.add(
        dsn(sent[first].mail_from, "forwarded@elsewhere.example", "5.1.1", "550 5.1.1 User unknown")
    )
    # 2. VERP lost (a relay rewrote it), our Message-ID in the returned headers.
    message_id = sent[second].message()["Message-ID"]
    box.add(dsn("bounces@news.example.org", second, "5.2.2", "552 5.2.2 Mailbox full", message_id))
    before = sorted(p.name for p in (newsletter_home / "bounces" / "new").iterdir())
    (newsletter_home / "single.eml").write_bytes(
        dsn("newsletter@example.org", third, "5.7.1", "550 5.7.1 Blocked by policy")
    )
    mbox = mailbox.mbox(str(newsletter_home / "complaints.mbox"))
    mbox.add((CORPUS / "arf-01.eml").read_bytes())
    mbox.flush()
    result = run("bounces", "scan", "--json", "bounces", "single.eml", "complaints.mbox")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["hard"]["subscriber"] == first and by_kind["hard"]["issue"] == "2025-04-16"
    assert by_kind["soft"]["subscriber"] == second and by_kind["soft"]["issue"] == "2025-04-16"
    assert by_kind["soft"]["status"] == "5.2.2"
    assert by_kind["policy"]["subscriber"] == third and by_kind["policy"]["issue"] is None
    assert by_kind["complaint"]["recipient"] == "redacted@example.net"
    assert by_kind["complaint"]["subscriber"] is None
    assert all({"file", "recipient", "kind", "status", "diagnostic"} <= set(r) for r in rows)
    # Nothing changed: the messages are where they were, the subscribers active.
    assert sorted(p.name for p in (newsletter_home / "bounces" / "new").iterdir()) == before
    listed = run("subscribers", "list").stdout
    assert listed.count("active") >= 3
    human = run("bounces", "scan", "bounces")
    assert f"hard forwarded@elsewhere.example 5.1.1 [subscriber {first}] [issue 2025-04-16]" in (
        human.stdout
    )


def test_a_forged_verp_token_names_nobody(verp_sent: Handler, newsletter_home: Path) -> None:
    real = verp_sent.received[0].mail_from
    forged = real.replace(real[10], "a" if real[10] != "a" else "b", 1)
    (newsletter_home / "forged.eml").write_bytes(
        dsn(forged, "nobody@elsewhere.example", "5.1.1", "550 5.1.1 User unknown")
    )
    row = json.loads(run("bounces", "scan", "--json", "forged.eml").stdout)
    assert row["subscriber"] is None and row["subscriber_id"] is None and row["issue"] is None


def test_scan_reads_the_corpus_and_refuses_a_missing_path(newsletter_home: Path) -> None:
    shutil.copytree(CORPUS, newsletter_home / "corpus")
    result = run("bounces", "scan", "--json", "corpus")
    assert result.exit_code == 0
    # Some files of the corpus are mbox files of several messages.
    assert len(result.stdout.splitlines()) >= len(list(CORPUS.glob("*.eml")))
    missing = run("bounces", "scan", "nowhere")
    assert missing.exit_code == 1 and "nowhere: no such file or folder" in missing.stderr
