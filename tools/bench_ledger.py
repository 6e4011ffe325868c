"""Ledger throughput against the raw database, measured in the same run. Prints one JSON line.

    python tools/bench_ledger.py [--appends 1500] [--verify-events 100000] [--no-postgres]

append_per_s        durable appends through arledger (one ~1 KB event per transaction, sealed)
raw_sqlite_per_s    the same stored bytes, same number of transactions, straight through sqlite3
                    with the same pragmas (WAL, the same synchronous level)
batch_append_per_s  100 events per transaction through arledger
verify_events_per_s a full `audit verify` (leaves, roots, decode every event) of N events
raw_scan_events_per_s the same rows read in order through sqlite3 with one sha256 per row
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import codec  # noqa: E402
from ledger import events as ev  # noqa: E402
from ledger.app import Ledger  # noqa: E402
from ledger.audit import init_ledger, verify  # noqa: E402


def make_event(i: int) -> ev.TrialProposed:
    # ~1 KB stored: half random hex (incompressible-ish), half prose
    text = os.urandom(300).hex() + " widen the MLP and lower the LR " * 8
    return ev.TrialProposed(originator_id=uuid.uuid4(), originator_version=1, actor="agent:bench",
                            campaign_id=uuid.UUID(int=1), number=i, specialist="opt", surface="opt",
                            hypothesis=text[:1200])


def bench_appends(url: str, n: int, batch: int = 1) -> float:
    led = Ledger.open(url, create=True)
    evs = [make_event(i) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        led.save(*evs[i:i + batch])
    dt = time.perf_counter() - t0
    led.close()
    return n / dt


def sqlite_synchronous(path: Path) -> int:
    led = Ledger.open(f"sqlite:{path}")
    with led.recorder.datastore.transaction(commit=False) as c:
        c.execute("PRAGMA synchronous")
        val = c.fetchone()[0]
    led.close()
    return int(val)


def bench_raw_sqlite(path: Path, n: int, synchronous: int) -> float:
    states = [codec.encode(make_event(i)) for i in range(n)]
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
                 "state BLOB, PRIMARY KEY (originator_id, originator_version))")
    t0 = time.perf_counter()
    for topic, state in states:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO stored_events VALUES (?,?,?,?)", (uuid.uuid4().hex, 1, topic, state))
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt


def build_ledger(url: str, n: int) -> Ledger:
    led, _, _ = init_ledger(url, Path(tempfile.mkdtemp()) / "k.key")
    batch = 500
    done = 1
    i = 0
    while done < n:
        k = min(batch, n - done)
        led.save(*[make_event(i + j) for j in range(k)])
        done += k
        i += k
    return led


def bench_verify(led: Ledger) -> tuple[float, int]:
    t0 = time.perf_counter()
    rep = verify(led)
    dt = time.perf_counter() - t0
    assert rep.ok, rep.problems[:3]
    return rep.events / dt, rep.events


def bench_raw_scan(path: Path) -> float:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    t0 = time.perf_counter()
    n = 0
    sha = hashlib.sha256
    cur = conn.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")
    while True:
        rows = cur.fetchmany(4096)
        if not rows:
            break
        for row in rows:
            sha(row[4]).digest()
            n += 1
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appends", type=int, default=1500)
    ap.add_argument("--verify-events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        Ledger.open(f"sqlite:{t}/probe.db", create=True).close()
        sync = sqlite_synchronous(t / "probe.db")
        app_r, raw_r = [], []
        for r in range(args.repeats):  # interleaved, so machine noise hits both alike
            raw_r.append(bench_raw_sqlite(t / f"raw{r}.db", args.appends, sync))
            app_r.append(bench_appends(f"sqlite:{t}/app{r}.db", args.appends))
        out["sqlite_synchronous"] = sync
        out["append_per_s"] = round(median(app_r), 1)
        out["raw_sqlite_per_s"] = round(median(raw_r), 1)
        out["append_ratio"] = round(median([a / b for a, b in zip(app_r, raw_r, strict=True)]), 3)
        out["batch_append_per_s"] = round(bench_appends(f"sqlite:{t}/batch.db", args.appends * 10, batch=100), 1)
        led = build_ledger(f"sqlite:{t}/big.db", args.verify_events)
        ver_r, scan_r = [], []
        for _ in range(args.repeats):
            scan_r.append(bench_raw_scan(t / "big.db"))
            v, n = bench_verify(led)
            ver_r.append(v)
        led.close()
        out["verify_events"] = n
        out["verify_events_per_s"] = round(median(ver_r), 1)
        out["raw_scan_events_per_s"] = round(median(scan_r), 1)
        out["verify_ratio"] = round(median([a / b for a, b in zip(ver_r, scan_r, strict=True)]), 3)
    if not args.no_postgres:
        out.update(bench_postgres(args))
    print(json.dumps(out))


def bench_postgres(args: argparse.Namespace) -> dict[str, object]:
    try:
        import psycopg
    except ImportError:
        return {"postgres": "skipped: psycopg not installed"}
    dsn = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    try:
        admin = psycopg.connect(autocommit=True, connect_timeout=3, **dsn)
    except psycopg.Error as e:
        return {"postgres": f"skipped: not reachable ({str(e).strip()[:60]})"}
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}"
    res: dict[str, object] = {}
    try:
        n = max(args.appends // 3, 200)
        res["pg_append_per_s"] = round(bench_appends(url, n), 1)
        states = [codec.encode(make_event(i)) for i in range(n)]
        admin.execute(f'CREATE TABLE "{schema}".raw_events (originator_id uuid, originator_version bigint, '
                      "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))")
        with psycopg.connect(connect_timeout=3, **dsn) as conn:
            t0 = time.perf_counter()
            for topic, state in states:
                with conn.transaction():
                    conn.execute(f'INSERT INTO "{schema}".raw_events (originator_id, originator_version, topic, state) '
                                 "VALUES (%s, 1, %s, %s)", (uuid.uuid4(), topic, state))
            raw = n / (time.perf_counter() - t0)
        res["pg_raw_per_s"] = round(raw, 1)
        res["pg_append_ratio"] = round(res["pg_append_per_s"] / raw, 3)  # type: ignore[operator]
        led = build_ledger(url, min(args.verify_events, 20_000))
        v, nev = bench_verify(led)
        led.close()
        with psycopg.connect(connect_timeout=3, **dsn) as conn:
            t0 = time.perf_counter()
            cnt = 0
            with conn.cursor(name="scan") as cur:
                cur.itersize = 4096
                cur.execute(f'SELECT notification_id, originator_id, originator_version, topic, state FROM '
                            f'"{schema}".arledger_events ORDER BY notification_id')
                for row in cur:
                    hashlib.sha256(row[4]).digest()
                    cnt += 1
            scan = cnt / (time.perf_counter() - t0)
        res["pg_verify_events"] = nev
        res["pg_verify_events_per_s"] = round(v, 1)
        res["pg_raw_scan_events_per_s"] = round(scan, 1)
        res["pg_verify_ratio"] = round(v / scan, 3)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()
    return res


if __name__ == "__main__":
    main()
