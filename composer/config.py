"""Settings from the environment or a ``.env`` file in the newsletter's folder.

Secrets (the SMTP password, the signing key) are kept as ``Secret`` so that
``repr`` and ``str`` never show them, in logs or in tracebacks.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from composer.dburl import DatabaseURL
from composer.errors import ConfigError

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "ssl", "none")
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}  # by SMTP security
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEV_SECRET = "dev-only-insecure-key-change-me"


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class Relay:
    """An SMTP relay of its own (the transactional one)."""

    host: str
    port: int
    security: str
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class Settings:
    """Everything the tool reads from the environment, validated once."""

    home: Path
    database: Path | DatabaseURL  # a SQLite file, or PostgreSQL (NEWSLETTER_DB=postgresql://...)
    outbox: Path
    from_address: str
    base_url: str
    secret_key: Secret
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: Secret = field(default_factory=lambda: Secret(""))
    smtp_security: str = "starttls"
    smtp_timeout: float = 30.0
    smtp_data_timeout: float = 600.0  # for the reply to the final "." (RFC 5321 4.5.3.2.6)
    smtp_connect_attempts: int = 4  # tries of a send's first connection, with backoff
    smtp_pipeline_ahead: bool = True  # next MAIL/RCPT/DATA with the final "." (RFC 2920)
    smtp_8bitmime: bool = True  # 8bit bodies where the relay offers 8BITMIME (RFC 6152)
    db_wait: float = 600.0  # how long to wait for a database another process holds locked
    # Earlier keys, still accepted for links already in inboxes after a rotation.
    old_secret_keys: tuple[Secret, ...] = ()
    smtp_ca_file: str = ""
    unsubscribe_mailto: str = ""
    # VERP: each message's envelope sender is this address + "+<signed token>".
    bounce_address: str = ""
    # Soft bounces that bounce a subscriber: this many issues in a row, spread over
    # at least this many days.
    imap_password: Secret = field(default_factory=lambda: Secret(""))
    imap_ca_file: str = ""
    soft_bounces: int = 3
    soft_bounce_days: float = 14.0
    # DKIM: (selector, private key file) for RSA and for Ed25519; the d= domain.
    dkim_rsa: tuple[str, Path] | None = None
    dkim_ed25519: tuple[str, Path] | None = None
    dkim_domain: str = ""
    dns_server: str = ""  # host[:port] for DNS look-ups; empty: the system's resolver
    # Loopback links and example domains allowed in a send (tests on a local server).
    allow_test_setup: bool = False
    # Sign-up (``serve``): the lists offered, the consent text (empty: the theme's
    # words in the reader's language), a welcome mail after confirmation.
    signup_lists: tuple[str, ...] = ()
    consent_text: str = ""
    welcome_mail: bool = False
    # Against bots: seconds between showing the form and posting it; confirmation
    # mails per client address an hour and per email address every so many minutes.
    signup_min_seconds: float = 3.0
    signup_per_ip_hour: int = 5
    signup_address_minutes: float = 10.0
    confirm_days: float = 7.0  # how long a confirmation link works
    # Reverse proxies whose X-Forwarded-For is believed (addresses or networks).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # The relay for confirmation and welcome mails: the bulk relay's settings unless
    # TRANSACTIONAL_SMTP_HOST names another; always a connection of its own.
    transactional_relay: Relay | None = None
    # Several relays for a send (a TOML file), and the passwords its relays name:
    # every *_PASSWORD variable of the environment or .env, kept secret.
    smtp_relays: str = ""
    passwords: tuple[tuple[str, Secret], ...] = ()

    def transactional(self) -> Settings:
        """These settings with the transactional relay in place of the bulk one."""
        relay = self.transactional_relay
        if relay is None:
            return self
        return replace(
            self,
            smtp_host=relay.host,
            smtp_port=relay.port,
            smtp_security=relay.security,
            smtp_username=relay.username,
            smtp_password=relay.password,
        )

    def password(self, variable: str) -> Secret | None:
        """The secret in ``variable`` (a *_PASSWORD setting), if set."""
        return dict(self.passwords).get(variable)

    @property
    def cache_dir(self) -> Path:
        return self.home / "build" / ".cache"

    @property
    def verify_keys(self) -> list[str]:
        """Every key an unsubscribe token may be signed with, the current one first."""
        return [self.secret_key.get(), *(k.get() for k in self.old_secret_keys)]

    @property
    def uses_smtp(self) -> bool:
        return bool(self.smtp_host)

    @property
    def transport_label(self) -> str:
        if self.uses_smtp:
            return f"SMTP {self.smtp_host}:{self.smtp_port} ({self.smtp_security})"
        return f"local outbox (Maildir) {self.outbox}"

    @property
    def mail_domain(self) -> str:
        return self.from_address.rpartition("@")[2].strip(">").lower() or "localhost"

    @property
    def unsubscribe_mailbox(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.mail_domain}"


_BOUNCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def _bounce_address(env: dict[str, str]) -> str:
    """``NEWSLETTER_BOUNCE_ADDRESS``: where bounces go, as the base of each
    message's VERP envelope sender (``bounces+<token>@...``)."""
    value = env.get("NEWSLETTER_BOUNCE_ADDRESS", "").strip().lower()
    if value and (not _BOUNCE_RE.match(value) or "+" in value):
        raise ConfigError(
            f"NEWSLETTER_BOUNCE_ADDRESS={value!r} must be a plain address without '+', "
            "such as bounces@news.example.org (each message adds +<token> to it)"
        )
    return value


DKIM_SELECTOR_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*")


def _dkim_pair(
    env: dict[str, str], home: Path, selector_name: str, key_name: str
) -> tuple[str, Path] | None:
    """A DKIM selector and key file, both set or neither (a key file relative to the
    newsletter's folder)."""
    selector = env.get(selector_name, "").strip()
    key = env.get(key_name, "").strip()
    if not selector and not key:
        return None
    if not selector or not key:
        missing = selector_name if not selector else key_name
        raise ConfigError(
            f"{missing} is not set but {key_name if not selector else selector_name} is; "
            "set both (newsletter dkim keygen prints them)"
        )
    if not DKIM_SELECTOR_RE.fullmatch(selector):
        raise ConfigError(f"{selector_name}={selector!r} is not a DNS label such as 'news2026'")
    path = Path(key).expanduser()
    return selector, path if path.is_absolute() else home / path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; set it to e.g. {default}"
        ) from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from None


def _positive(env: dict[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value > 0:
        raise ConfigError(f"{name}={value:g} must be a positive number of seconds")
    return value


def _non_negative(env: dict[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value < 0:
        raise ConfigError(f"{name}={value:g} must be zero or more")
    return value


def _on(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "yes", "true"):
        return True
    if raw in ("0", "off", "no", "false"):
        return False
    raise ConfigError(f"{name}={raw!r} must be on or off")


_LIST_NAME_RE = re.compile(r"^[\w][\w .-]{0,63}$")


def _signup_lists(env: dict[str, str]) -> tuple[str, ...]:
    names = [n.strip() for n in env.get("NEWSLETTER_SIGNUP_LISTS", "").split(",") if n.strip()]
    for name in names:
        if not _LIST_NAME_RE.match(name):
            raise ConfigError(
                f"NEWSLETTER_SIGNUP_LISTS: {name!r} is not a list name (letters, digits, "
                "spaces, '.', '-', '_'); separate names with commas"
            )
    return tuple(dict.fromkeys(names))


def _proxies(env: dict[str, str]) -> tuple[IPNetwork, ...]:
    out = []
    for item in re.split(r"[,\s]+", env.get("NEWSLETTER_TRUSTED_PROXIES", "").strip()):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"NEWSLETTER_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                "such as 127.0.0.1 or 10.0.0.0/8"
            ) from None
    return tuple(out)


def _transactional(env: dict[str, str]) -> Relay | None:
    host = env.get("TRANSACTIONAL_SMTP_HOST", "").strip()
    if not host:
        return None
    security = env.get("TRANSACTIONAL_SMTP_SECURITY", "starttls").strip().lower() or "starttls"
    if security not in SECURITY_MODES:
        raise ConfigError(
            f"TRANSACTIONAL_SMTP_SECURITY={security!r} is not one of {', '.join(SECURITY_MODES)}"
        )
    port = _int(env, "TRANSACTIONAL_SMTP_PORT", DEFAULT_PORTS[security])
    return Relay(
        host,
        port,
        security,
        env.get("TRANSACTIONAL_SMTP_USERNAME", "").strip(),
        Secret(env.get("TRANSACTIONAL_SMTP_PASSWORD", "")),
    )


def load_settings(home: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read settings: real environment first, then ``HOME/.env`` for what is unset.

    ``home`` is the newsletter's folder; by default it is found as
    ``home.find_home`` finds it (``NEWSLETTER_HOME``, or walking up)."""
    if home is None:
        from composer.home import find_home

        home = find_home()
    home = home.resolve()
    merged: dict[str, str] = {}
    dotenv_path = home / ".env"
    if dotenv_path.is_file():
        from dotenv import dotenv_values

        try:
            values = dotenv_values(dotenv_path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{dotenv_path}: cannot read: {exc}") from None
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(os.environ if env is None else env)

    security = merged.get("SMTP_SECURITY", "starttls").strip().lower() or "starttls"
    if security not in SECURITY_MODES:
        raise ConfigError(f"SMTP_SECURITY={security!r} is not one of {', '.join(SECURITY_MODES)}")
    default_port = DEFAULT_PORTS[security]
    base_url = merged.get("NEWSLETTER_BASE_URL", "").strip() or "http://127.0.0.1:8000"
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"NEWSLETTER_BASE_URL={base_url!r} must be an absolute http(s) URL "
            "such as https://news.example.org"
        )
    from_address = merged.get("NEWSLETTER_FROM", "").strip() or ("newsletter@example.org")
    if "\r" in from_address or "\n" in from_address or "@" not in from_address:
        raise ConfigError(
            f"NEWSLETTER_FROM={from_address!r} must be one address such as "
            "'Weekly Update <news@example.org>'"
        )
    # A rotation: NEWSLETTER_SECRET_KEY=new,old signs with the first, accepts all.
    keys = [k for k in re.split(r"[,\s]+", merged.get("NEWSLETTER_SECRET_KEY", "")) if k]
    db_raw = merged.get("NEWSLETTER_DB", "").strip()
    outbox_raw = merged.get("NEWSLETTER_OUTBOX", "").strip()
    settings = Settings(
        home=home,
        database=(
            DatabaseURL(db_raw)
            if DatabaseURL.accepts(db_raw)
            else Path(db_raw).expanduser()
            if db_raw
            else home / "newsletter.db"
        ),
        outbox=Path(outbox_raw).expanduser() if outbox_raw else home / "outbox",
        from_address=from_address,
        base_url=base_url.rstrip("/"),
        secret_key=Secret(keys[0] if keys else DEV_SECRET),
        smtp_host=merged.get("SMTP_HOST", "").strip(),
        smtp_port=_int(merged, "SMTP_PORT", default_port),
        smtp_username=merged.get("SMTP_USERNAME", "").strip(),
        smtp_password=Secret(merged.get("SMTP_PASSWORD", "")),
        smtp_security=security,
        smtp_timeout=_positive(merged, "SMTP_TIMEOUT", 30.0),
        smtp_data_timeout=_positive(merged, "SMTP_DATA_TIMEOUT", 600.0),
        smtp_connect_attempts=max(1, _int(merged, "SMTP_CONNECT_ATTEMPTS", 4)),
        smtp_pipeline_ahead=merged.get("SMTP_PIPELINE_AHEAD", "on").strip().lower()
        not in ("0", "off", "no", "false"),
        smtp_8bitmime=merged.get("SMTP_8BITMIME", "on").strip().lower()
        not in ("0", "off", "no", "false"),
        db_wait=_positive(merged, "NEWSLETTER_DB_WAIT", 600.0),
        old_secret_keys=tuple(Secret(k) for k in keys[1:]),
        smtp_ca_file=merged.get("SMTP_CA_FILE", "").strip(),
        unsubscribe_mailto=merged.get("NEWSLETTER_UNSUBSCRIBE_MAILTO", "").strip(),
        bounce_address=_bounce_address(merged),
        imap_password=Secret(merged.get("NEWSLETTER_IMAP_PASSWORD", "")),
        imap_ca_file=merged.get("NEWSLETTER_IMAP_CA_FILE", "").strip(),
        soft_bounces=max(1, _int(merged, "NEWSLETTER_SOFT_BOUNCES", 3)),
        soft_bounce_days=_non_negative(merged, "NEWSLETTER_SOFT_BOUNCE_DAYS", 14.0),
        dkim_rsa=_dkim_pair(merged, home, "DKIM_SELECTOR", "DKIM_PRIVATE_KEY"),
        dkim_ed25519=_dkim_pair(merged, home, "DKIM_ED25519_SELECTOR", "DKIM_ED25519_PRIVATE_KEY"),
        dkim_domain=merged.get("DKIM_DOMAIN", "").strip().lower(),
        dns_server=merged.get("NEWSLETTER_DNS_SERVER", "").strip(),
        allow_test_setup=merged.get("NEWSLETTER_ALLOW_TEST_SETUP", "").strip() == "1",
        signup_lists=_signup_lists(merged),
        consent_text=merged.get("NEWSLETTER_CONSENT_TEXT", "").strip(),
        welcome_mail=_on(merged, "NEWSLETTER_WELCOME_MAIL", False),
        signup_min_seconds=_non_negative(merged, "NEWSLETTER_SIGNUP_MIN_SECONDS", 3.0),
        signup_per_ip_hour=max(0, _int(merged, "NEWSLETTER_SIGNUP_PER_IP_HOUR", 5)),
        signup_address_minutes=_non_negative(merged, "NEWSLETTER_SIGNUP_ADDRESS_MINUTES", 10.0),
        confirm_days=_positive(merged, "NEWSLETTER_CONFIRM_DAYS", 7.0),
        trusted_proxies=_proxies(merged),
        transactional_relay=_transactional(merged),
        smtp_relays=merged.get("SMTP_RELAYS", "").strip(),
        passwords=tuple(
            (k, Secret(v)) for k, v in sorted(merged.items()) if k.endswith("_PASSWORD") and v
        ),
    )
    log.debug(
        "newsletter folder %s (.env %s); database %s; transport %s",
        home,
        "read" if dotenv_path.is_file() else "absent",
        settings.database,
        settings.transport_label,
    )
    return settings
