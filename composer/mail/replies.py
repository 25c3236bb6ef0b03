"""What an SMTP refusal means, from its enhanced status code (RFC 3463) and text.

Only a refusal that says the *address* is bad (the mailbox or the domain does
not exist) is the subscriber's: it bounces them. A refusal on policy grounds
(relaying denied, authentication, the sender's reputation or SPF/DKIM/DMARC,
the content, the server's capacity or configuration) says nothing about the
address and must never mark a subscriber bounced.
"""

from __future__ import annotations

import re
from typing import Literal

Kind = Literal["address", "policy", "mailbox", "other"]

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# 5.1.x subjects that are about the recipient's address (5.1.7 and 5.1.8 are the
# sender's address: ours), and 5.2.1 (mailbox disabled).
_ADDRESS_CODES = {(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 9), (1, 10), (2, 1)}
# Policy texts win over address-like words: Postfix says "Recipient address
# rejected: Relay access denied" for a relaying refusal.
_POLICY_TEXT = re.compile(
    r"relay|denied|not permitted|not allowed|policy|spam|block|blacklist|blocklist|"
    r"reputation|\brbl\b|spf|dkim|dmarc|authenticat|auth required|sender|unauthori[sz]ed|"
    r"rate limit|too many|try again later|content|virus|malware|rejected by",
    re.IGNORECASE,
)
_ADDRESS_TEXT = re.compile(
    r"user unknown|unknown user|no such user|unknown recipient|recipient unknown|"
    r"no such (?:mailbox|recipient|address)|mailbox (?:unavailable|not found|does not exist)|"
    r"(?:address|user|mailbox|recipient|account) (?:does not|doesn't) exist|"
    r"invalid (?:mailbox|recipient|address)|unrouteable address|"
    r"domain (?:not found|does not exist)|host (?:or domain )?not found|"
    r"no mx|mailbox disabled|account (?:disabled|has been disabled)",
    re.IGNORECASE,
)
_MAILBOX_TEXT = re.compile(
    r"mailbox (?:is )?full|over quota|quota exceeded|insufficient storage", re.IGNORECASE
)


def enhanced_code(text: str) -> str | None:
    """The enhanced status code in a reply's text (``5.1.1``), if it has one."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def classify(code: int, text: str) -> Kind:
    """What a refusal (4xx/5xx reply to RCPT or to the end of data) is about:

    - ``address``: the recipient's address or domain does not exist (bounce them);
    - ``mailbox``: the mailbox exists but cannot take mail now (full);
    - ``policy``: the relay or the receiver refuses us (the address is fine);
    - ``other``: nothing says it is the address's fault.
    """
    enhanced = _ENHANCED.search(text)
    if enhanced is not None:
        _, subject, detail = (int(g) for g in enhanced.groups())
        if (subject, detail) in _ADDRESS_CODES:
            return "address"
        if (subject, detail) == (2, 2) or (subject, detail) == (2, 3):
            return "mailbox"
        if subject in (1, 3, 4, 5, 6, 7):
            return "policy"
        return "other"
    if _POLICY_TEXT.search(text):
        return "policy"
    if code >= 500 and code in (550, 551, 553) and _ADDRESS_TEXT.search(text):
        return "address"
    if _MAILBOX_TEXT.search(text):
        return "mailbox"
    return "other"


def same_refusal(a: str, b: str) -> bool:
    """Whether two replies are the same refusal (as when a relay refuses every message),
    ignoring the addresses and queue ids in their text."""
    return _shape(a) == _shape(b)


_VARIABLE = re.compile(r"<[^>]*>|\S+@\S+|\b[0-9A-F]{6,}\b|\d+")


def _shape(reply: str) -> str:
    return _VARIABLE.sub("#", reply.lower())[:200]
