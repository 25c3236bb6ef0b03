"""Run the real `newsletter serve` / `newsletter preview` as processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import kept_env
from tests.smtp_server import free_port


@contextlib.contextmanager
def newsletter_server(
    home: Path,
    *args: str,
    env_extra: dict[str, str] | None = None,
    info: dict[str, Any] | None = None,
) -> Iterator[int]:
    """The real server on a free port. ``info`` gets its ``pid``, and its ``stderr``
    once it has stopped."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "NEWSLETTER_"))}
    env.update(kept_env())
    env.update(
        {
            "NEWSLETTER_HOME": str(home),
            "NEWSLETTER_SECRET_KEY": "test-secret-key",
            "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
            **(env_extra or {}),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "composer", *args, "--port", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if info is not None:
        info["pid"] = proc.pid
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=5)
                raise RuntimeError(f"server did not start: {err.decode()}{out.decode()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if info is not None:
            info["stderr"] = err.decode("utf-8", "replace")


def raw_get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    """Send the request line exactly as given (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


@contextlib.contextmanager
def tls_front(target: int, context: ssl.SSLContext) -> Iterator[int]:
    """An https front on 127.0.0.1 for a plain server on ``target`` (as a
    deployment's https server is in front of `newsletter serve`)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    port = int(listener.getsockname()[1])
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve(raw: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            client = context.wrap_socket(raw, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", target))
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join(10)
            client.close()
            upstream.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()
