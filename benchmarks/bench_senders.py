"""Beyond one machine (issue: PostgreSQL, several senders, several relays). Run:
python benchmarks/bench_senders.py [N] [--runs K] [--trials T]

Debian's PostgreSQL (started here, fsync and synchronous commits on, as in
production) and Postfix's smtp-sink on 127.0.0.1; the seed issue, 4
connections per sender, durable delivery log; runs interleaved, medians of K:

1. one sender on PostgreSQL against the same sender on SQLite, on loopback,
   with 4 and with 8 connections (the same for both);
2. two senders sharing one send against one sender, through the 20 ms
   round-trip proxy of bench_engine.py (the relay, not the CPU, is the limit;
   4,000 messages),
   and on loopback (this machine's two cores shared by the senders, PostgreSQL
   and the sink);
3. killing one of three senders (2 connections each) at a random moment, T
   times, into an aiosmtpd server that counts what each address got: lost,
   duplicates, in doubt;
4. relay failover: two smtp-sinks as SMTP_RELAYS, one killed (SIGKILL) a third
   of the way: every message sent or in doubt, none lost.

Rates are whole-process (start-up included): messages over the time from the
first sender's start to the last one's end.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_engine import PROXY
from bench_send import BIN, ensure_postfix, free_port, make_home, send_env, start_sink
from common import REPO, messages_and_runs

sys.path.insert(0, str(REPO))

from composer.dburl import DatabaseURL  # noqa: E402
from composer.store.connection import connect  # noqa: E402
from tests import postgres_server  # noqa: E402
from tests.smtp_server import Handler, running  # noqa: E402

# Through the proxy one sender takes about 25 s for these (two, about 14 s): enough
# for the start-up of a process (about 0.8 s on PostgreSQL) to weigh little.
PROXIED = 4_000


def on_postgres(home: Path, server: postgres_server.PostgresServer) -> str:
    """The SQLite newsletter of ``home`` copied into a new PostgreSQL database."""
    url = server.fresh_database()
    subprocess.run(
        [str(BIN / "newsletter"), "db", "migrate-to", url],
        cwd=home,
        env={**os.environ, "NEWSLETTER_HOME": str(home)},
        check=True,
        capture_output=True,
    )
    return url


def senders(
    home: Path, port: int, count: int, connections: int, extra: dict[str, str]
) -> tuple[float, list[subprocess.Popen[bytes]]]:
    env = send_env(home, port, **extra)
    argv = [str(BIN / "newsletter"), "send", "2025-04-16", "--yes"]
    argv += ["--connections", str(connections)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(argv, env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    return start, procs


def rate(
    home: Path, port: int, n: int, count: int, extra: dict[str, str], connections: int = 4
) -> float:
    start, procs = senders(home, port, count, connections, extra)
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-800:] + out.decode()[-400:])
    elapsed = time.perf_counter() - start
    states = states_of(home, extra)
    assert states == {"sent": n}, states
    return n / elapsed


def states_of(home: Path, extra: dict[str, str]) -> dict[str, int]:
    raw = extra.get("NEWSLETTER_DB", "")
    db = connect(DatabaseURL(raw) if raw else home / "newsletter.db")
    try:
        rows = db.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
        return {str(s): int(c) for s, c in rows}
    finally:
        db.close()


def loopback_backends(
    n: int, runs: int, pg: postgres_server.PostgresServer, port: int, connections: int
) -> None:
    sqlite, postgres = [], []
    for _ in range(runs):
        home = make_home(n)
        sqlite.append(rate(home, port, n, 1, {}, connections))
        home = make_home(n)
        url = on_postgres(home, pg)
        postgres.append(rate(home, port, n, 1, {"NEWSLETTER_DB": url}, connections))
    a, b = statistics.median(postgres), statistics.median(sqlite)
    print(
        f"   {connections} connections: PostgreSQL {a:,.0f} msgs/s, SQLite {b:,.0f} msgs/s: ",
        end="",
    )
    print(f"{a / b:.2f}x (target 0.8x)")


def shared(n: int, runs: int, pg: postgres_server.PostgresServer, port: int, label: str) -> None:
    one, two = [], []
    for _ in range(runs):
        home = make_home(n)
        one.append(rate(home, port, n, 1, {"NEWSLETTER_DB": on_postgres(home, pg)}))
        home = make_home(n)
        two.append(rate(home, port, n, 2, {"NEWSLETTER_DB": on_postgres(home, pg)}))
    a, b = statistics.median(two), statistics.median(one)
    print(f"   {label}: two senders {a:,.0f} msgs/s, one {b:,.0f} msgs/s: {a / b:.2f}x")


def kill_trials(trials: int, pg: postgres_server.PostgresServer) -> None:
    n = 600
    print(f"3. one of three senders (2 connections each) killed, {n} messages, {trials} trials:")
    rng = random.Random(20261130)
    for trial in range(trials):
        home = make_home(n)
        url = on_postgres(home, pg)
        handler = Handler(delay=0.01)
        with running(handler) as server:
            extra = {**server.env(), "NEWSLETTER_DB": url}
            _, procs = senders(home, server.port, 3, 2, extra)
            at = rng.randint(50, 450)
            while len(handler.received) < at:
                time.sleep(0.002)
            victim = procs[rng.randrange(3)]
            victim.send_signal(signal.SIGKILL)
            for p in procs:
                p.communicate()
        got = handler.recipients()
        states = dict(
            connect(DatabaseURL(url))
            .execute(
                "SELECT s.email, d.state FROM deliveries d JOIN subscribers s "
                "ON s.id = d.subscriber_id"
            )
            .fetchall()
        )
        doubtful = {a for a, s in states.items() if s == "in_doubt"}
        lost = [a for a in states if a not in got and a not in doubtful]
        dups = [a for a, k in got.items() if k > 1]
        print(
            f"   trial {trial + 1}: killed after {at} messages: lost {len(lost)}, duplicates "
            f"{len(dups)} (all in doubt: {set(dups) <= doubtful}), in doubt {len(doubtful)}"
        )


def failover(n: int) -> None:
    home = make_home(n)
    ports = [free_port(), free_port()]
    sinks = [start_sink(p) for p in ports]
    (home / "relays.toml").write_text(
        "".join(
            f'[[relay]]\nname = "sink{i}"\nhost = "127.0.0.1"\nport = {p}\n'
            'security = "none"\nconnections = 2\n\n'
            for i, p in enumerate(ports)
        )
    )
    extra = {"SMTP_RELAYS": "relays.toml"}
    start, procs = senders(home, ports[0], 1, 4, extra)
    time.sleep(0.8)  # about a third of the way
    sinks[1].send_signal(signal.SIGKILL)
    out, err = procs[0].communicate()
    elapsed = time.perf_counter() - start
    sinks[0].terminate()
    states = states_of(home, extra)
    print(f"4. relay failover: {n:,} messages over two smtp-sinks, one killed after 0.8 s:")
    print(
        f"   {states} in {elapsed:.1f} s; exit {procs[0].returncode}; lost "
        f"{n - states.get('sent', 0) - states.get('in_doubt', 0)}"
    )
    for line in err.decode().splitlines():
        if "warning" in line:
            print(f"   {line}")


def main() -> None:
    n, runs = messages_and_runs(10_000, 5)
    args = sys.argv[1:]
    trials = int(args[args.index("--trials") + 1]) if "--trials" in args else 5
    ensure_postfix()
    pg = postgres_server.start(durable=True)
    sink_port, proxy_port = free_port(), free_port()
    sink = start_sink(sink_port)
    proxy = subprocess.Popen(
        [sys.executable, "-c", PROXY, str(proxy_port), str(sink_port), "0.010"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline() == "ready\n"
        print(f"1. one sender, loopback, {n:,} messages (median of {runs}):")
        for connections in (4, 8):  # a commit's latency is higher on PostgreSQL: more in flight
            loopback_backends(n, runs, pg, sink_port, connections)
        print(
            f"2. one send shared by two senders, 4 connections each (median of {max(3, runs // 2)}):"
        )
        shared(
            PROXIED, max(3, runs // 2), pg, proxy_port, "through a 20 ms round trip (target 1.8x)"
        )
        shared(n, max(3, runs // 2), pg, sink_port, "on loopback")
        kill_trials(trials, pg)
        failover(n)
    finally:
        proxy.terminate()
        sink.terminate()
        pg.stop()


if __name__ == "__main__":
    main()
