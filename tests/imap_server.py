"""Debian's Dovecot on 127.0.0.1 as the IMAP server of a test: IMAP over TLS
only (a certificate from a trustme CA), one user, Maildir storage, all in a
temporary folder. CI installs it (dovecot-imapd) and requires the tests that
use it (NEWSLETTER_REQUIRE_IMAP=1); elsewhere they skip, saying why."""

from __future__ import annotations

import getpass
import imaplib
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.smtp_server import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
REQUIRE_IMAP = os.environ.get("NEWSLETTER_REQUIRE_IMAP") == "1"
USER, PASSWORD = "bounces", "imap-test-password"


@dataclass(frozen=True)
class ImapServer:
    port: int
    ca_file: Path
    folder: Path

    @property
    def url(self) -> str:
        return f"imaps://{USER}@127.0.0.1:{self.port}/INBOX"

    def env(self) -> dict[str, str]:
        return {"NEWSLETTER_IMAP_PASSWORD": PASSWORD, "NEWSLETTER_IMAP_CA_FILE": str(self.ca_file)}

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            status, _ = conn.append(folder, None, None, raw)
            assert status == "OK"
        finally:
            conn.logout()

    def count(self, folder: str) -> int:
        conn = self.client()
        try:
            status, data = conn.select(folder, readonly=True)
            return int(data[0]) if status == "OK" and data[0] else 0
        finally:
            conn.logout()


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[ImapServer]:
    if not Path(DOVECOT).exists():
        if REQUIRE_IMAP:
            raise RuntimeError(f"{DOVECOT} is missing: apt-get install dovecot-imapd")
        pytest.skip("IMAP test skipped: Dovecot is missing (apt-get install dovecot-imapd)")
    # As root, Dovecot's processes run as its own users, who cannot enter pytest's
    # private temporary folder: a world-enterable one of our own, removed after.
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="nl-dovecot-")) if root else tmp_path / "dovecot"
    if root:
        os.chmod(base, 0o755)
    for sub in ("run", "state", "home"):
        (base / sub).mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(base / "cert.pem"))
    cert.private_key_pem.write_to_path(str(base / "key.pem"))
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    if root:  # Dovecot's own users, as a packaged server runs
        internal, login, mail_user = "dovecot", "dovenull", "dovecot"
        shutil.chown(base / "home", mail_user, mail_user)
    else:  # everything as the user running the tests
        internal = login = mail_user = getpass.getuser()
    (base / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    conf = base / "dovecot.conf"
    conf.write_text(
        f"""base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain
disable_plaintext_auth = yes
first_valid_uid = 1
default_internal_user = {internal}
default_login_user = {login}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_user} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
"""
    )
    subprocess.run([DOVECOT, "-c", str(conf)], check=True)
    server = ImapServer(port, base / "ca.pem", base / "home" / USER / "Maildir")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    log = (
                        (base / "dovecot.log").read_text()
                        if (base / "dovecot.log").exists()
                        else ""
                    )
                    raise RuntimeError(f"Dovecot did not start: {log[-500:]}") from None
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run([DOVECOT, "-c", str(conf), "stop"], check=False)
        if root:
            shutil.rmtree(base, ignore_errors=True)
