"""A notice (confirmation, welcome) for one reader -> the bytes of one message.

Unlike an issue, a notice is asked for by its reader: no List-Unsubscribe, and
``Auto-Submitted: auto-generated`` (RFC 3834) so that vacation responders do
not answer it. Signed with the newsletter's DKIM keys like every message.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr

from composer.mail.addresses import normalise
from composer.mail.dkim import Signer, canonical_body
from composer.mail.message import _qp, header_text, mailbox
from composer.render.notice import Notice


def build_notice(
    notice: Notice,
    *,
    from_address: str,
    title: str,
    reply_to: str | None,
    to: str,
    name: str,
    link: str,
    signer: Signer | None,
) -> bytes:
    """The whole message, CRLF line ends, not dot-stuffed."""
    email = normalise(to)
    html, text = notice.fill(email, link)
    sender_name, sender = parseaddr(from_address)
    domain = sender.rpartition("@")[2] or "localhost"
    boundary = f"=_nl_notice_{secrets.token_hex(12)}"
    head = (
        f"From: {mailbox(sender_name or title, sender)}\r\n"
        f"To: {mailbox(name, email)}\r\n"
        f"Subject: {header_text(notice.subject)}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: <{notice.kind}.{secrets.token_hex(12)}@{domain}>\r\n"
        + (f"Reply-To: {mailbox('', reply_to)}\r\n" if reply_to else "")
        + f"Content-Language: {notice.language}\r\n"
        "Auto-Submitted: auto-generated\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
    ).encode("ascii")
    body = b"".join(
        (
            f"\r\n--{boundary}\r\n".encode(),
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            _qp(text),
            f"\r\n--{boundary}\r\n".encode(),
            b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            _qp(html),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    if signer is not None:
        # The body starts after the empty line that ends the header block.
        head = signer.headers(head, [canonical_body(body[2:])]) + head
    return head + body
