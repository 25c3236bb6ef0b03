"""Several relays for one send: ``SMTP_RELAYS=relays.toml``.

Each ``[[relay]]`` names a relay and how much it takes::

    [[relay]]
    name = "primary"
    host = "smtp1.example.net"
    port = 587                  # default: by security, as SMTP_PORT
    security = "starttls"       # starttls, ssl or none
    username = "news"
    password_env = "RELAY1_PASSWORD"   # the password comes from this variable
    connections = 4
    per_second = 50             # optional limits
    per_hour = 100000
    share = 3                   # of the traffic, against the others' shares (1)

Messages are spread by share. A relay that stops answering (its connections
cannot be made again) or refuses us on policy is taken out of the send, and
its messages go to the others; the run stops only when none is left. Without
``SMTP_RELAYS``, the one relay of ``SMTP_*`` (or the local outbox) is used with
``--connections`` and ``--rate``/``--per-hour``, as always.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from composer.config import DEFAULT_PORTS, SECURITY_MODES, Secret, Settings
from composer.errors import ConfigError
from composer.fsutil import relative

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_KEYS = {
    "name",
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "ca_file",
    "connections",
    "per_second",
    "per_hour",
    "share",
}


@dataclass(frozen=True)
class Relay:
    """One relay of a send: the settings its transport reads, and its part."""

    name: str
    settings: Settings
    connections: int
    per_second: float | None = None
    per_hour: float | None = None
    share: float = 1.0


def single(settings: Settings, connections: int) -> list[Relay]:
    """The one relay of SMTP_* (or the local outbox), as today."""
    name = f"{settings.smtp_host}:{settings.smtp_port}" if settings.uses_smtp else "outbox"
    return [Relay(name, settings, connections)]


def relays_file(settings: Settings) -> Path | None:
    raw = settings.smtp_relays
    if not raw:
        return None
    path = Path(raw).expanduser()
    return path if path.is_absolute() else settings.home / path


def load_relays(settings: Settings, connections: int) -> list[Relay]:
    """The relays of this send: SMTP_RELAYS' file, else the one of SMTP_*."""
    path = relays_file(settings)
    if path is None:
        return single(settings, connections)
    where = relative(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"SMTP_RELAYS={where}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not TOML: {exc}") from None
    items = data.get("relay")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: no [[relay]] tables; see the README (Several relays)")
    out: list[Relay] = []
    for i, item in enumerate(items, start=1):
        out.append(_relay(settings, item, f"{where}: relay {i}"))
    names = [r.name for r in out]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{where}: two relays are named {name!r}; names must differ")
    return out


def _relay(settings: Settings, item: Any, where: str) -> Relay:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a table of settings")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(_KEYS))}"
        )
    name = item.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}: name must be a short word such as 'primary'")
    where = f"{where} ({name})"
    host = item.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"{where}: host is missing")
    security = item.get("security", "starttls")
    if security not in SECURITY_MODES:
        raise ConfigError(f"{where}: security must be one of {', '.join(SECURITY_MODES)}")
    port = _number(item, "port", where, DEFAULT_PORTS[security], int)
    password = Secret("")
    if "password_env" in item:
        variable = item["password_env"]
        if not isinstance(variable, str) or not variable.endswith("_PASSWORD"):
            raise ConfigError(
                f"{where}: password_env must name a setting ending in _PASSWORD "
                "(in the environment or .env; a password never goes in the relays file)"
            )
        found = settings.password(variable)
        if found is None:
            raise ConfigError(f"{where}: {variable} (its password_env) is not set")
        password = found
    username = item.get("username", "")
    ca_file = item.get("ca_file", "")
    if not isinstance(username, str) or not isinstance(ca_file, str):
        raise ConfigError(f"{where}: username and ca_file are text")
    relay_settings = replace(
        settings,
        smtp_host=host.strip(),
        smtp_port=port,
        smtp_security=security,
        smtp_username=username,
        smtp_password=password,
        smtp_ca_file=ca_file,
    )
    connections = _number(item, "connections", where, 4, int)
    share = _number(item, "share", where, 1.0, float)
    if not 1 <= connections <= 32 or share <= 0:
        raise ConfigError(f"{where}: connections must be 1 to 32 and share more than 0")
    per_second = _number(item, "per_second", where, None, float)
    per_hour = _number(item, "per_hour", where, None, float)
    return Relay(name, relay_settings, connections, per_second, per_hour, share)


def _number(item: dict[str, Any], key: str, where: str, default: Any, kind: type) -> Any:
    value = item.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: {key} must be a positive number")
    if kind is int and not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be a whole number")
    return kind(value)
