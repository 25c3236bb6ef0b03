"""Debian's dnsmasq on 127.0.0.1 as the DNS server of a test: serving the given
TXT and MX records and nothing else (no upstream, no hosts file; NXDOMAIN for
other names in those domains). CI installs it (dnsmasq-base) and requires the
tests that use it (NEWSLETTER_REQUIRE_DNS=1); elsewhere they skip, saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.smtp_server import free_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
REQUIRE_DNS = os.environ.get("NEWSLETTER_REQUIRE_DNS") == "1"

Start = Callable[..., int]  # start(txt={name: text}, mx={domain: host}, zones=[...]) -> port


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[Start]:
    if not Path(DNSMASQ).exists():
        if REQUIRE_DNS:
            raise RuntimeError(f"{DNSMASQ} is missing: apt-get install dnsmasq-base")
        pytest.skip("DNS test skipped: dnsmasq is missing (apt-get install dnsmasq-base)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        txt: dict[str, str] | None = None,
        mx: dict[str, str] | None = None,
        zones: list[str] | None = None,
    ) -> int:
        port = free_port()
        conf = tmp_path / f"dnsmasq-{port}.conf"
        lines = ["no-resolv", "no-hosts", "bind-interfaces", "listen-address=127.0.0.1"]
        # Authoritative for these domains: names without records there are NXDOMAIN.
        lines += [f"local=/{zone}/" for zone in zones or []]
        for name, text in (txt or {}).items():
            # A TXT string holds 255 bytes at most: a long record is several strings.
            parts = [text[i : i + 250] for i in range(0, len(text), 250)]
            lines.append(f"txt-record={name.rstrip('.')},{','.join(parts)}")
        for domain, host in (mx or {}).items():
            lines.append(f"mx-host={domain},{host},10")
        conf.write_text("\n".join(lines) + "\n")
        user = ["--user=nobody"] if os.geteuid() == 0 else []
        proc = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", f"--conf-file={conf}", f"--port={port}", *user],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        query = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it answers a query
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                s.sendto(query, ("127.0.0.1", port))
                with contextlib.suppress(OSError):
                    s.recvfrom(512)
                    return port
        raise RuntimeError("dnsmasq did not answer")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait()
