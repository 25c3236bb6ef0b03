"""Sending benchmarks (issue: send). Run: python benchmarks/bench_send.py [N] [--also-1m]

Same run, same machine, same 127.0.0.1 sink (Postfix's smtp-sink, no daemon):
- per-subscriber message build (personalise and encode), median of repeats;
- `newsletter send` of the seed issue to N subscribers (default 100,000) with 4
  connections, delivery log included, as a whole process: msgs/s and peak RSS;
- Postfix's `smtp-source -s 4` with messages of the same size (the C reference);
- mailmerge 2.3.0 (installed in its own venv under build/) on a sample.

smtp-sink and smtp-source come from Debian's postfix package, extracted without
installing a daemon: `apt-get download postfix && dpkg -x postfix_*.deb DIR`.
This script does that into build/postfix when they are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import BIN, REPO, median_seconds

POSTFIX = REPO / "build" / "postfix"
SINK = POSTFIX / "usr" / "sbin" / "smtp-sink"
SOURCE = POSTFIX / "usr" / "sbin" / "smtp-source"
LIBS = {"LD_LIBRARY_PATH": str(POSTFIX / "usr" / "lib" / "postfix")}
MAILMERGE_VENV = REPO / "build" / "bench-mailmerge"


def ensure_postfix() -> None:
    if SINK.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["apt-get", "download", "postfix"], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        deb = next(Path(tmp).glob("postfix_*.deb"))
        POSTFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(POSTFIX)], check=True)


def ensure_mailmerge() -> Path:
    exe = MAILMERGE_VENV / "bin" / "mailmerge"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MAILMERGE_VENV)], check=True)
        subprocess.run(
            [str(MAILMERGE_VENV / "bin" / "pip"), "install", "-q", "mailmerge==2.3.0"], check=True
        )
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [str(SINK), *user, "-4", f"127.0.0.1:{port}", "1024"], env={**os.environ, **LIBS}
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start")


def timed_child(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) and stderr of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    with ThreadPoolExecutor(1) as pool:  # read both pipes at once: a full one blocks the child
        err_future = pool.submit(proc.stderr.read)
        out = proc.stdout.read()
        err = err_future.result()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} failed ({proc.returncode}): {err.decode()[-500:]}{out.decode()[-500:]}"
        )
    return elapsed, usage.ru_maxrss, out.decode()


def make_home(n: int) -> Path:
    home = Path(tempfile.mkdtemp(prefix="bench-send-"))
    (home / "issues").mkdir()
    shutil.copy(REPO / "issues" / "2025-04-16.yaml", home / "issues")
    db_path = home / "newsletter.db"
    from composer.store.database import Store

    Store(db_path).close()
    db = sqlite3.connect(db_path)
    db.executemany(
        "INSERT INTO subscribers (email, name, created_at, updated_at) VALUES (?, ?, 'x', 'x')",
        ((f"reader{i}@example.org", f"Reader {i}") for i in range(n)),
    )
    db.commit()
    db.close()
    return home


def message_size(home: Path) -> int:
    from composer.config import load_settings
    from composer.send.prepare import message_template, prepare
    from composer.send.recipients import Recipients

    settings = load_settings(home, env={})
    prepared = prepare(str(home / "issues" / "2025-04-16.yaml"), settings)
    tpl = message_template(settings, prepared)
    return len(tpl.build(Recipients(settings, prepared.slug).sample()))


def bench_build(home: Path) -> float:
    """Median µs per message for build_chunks (personalise + encode)."""
    from composer.config import load_settings
    from composer.send.prepare import message_template, prepare
    from composer.send.recipients import Recipients

    settings = load_settings(home, env={})
    prepared = prepare(str(home / "issues" / "2025-04-16.yaml"), settings)
    tpl = message_template(settings, prepared)
    make = Recipients(settings, prepared.slug)
    recipients = [make.subscriber(i, f"reader{i}@example.org", f"Reader {i}") for i in range(2000)]

    def batch() -> None:
        for r in recipients:
            tpl.build_chunks(r, wire=True)

    return median_seconds(batch, 15, warmup=2) / len(recipients) * 1e6


def send_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `newsletter send` from ``home`` to the sink on ``port``."""
    return {
        **os.environ,
        "NEWSLETTER_HOME": str(home),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_SECURITY": "none",
        "NEWSLETTER_SECRET_KEY": "bench",
        "NEWSLETTER_ALLOW_TEST_SETUP": "1",  # example.org, loopback links: a local sink
        **extra,
    }


def bench_newsletter(n: int, port: int) -> tuple[float, int]:
    home = make_home(n)
    env = send_env(home, port)
    elapsed, rss, out = timed_child(
        [str(BIN / "newsletter"), "send", "2025-04-16", "--yes", "--connections", "4"], env, home
    )
    assert f"{n:,} sent" in out, out
    shutil.rmtree(home)
    return n / elapsed, rss


def bench_smtp_source(n: int, size: int, port: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            str(SOURCE),
            "-s",
            "4",
            "-m",
            str(n),
            "-l",
            str(size),
            "-f",
            "news@example.org",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, **LIBS},
        check=True,
    )
    return n / (time.perf_counter() - start)


def bench_mailmerge(n: int, port: int, home: Path) -> float:
    exe = ensure_mailmerge()
    work = Path(tempfile.mkdtemp(prefix="bench-mm-"))
    html = (home / "build" / "2025-04-16" / "email.html").read_text()
    (work / "mailmerge_template.txt").write_text(
        "TO: {{email}}\nSUBJECT: Weekly Update\nFROM: news@example.org\n"
        "CONTENT-TYPE: text/html\n\n{% raw %}" + html + "{% endraw %}\n"
    )
    (work / "mailmerge_database.csv").write_text(
        "email,name\n" + "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(n))
    )
    (work / "mailmerge_server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n"
    )
    start = time.perf_counter()
    subprocess.run(
        [str(exe), "--no-dry-run", "--no-limit", "--output-format", "raw"],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rate = n / (time.perf_counter() - start)
    shutil.rmtree(work)
    return rate


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    ensure_postfix()
    home = make_home(10)
    subprocess.run(
        [str(BIN / "newsletter"), "build", "2025-04-16"],
        cwd=home,
        check=True,
        env={**os.environ, "NEWSLETTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    size = message_size(home)
    build_us = bench_build(home)
    print(f"message size: {size:,} bytes")
    print(f"per-subscriber build (build_chunks): median {build_us:.1f} µs  (target <= 20 µs)")
    port = free_port()
    sink = start_sink(port)
    try:
        ours = [bench_newsletter(n, port) for _ in range(3)]
        source = [bench_smtp_source(n, size, port) for _ in range(3)]
        mm = bench_mailmerge(500, port, home) if "--no-mailmerge" not in sys.argv else 1.0
        rate = statistics.median(r for r, _ in ours)
        ref = statistics.median(source)
        print(
            f"newsletter send, {n:,} subscribers, 4 connections: median {rate:,.0f} msgs/s; "
            f"peak RSS {max(m for _, m in ours) / 1024:.0f} MB"
        )
        print(
            f"smtp-source -s 4 (C), same size:                 median {ref:,.0f} msgs/s; "
            f"ratio {rate / ref:.2f} (target >= 0.75)"
        )
        print(
            f"mailmerge 2.3.0 (500 messages):                  {mm:,.0f} msgs/s; "
            f"ratio {rate / mm:.0f}x (target >= 40x)"
        )
        if "--also-1m" in sys.argv:
            big_rate, big_rss = bench_newsletter(1_000_000, port)
            print(
                f"newsletter send, 1,000,000 subscribers: {big_rate:,.0f} msgs/s; "
                f"peak RSS {big_rss / 1024:.0f} MB"
            )
    finally:
        sink.terminate()
        sink.wait()
    shutil.rmtree(home)


if __name__ == "__main__":
    main()
