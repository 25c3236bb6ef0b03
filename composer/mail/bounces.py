"""Reading a bounce: who it is about, what kind it is, and why.

A bounce is any message that comes back: a delivery status notification
(RFC 3464), a feedback-loop complaint (ARF, RFC 5965), an auto-reply (RFC
3834), or one of the free-text reports mail servers write (Exim, qmail,
Sendmail's transcript, Exchange, Gmail, ...). ``read_bounce`` finds:

- the recipient: the DSN's Final-Recipient, else the complaint's original
  recipient, else the address the report names next to its error (never the
  original sender the bounce is addressed to);
- the kind: ``hard`` (the address or domain does not exist), ``soft`` (full,
  temporarily unavailable, too big, expired in a queue), ``policy`` (the
  sender, its IP, its authentication or the content was refused: the address
  is fine), ``complaint``, ``autoreply`` or ``unknown``;
- the enhanced status code and the diagnostic line;
- the VERP address it was sent back to and our Message-ID, when present.

The kind comes from the diagnostic's words first (they are specific: "mailbox
full" under a 5.x.x code is still a full mailbox), then from the status code.
Only clear evidence makes a bounce hard: a policy or temporary refusal taken
for a dead address would drop a subscriber who is fine.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message

KINDS = ("hard", "soft", "policy", "complaint", "autoreply", "unknown")

_ADDRESS_RE = re.compile(
    r"(?:\"[^\"\s@]+\"|[A-Za-z0-9._%+=/'-]+)@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_RE = re.compile(r"(?<![\d.#])([45]\d\d)(?:[ :,-]|$)")
_WS_RE = re.compile(r"\s+")
# Where the copy of the original message starts in a plain-text report.
_ORIGINAL_RE = re.compile(
    r"^(?:-+ ?(?:this is a copy|below this line|original message|the original message|"
    r"undelivered message)|--- below this line|content-type: message/rfc822|"
    r"content-type: text/rfc822-headers|\s*-+\s*original message\s*-+)",
    re.I | re.M,
)

# Words of a diagnostic. Strong words decide the kind whatever the code; weak
# ones (a bare "address rejected") only when the status code does not.
_SOFT = (
    "mailbox full",
    "mailbox is full",
    "over quota",
    "quota exceeded",
    "exceeded quota",
    "exceeds quota",
    "quota",
    "insufficient storage",
    "insufficient system storage",
    "mailbox size limit",
    "out of storage",
    "not enough space",
    "disk full",
    "storage limit",
    "message size exceeds",
    "message is too large",
    "message too large",
    "message too big",
    "exceeds size limit",
    "size limit",
    "exceeds the maximum",
    "too big for",
    "message size",
    "length exceeds",
    "line limit exceeded",
    "retry timeout exceeded",
    "retry time not reached",
    "delivery time expired",
    "could not be delivered within",
    "has been delayed",
    "will be retried",
    "expired",
    "timed out",
    "timeout",
    "try again later",
    "temporarily",
    "temporary failure",
    "too many connections",
    "too many concurrent",
    "too many messages",
    "rate limit",
    "ratelimit",
    "connection refused",
    "connection reset",
    "host is unreachable",
    "no route to host",
    "network is unreachable",
    "hop count exceeded",
    "mail loop",
    "routing loop",
    "account is disabled",
    "account has been disabled",
    "account disabled",
    "mailbox disabled",
    "mailbox is disabled",
    "disabled recipient",
    "disabled",
    "suspended",
    "inactive",
    "is locked",
    "deactivated",
    "internal system error",
    "system error",
    "mailer error",
    "local delivery failed",
    "unable to deliver locally",
    "pipe to",
    "mailbox unavailable for now",
    "did not accept our requests to connect",
    "not responding",
    "socket error",
    "delivery failed 20 attempts",
    "not delivered within",
    "exceeds allowed size",
    "duplicated message-id",
    "too many recipients",
    "frozen",
    "service currently unavailable",
    "transaction failed",
    "could not deliver for the last",
    "failing for a long time",
    "in the queue too long",
    "multiple retries",
    "exceeded the local limit",
    "mailfolder is full",
    "not found, try again",
    "host not reachable",
    "unexpected name server reply",
)
_POLICY = (
    "spam",
    "blacklist",
    "blocklist",
    "block list",
    "black list",
    "blocked",
    "spamhaus",
    "spamcop",
    "barracuda",
    "rbl",
    "dnsbl",
    "reputation",
    "policy",
    "content rejected",
    "message content",
    "media error",
    "virus",
    "malware",
    "not permitted",
    "not authorized",
    "relay access denied",
    "relaying denied",
    "relay not permitted",
    "unable to relay",
    "relaying",
    "spf",
    "dkim",
    "dmarc",
    "authentication",
    "not authenticated",
    "purported responsible address",
    "reverse dns",
    "ptr record",
    "rdns",
    "sender address rejected",
    "unroutable sender",
    "sender rejected",
    "sender verify failed",
    "sender denied",
    "access denied",
    "administrative prohibition",
    "prohibited",
    "not accepted",
    "refused",
    "weren't sent",
    "filtered",
    "rfc 5322",
    "rfc5322",
    "rfc 2822",
    "bulk mail",
    "unsolicited",
    "smtp server of your isp",
    "syntax error",
    "permission to post",
    "don't have permission",
    "権限",
    "domain of sender address",
    "sender domain",
    "invalid domain name",
    "not a member",
    "after initial connection",
    "greeting",
    "unauthenticated",
    "protocol violation",
    "at a rate that",
    "user complaints",
    "unverifyable",
    "unverifiable",
    "client host rejected",
    "invalid ip",
    "not allowed",
    "provide a valid from",
    "sent to too many recipients",
    "malformed address",
)
# Words that name the domain (not the mailbox) as gone: hard, and DNS's answer.
_DOMAIN_NAMES = (
    "no such domain",
    "domain not found",
    "host not found",
    "host unknown",
    "unknown host",
    "name or service not known",
    "no mx",
    "null mx",
    "invalid domain",
    "domain is not reachable",
)
_HARD = (
    *_DOMAIN_NAMES,
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "unknown recipient",
    "recipient unknown",
    "no such mailbox",
    "mailbox not found",
    "mailbox does not exist",
    "does not exist",
    "doesn't exist",
    "unrouteable address",
    "unroutable address",
    "address has moved",
    "has moved",
    "bad destination mailbox",
    "user not found",
    "addressee unknown",
    "unknown local part",
    "account does not exist",
    "recipient not found",
    "not our customer",
    "unknown address",
    "not recognized",
    "invalid final delivery",
    "見つかりません",
    "存在しません",
    "invalid recipient",
    "may not exist",
    "recipient address rejected: access denied",
    "doesn't have a",
    "does not have a",
    "address couldn't be found",
    "address could not be found",
    "check if address is correct",
    "no valid recipients",
    "のリストにありません",
)
# The domain words, and what else says the domain takes no mail.
_DOMAIN_GONE = (
    *_DOMAIN_NAMES,
    "domain does not exist",
    "mail exchanger",
    "does not accept mail",
    "name service error",
    "account or domain may not exist",
    "not accepting network messages",
)
# Said of the mailbox or the network even next to a policy word ("refused",
# "blocked"): "connection refused" is not a refusal of us.
_SOFT_FIRST = (
    "connection refused",
    "message expired",
    "connection timed out",
    "connection reset",
    "account is blocked",
    "frequency limited",
    "procmail",
    "couldn't create",
    "was aborted after",
)
# A mailbox that is there but cannot take mail now. When the report's own prose
# says so of a failure its code calls a dead address, the report contradicts
# itself, and the less destructive reading wins: a soft bounce is retried and
# counted, a hard one suppresses the address for good.
_MAILBOX_THERE = (
    "not enough disk space",
    "mailbox is full",
    "mailbox full",
    "over quota",
    "quota exceeded",
    "account is disabled",
    "account has been disabled",
    "account is suspended",
)
# RFC 7504: 521 and 556, the host (or the domain) does not accept mail.
_NO_MAIL_RE = re.compile(r"\s*(521|556)[ -]")
_HOST_GONE_RE = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)+ does not exist")
_HARD_WEAK = (
    "address rejected",
    "recipient rejected",
    "invalid recipient",
    "invalid mailbox",
    "invalid address",
    "mailbox unavailable",
    "not found",
    "no mailbox",
    "not a valid",
    "is not valid",
    "no longer",
    "undeliverable address",
    "not listed",
    "no account",
    "mailbox is unavailable",
    "not exist",
)
_POLICY_WEAK = ("rejected", "denied", "not implemented")
_ON_HOLD = ("on hold",)
_PATTERNS = (("policy", _POLICY), ("soft", _SOFT), ("hard", _HARD), ("hard", _HARD_WEAK))
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|"
    r"absence|abwesenheit|r[ée]ponse automatique|respuesta autom[aá]tica|"
    r"fuera de la oficina|away from|i am away|autoreply|auto:)",
    re.I,
)
_DSN_SUBJECT = re.compile(
    r"(undeliver|deliver(y|ing) (status|fail|notification|has failed|delayed|report)|"
    r"returned mail|mail delivery|failure notice|non[- ]?delivery|could not be delivered|"
    r"delivery problem|bounce|not delivered|rejected|warning: message|failure|failed)",
    re.I,
)


@dataclass(frozen=True)
class Bounce:
    recipient: str  # lower case; "" when the report names nobody
    kind: str  # one of KINDS
    status: str  # "5.1.1", or "" when there is none
    diagnostic: str  # one line
    returned_to: str = ""  # the address the bounce was sent back to (VERP)
    message_id: str = ""  # the Message-ID of the message that bounced, when included


def _one_line(text: str, limit: int = 300) -> str:
    return _WS_RE.sub(" ", text).strip()[:limit]


def _status_of(text: str) -> str:
    found = _STATUS_RE.search(text)
    return ".".join(found.groups()) if found else ""


def _by_status(status: str) -> str:
    """The kind an enhanced status code says by itself ("" when it says nothing)."""
    code = tuple(int(p) for p in status.split(".")) if status else ()
    if len(code) != 3:
        return ""
    klass, subject, detail = code
    if klass == 4:
        return "policy" if subject == 7 else "soft"  # 4.7.x: the sender, for now
    if (subject, detail) == (0, 0):
        return ""
    if subject == 1 and detail in (1, 2, 3, 6, 10):
        return "hard"
    if subject == 1:
        return "policy"  # 5.1.7, 5.1.8: the sender's address
    if subject == 2 and detail == 1:
        return "soft"  # mailbox disabled: not proof it is gone
    if subject in (2, 3):
        return "soft"  # full, too big, system trouble
    if subject == 4 and detail in (1, 4):
        return "hard" if detail == 4 else "soft"
    if subject == 4:
        return "soft"  # routing, loops, expired in a queue
    if subject in (5, 6, 7):
        return "policy"  # protocol, content, security
    return ""


# The SMTP command a refusal answered, as the report tells it: Postfix's "(in
# reply to RCPT TO command)", Exim's "after RCPT TO:<...>", Sendmail's ">>> RCPT
# To:" transcript, and the like.
_PHASES = (
    (
        "data",
        re.compile(
            r"(in reply to end of data|after end of data|in reply to data|>>> data\b|"
            r"after data\b|end of data command|smtp command\W+data\b|\bdata command)",
            re.I,
        ),
    ),
    ("rcpt", re.compile(r"(rcpt to|>>> rcpt|after rcpt|rcpt command|smtp:rcpt|\[rcpt_to\])", re.I)),
    (
        "mail",
        re.compile(
            r"(in reply to mail from|after mail from|>>> mail from|mail from command)", re.I
        ),
    ),
    ("connect", re.compile(r"(after initial connection|in reply to (ehlo|helo)|greeting)", re.I)),
)


# What the big mailbox providers' servers answer, quoted by a relay without its
# code: a remote reply all the same (Gmail's, Yahoo's).
_REMOTE_WORDS = ("the email account that you tried to reach", "doesn't have a ")


def _names_mailbox(status: str) -> bool:
    """A permanent status code that names the recipient's mailbox or domain as
    bad: RFC 3463's 5.1.1, 5.1.2, 5.1.3, 5.1.6 and 5.1.10, and the extended
    5.1.x codes servers add (Office 365's 5.1.351: unknown recipient)."""
    parts = status.split(".")
    if len(parts) != 3 or parts[:2] != ["5", "1"] or not parts[2].isdigit():
        return False
    return int(parts[2]) in (1, 2, 3, 6) or int(parts[2]) >= 10


def phase_of(text: str) -> str:
    """ "rcpt", "data", "mail", "connect", or "" when the text does not say."""
    text = _WS_RE.sub(" ", text)  # "(in reply to RCPT\n    TO command)"
    for name, pattern in _PHASES:
        if pattern.search(text):
            return name
    return ""


def classify(status: str, diagnostic: str, action: str = "", phase: str = "") -> str:
    """The kind of one failure from its status code, diagnostic, DSN action and
    the SMTP command it answered (``phase``, "" when the report does not say).

    "No such user" proves a dead address when the server said it in reply to
    RCPT TO, or when the reporting server says it of its own mailboxes. After
    DATA the recipient had already been accepted: a filter's verdict (Japanese
    carriers disguise blocks so). In reply to MAIL FROM it is about the sender.
    And a remote server's reply quoted without saying when it came is not
    proof either, unless its status code names the mailbox."""
    kind = _classify(status, diagnostic, action)
    if kind != "hard" or phase == "rcpt" or _names_mailbox(status):
        return kind
    text = _words(diagnostic)
    if phase != "mail" and (
        any(w in text for w in _DOMAIN_GONE)
        or _HOST_GONE_RE.search(text)
        or (_NO_MAIL_RE.match(text) and not any(w in text for w in _POLICY))
    ):
        return kind  # the domain: decided by DNS, not by a reply
    if phase in ("data", "mail", "connect"):
        return "policy"
    if _REPLY_RE.search(diagnostic) or any(w in text for w in _REMOTE_WORDS):
        return "policy"  # a remote server's reply, not said to answer RCPT TO
    return kind


def _words(text: str) -> str:
    """``text`` in lower case without addresses: "filtered@example.org" is a name,
    not a verdict."""
    return _WS_RE.sub(" ", _ADDRESS_RE.sub(" ", text)).lower()


def _classify(status: str, diagnostic: str, action: str) -> str:
    text = _words(diagnostic)
    if status.startswith("2."):
        return "unknown"  # delivered: not a failure
    if "null mx" in text or "doesn't receive email" in text:
        return "hard"  # RFC 7505: the domain says it takes no mail, for good
    if status in ("5.1.7", "5.1.8"):
        return "policy"  # the sender's address, not the recipient's
    temporary = (
        action == "delayed" or status.startswith("4.") or bool(re.match(r"\s*4\d\d\b", text))
    )
    if any(w in text for w in _ON_HOLD):
        return "unknown"
    if "recipient address rejected: access denied" in text:
        return "hard"  # Office 365's answer for an address it does not have
    policy_words = any(w in text for w in _POLICY)
    if (_NO_MAIL_RE.match(text) or "not accepting network messages" in text) and not policy_words:
        return "hard"  # RFC 7504: this host takes no mail at all
    if any(w in text for w in _SOFT_FIRST):
        return "soft"  # the network or the mailbox, whatever else the reply says
    for kind, words in _PATTERNS[:3]:
        if any(w in text for w in words):
            if kind == "hard" and temporary:
                return "soft"  # a temporary failure never proves an address dead
            return kind
    by_status = _by_status(status)
    if by_status:
        return by_status
    if temporary:
        return "soft"
    if any(w in text for w in _HARD_WEAK):
        return "hard"
    if any(w in text for w in _POLICY_WEAK):
        return "policy"
    return "unknown"


def _text_parts(msg: Message) -> list[str]:
    """The readable parts of the report itself (not the returned message)."""
    if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
        # The boundary the header names is not in the body (a mangled report):
        # read the body as one text, as a person would.
        payload = msg.get_payload()
        return [payload] if isinstance(payload, str) else []
    out: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            break
        if part.get_content_maintype() == "text":
            try:
                payload = part.get_payload(decode=True)
            except Exception:  # noqa: BLE001 - a broken part is skipped, not fatal
                continue
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or (
                    "iso-2022-jp" if b"\x1b$B" in payload else "utf-8"
                )
                try:
                    out.append(payload.decode(charset, "replace"))
                except LookupError:
                    out.append(payload.decode("utf-8", "replace"))
    return out


def _included_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                first = inner[0]
                return first if isinstance(first, Message) else None
        if ctype == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return email.message_from_bytes(text, policy=email.policy.compat32)
    return None


def _message_id(msg: Message, body: str) -> str:
    inner = _included_headers(msg)
    if inner is not None and inner.get("Message-ID"):
        return str(inner.get("Message-ID")).strip()
    found = re.search(r"^Message-ID:\s*(<[^>\s]+>)", body, re.I | re.M)
    return found.group(1) if found else ""


def _address(value: str) -> str:
    found = _ADDRESS_RE.search(value or "")
    return found.group(0).lower().strip(".") if found else ""


def _dsn(msg: Message) -> list[tuple[str, str, str, str]]:
    """(recipient, action, status, diagnostic) of every recipient of a DSN part."""
    out = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:] if len(blocks) > 1 else blocks:
            if isinstance(block, Message):
                out.extend(_dsn_block(block))
    return out


def _dsn_block(block: Message) -> list[tuple[str, str, str, str]]:
    recipient = _address(str(block.get("Final-Recipient") or block.get("Original-Recipient") or ""))
    if not recipient:
        return []
    status = _status_of(str(block.get("Status") or ""))
    diagnostic = _one_line(str(block.get("Diagnostic-Code") or ""))
    diagnostic = re.sub(r"^(smtp|x-[\w-]+|x-postfix|x-unix);\s*", "", diagnostic, flags=re.I)
    action = str(block.get("Action") or "").strip().lower()
    return [(recipient, action, status, diagnostic)]


def _reporting_mta(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list) and blocks and isinstance(blocks[0], Message):
                return str(blocks[0].get("Reporting-MTA") or "").lower()
    return ""


# Amazon SES's receiving endpoints bounce only when a receipt rule of the
# domain's owner says to, with the code and text that owner chose: a filter's
# verdict, whatever its words, not a mailbox found missing.
_RULE_BOUNCE_RE = re.compile(r"\binbound-smtp\.[a-z0-9-]+\.amazonaws\.com\b")


_FIELDS_RE = re.compile(r"^(?:final|original)-recipient:.*?(?=\n\s*\n|\Z)", re.I | re.M | re.S)


def _dsn_in_text(body: str) -> list[tuple[str, str, str, str]]:
    """The per-recipient fields of a DSN that is not a MIME part of its own (a
    report whose MIME structure is broken, or pasted as text)."""
    out = []
    for block in _FIELDS_RE.finditer(body):
        fields = email.message_from_string(block.group(0), policy=email.policy.compat32)
        out.extend(_dsn_block(fields))
    return out


def _feedback(msg: Message) -> tuple[str, str] | None:
    """(recipient, feedback type) of an ARF report."""
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = part.get_payload()
            report = fields[0] if isinstance(fields, list) and fields else None
            kind, recipient = "abuse", ""
            if isinstance(report, Message):
                kind = str(report.get("Feedback-Type") or "abuse").strip().lower()
                recipient = _address(str(report.get("Original-Rcpt-To") or ""))
            if not recipient:
                inner = _included_headers(msg)
                if inner is not None:
                    recipient = _address(str(inner.get("To") or ""))
            return recipient, kind
    return None


def _subject(msg: Message) -> str:
    raw = str(msg.get("Subject") or "")
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def _ses(body: str) -> list[Bounce] | None:
    """An Amazon SES notification (JSON, mailed by SNS): bounce, complaint, delivery."""
    start = body.find('{"notificationType"')
    if start < 0:
        return None
    try:
        note, _ = json.JSONDecoder().raw_decode(body[start:].replace("\n", ""))
    except ValueError:
        return None
    kind = str(note.get("notificationType", "")).lower()
    if kind == "complaint":
        people = note.get("complaint", {}).get("complainedRecipients", [])
        return [
            Bounce(_address(str(p.get("emailAddress", ""))), "complaint", "", "SES complaint")
            for p in people
        ]
    if kind == "bounce":
        bounce = note.get("bounce", {})
        permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
        out = []
        for p in bounce.get("bouncedRecipients", []):
            status = _status_of(str(p.get("status", "")))
            diagnostic = _one_line(str(p.get("diagnosticCode", "")))
            kind = classify(status, diagnostic)
            if kind == "unknown":
                kind = "hard" if permanent and status.startswith("5.1.") else "soft"
            out.append(Bounce(_address(str(p.get("emailAddress", ""))), kind, status, diagnostic))
        return out
    if kind == "delivery":
        people = note.get("delivery", {}).get("recipients", [])
        return [Bounce(_address(str(a)), "unknown", "", "SES delivery notice") for a in people]
    return None


def _is_autoreply(msg: Message, body: str) -> bool:
    """An out-of-office or other auto-reply (RFC 3834), not a failure report."""
    subject = _subject(msg)
    if _DSN_SUBJECT.search(subject) or _STATUS_RE.search(body):
        return False
    if str(msg.get("Auto-Submitted") or "").lower().startswith("auto-replied"):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Autoresponder"):
        return True
    if str(msg.get("Precedence") or "").lower() == "auto_reply":
        return True
    return bool(_AUTOREPLY_SUBJECT.search(subject))


def _complaint_recipient(msg: Message) -> str | None:
    """The recipient of a non-ARF complaint (Hotmail's JMRP, subject "complaint")."""
    inner = _included_headers(msg)
    if inner is not None and inner.get("X-HmXmrOriginalRecipient"):
        return _address(str(inner.get("X-HmXmrOriginalRecipient")))
    if re.search(r"\b(complaint|abuse report)\b", _subject(msg), re.I) and inner is not None:
        return _address(str(inner.get("To") or ""))
    return None


def _candidates(text: str, exclude: set[str]) -> list[str]:
    """Addresses a free-text report names, in order, without the sender's own;
    a postmaster address only when the report names no other (mail to a
    postmaster bounces too)."""
    out: list[str] = []
    postmasters: list[str] = []
    for found in _ADDRESS_RE.finditer(text):
        address = found.group(0).lower().strip(".")
        local = address.split("@")[0]
        if address in exclude or local in ("mailer-daemon", "mail-daemon"):
            continue
        group = postmasters if local == "postmaster" else out
        if address not in group:
            group.append(address)
    return out or postmasters


def _free_text(msg: Message, body: str, exclude: set[str]) -> list[Bounce]:
    """A report in words: the failed addresses and the error next to them."""
    report = body[: m.start()] if (m := _ORIGINAL_RE.search(body)) else body
    failed = [a for a in map(_address, str(msg.get("X-Failed-Recipients") or "").split(",")) if a]
    if failed and all(a.endswith("@googlegroups.com") for a in failed):
        # Google Groups refuses a post (no such group, or no right to post to it),
        # in the sender's language: the group's address is not a subscriber's.
        return [Bounce(a, "policy", "", "Google Groups refused the post") for a in failed]
    recipients = failed or _candidates(report, exclude)
    if not recipients:
        return []
    out = []
    for recipient in recipients[:50]:
        at = report.lower().find(recipient)
        start = report.rfind("\n", 0, at) + 1  # from the start of its line: "554 <a@b>..."
        window = report[start : at + 600] if at >= 0 else report
        around = report[max(0, at - 120) : at + 400] if at >= 0 else report
        error = _error_line(window) or _error_line(report)
        status = _status_of(error) or _status_of(window)
        kind = classify(status, error or window, phase=phase_of(around))
        out.append(Bounce(recipient, kind, status, _one_line(error)))
    return out


def _error_line(text: str) -> str:
    """The first line of ``text`` that reads like an SMTP error."""
    lines = text.splitlines()
    for at, line in enumerate(lines):
        low = _words(line)
        if (
            _STATUS_RE.search(line)
            or _REPLY_RE.search(line)
            or any(w in low for _, words in _PATTERNS for w in words)
        ):
            # A reply folded over indented lines (Postfix, Exim) reads as one.
            more = []
            for nxt in lines[at + 1 : at + 4]:
                if not nxt[:1].isspace() or not nxt.strip():
                    break
                more.append(nxt.strip())
            return " ".join([line.strip(), *more])
    return ""


def read_bounce(raw: bytes) -> list[Bounce]:
    """Every failure a returned message reports (an empty list: not a bounce)."""
    try:
        return _read(raw)
    except Exception as exc:  # noqa: BLE001 - a malformed message is not a crash
        return [Bounce("", "unknown", "", f"unreadable message: {type(exc).__name__}")]


def _read(raw: bytes) -> list[Bounce]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    returned_to = _address(
        str(msg.get("X-Original-To") or msg.get("Delivered-To") or msg.get("To") or "")
    )
    body = "\n".join(_text_parts(msg))
    message_id = _message_id(msg, body)
    feedback = _feedback(msg)
    if feedback is not None:
        recipient, kind = feedback
        return [
            Bounce(recipient, "complaint", "", f"feedback report: {kind}", returned_to, message_id)
        ]
    found = []
    failures = _dsn(msg) or _dsn_in_text(body)
    # The prose of a report about one recipient is about that recipient.
    # (Phrases of several words: no address can hide one, so no _words() here.)
    prose = _WS_RE.sub(" ", body).lower() if len(failures) == 1 else ""
    prose_says_there = any(w in prose for w in _MAILBOX_THERE)
    by_rule = bool(failures) and bool(_RULE_BOUNCE_RE.search(_reporting_mta(msg)))
    for recipient, action, status, diagnostic in failures:
        at = body.lower().find(recipient)
        near = body[body.rfind("\n", 0, at) + 1 : at + 600] if at >= 0 else ""
        phase = phase_of(diagnostic) or phase_of(
            body[max(0, at - 120) : at + 400] if at >= 0 else ""
        )
        said = diagnostic or _error_line(near)  # no diagnostic: the report's line about it
        if status.endswith(".0.0") and _status_of(said)[2:] not in ("", "0.0"):
            status = _status_of(said)  # "5.0.0" says less than the reply's own "5.1.1"
        if action in ("delivered", "relayed", "expanded"):
            kind = "unknown"
        elif said:
            kind = classify(status, said, action, phase)
        else:  # nothing said: the code, else the report's words
            kind = classify(status, "", action, phase)
            if kind == "unknown":
                kind = classify(status, _error_line(body) or body, action, phase)
        if kind == "hard" and prose_says_there:
            kind = "soft"
        elif kind == "hard" and by_rule:
            kind = "policy"
        found.append(Bounce(recipient, kind, status, diagnostic, returned_to, message_id))
    if found:
        return found
    ses = _ses(body)
    if ses:
        return [
            Bounce(b.recipient, b.kind, b.status, b.diagnostic, returned_to, message_id)
            for b in ses
        ]
    if str(msg.get("X-Apple-Unsubscribe") or "").strip().lower() == "true":
        # Apple Mail's unsubscribe button mails the List-Unsubscribe address: the
        # reader asks to stop, as a feedback loop would report it.
        return [
            Bounce(
                _address(str(msg.get("From") or "")),
                "complaint",
                "",
                "unsubscribe request (Apple Mail)",
                returned_to,
                message_id,
            )
        ]
    complained = _complaint_recipient(msg)
    if complained is not None:
        return [Bounce(complained, "complaint", "", "complaint report", returned_to, message_id)]
    sender = _address(str(msg.get("From") or ""))
    if _is_autoreply(msg, body):
        return [
            Bounce(
                sender,
                "autoreply",
                "",
                _one_line(str(msg.get("Subject") or "")),
                returned_to,
                message_id,
            )
        ]
    exclude = {returned_to, _address(str(msg.get("To") or "")), sender}
    return [
        Bounce(b.recipient, b.kind, b.status, b.diagnostic, returned_to, message_id)
        for b in _free_text(msg, body, exclude)
    ]
