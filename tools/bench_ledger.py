"""Ledger throughput against the raw database, measured in the same run, signing and sealing on.
Prints one JSON line.

    python tools/bench_ledger.py [--appends 1500] [--verify-events 100000] [--no-postgres]
                                 [--pg-procs 16] [--repeats 3]

append_per_s          durable appends through arledger: one ~1 KB event per transaction, sealed in the
                      Merkle log and signed by its writer (Ed25519) in that transaction
raw_sqlite_per_s      the same stored bytes, same number of transactions, straight through sqlite3 with
                      the same pragmas (WAL, the same synchronous level)
append_breakdown_us   one append's parts: encode (msgspec + zstd + digests), sign, the transaction
batch_append_per_s    100 events per transaction through arledger
verify_events_per_s   a full `audit verify` of N events (written 500 per append): leaves, roots, every
                      signature and its key, the tree head
raw_scan_events_per_s the same rows read in order through sqlite3 with one sha256 per row
verify_1x_*           the same for a ledger written one event per append (one signature per event:
                      bound by Ed25519 verification, ~80 us each, spread over the cores)
pg_*                  the same on PostgreSQL (raw: psycopg, one INSERT per transaction; scan: a named
                      cursor with one sha256 per row); pg_concurrent_*: --pg-procs processes appending at
                      once, appends/s over all of them and the p95 latency of one append
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsourcing.persistence import StoredEvent  # noqa: E402

from ledger import codec  # noqa: E402
from ledger import events as ev  # noqa: E402
from ledger.app import Ledger  # noqa: E402
from ledger.audit import init_ledger, verify  # noqa: E402
from ledger.identity import signer_for  # noqa: E402
from ledger.keys import SignedBatch, append_message  # noqa: E402


def make_event(i: int) -> ev.TrialProposed:
    # ~1 KB stored: half random hex (incompressible-ish), half prose
    text = os.urandom(300).hex() + " widen the MLP and lower the LR " * 8
    return ev.TrialProposed(originator_id=uuid.uuid4(), originator_version=1, actor="agent:bench",
                            campaign_id=uuid.UUID(int=1), number=i, specialist="opt", surface="opt",
                            hypothesis=text[:1200])


def signed_ledger(url: str, tmp: Path) -> Ledger:
    """An initialised (signed) ledger, opened as the writer ``agent:bench``."""
    led, _, _ = init_ledger(url, tmp / f"ledger-{uuid.uuid4().hex[:6]}.key")
    return led.with_signer(signer_for(led, "agent:bench"))


def bench_appends(url: str, n: int, tmp: Path, batch: int = 1) -> float:
    led = signed_ledger(url, tmp)
    evs = [make_event(i) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        led.save(*evs[i:i + batch])
    dt = time.perf_counter() - t0
    led.close()
    return n / dt


def append_breakdown(url: str, n: int, tmp: Path) -> dict[str, float]:
    """Median microseconds of one append's parts, done by hand the way Ledger.save does them."""
    led = signed_ledger(url, tmp)
    signer = led.signer
    assert signer is not None
    enc, sig, txn = [], [], []
    lid = bytes.fromhex(led.ledger_id())
    for i in range(n):
        e = make_event(i)
        t0 = time.perf_counter()
        topic, state, _refs, _hidden = codec.encode_event(e)
        digest = codec.event_digest(e.originator_id, 1, topic, state)
        t1 = time.perf_counter()
        batch = SignedBatch(signer.public_key, signer.sign(append_message(lid, digest, b"")), b"", genesis=False)
        t2 = time.perf_counter()
        led.recorder.insert_events([StoredEvent(originator_id=e.originator_id, originator_version=1, topic=topic,
                                                state=state)], signed=batch)
        t3 = time.perf_counter()
        enc.append(t1 - t0)
        sig.append(t2 - t1)
        txn.append(t3 - t2)
    led.close()
    return {"encode": round(statistics.median(enc) * 1e6, 1), "sign": round(statistics.median(sig) * 1e6, 1),
            "transaction": round(statistics.median(txn) * 1e6, 1)}


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


def build_ledger(url: str, n: int, tmp: Path, batch: int = 500) -> Ledger:
    led = signed_ledger(url, tmp)
    done = led.size()
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
    assert rep.signed_events == rep.events
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
    return statistics.median(xs)


def verify_pair(led: Ledger, scan: callable, repeats: int) -> tuple[float, float, float, int]:
    ver_r, scan_r = [], []
    n = 0
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        scan_r.append(scan())
        v, n = bench_verify(led)
        ver_r.append(v)
    return median(ver_r), median(scan_r), median([a / b for a, b in zip(ver_r, scan_r, strict=True)]), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appends", type=int, default=1500)
    ap.add_argument("--verify-events", type=int, default=100_000)
    ap.add_argument("--verify-1x-events", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg-procs", type=int, default=16)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        os.environ["ARLEDGER_HOME"] = str(t / "home")
        Ledger.open(f"sqlite:{t}/probe.db", create=True).close()
        sync = sqlite_synchronous(t / "probe.db")
        app_r, raw_r = [], []
        for r in range(args.repeats):  # interleaved, so machine noise hits both alike
            raw_r.append(bench_raw_sqlite(t / f"raw{r}.db", args.appends, sync))
            app_r.append(bench_appends(f"sqlite:{t}/app{r}/ledger.db", args.appends, t))
        out["sqlite_synchronous"] = sync
        out["append_per_s"] = round(median(app_r), 1)
        out["raw_sqlite_per_s"] = round(median(raw_r), 1)
        out["append_ratio"] = round(median([a / b for a, b in zip(app_r, raw_r, strict=True)]), 3)
        out["append_breakdown_us"] = append_breakdown(f"sqlite:{t}/parts/ledger.db", 300, t)
        out["batch_append_per_s"] = round(bench_appends(f"sqlite:{t}/batch/ledger.db", args.appends * 10, t,
                                                        batch=100), 1)
        led = build_ledger(f"sqlite:{t}/big/ledger.db", args.verify_events, t)
        v, s, ratio, n = verify_pair(led, lambda: bench_raw_scan(t / "big" / "ledger.db"), args.repeats)
        led.close()
        out.update(verify_events=n, verify_events_per_s=round(v, 1), raw_scan_events_per_s=round(s, 1),
                   verify_ratio=round(ratio, 3))
        led = build_ledger(f"sqlite:{t}/one/ledger.db", args.verify_1x_events, t, batch=1)
        v, s, ratio, n = verify_pair(led, lambda: bench_raw_scan(t / "one" / "ledger.db"), args.repeats)
        led.close()
        out.update(verify_1x_events=n, verify_1x_events_per_s=round(v, 1), verify_1x_ratio=round(ratio, 3))
        if not args.no_postgres:
            out.update(bench_postgres(args, t))
    out["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


# PostgreSQL ------------------------------------------------------------------------------------------

DSN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="test")


def _pg_raw_appends(schema: str, n: int) -> float:
    import psycopg

    states = [codec.encode(make_event(i)) for i in range(n)]
    with psycopg.connect(connect_timeout=3, **DSN) as conn:
        conn.execute(f'CREATE TABLE "{schema}".raw_events (originator_id uuid, originator_version bigint, '
                     "topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, "
                     "originator_version))")
        conn.commit()
        t0 = time.perf_counter()
        for topic, state in states:
            with conn.transaction():
                conn.execute(f'INSERT INTO "{schema}".raw_events (originator_id, originator_version, topic, state) '
                             "VALUES (%s, 1, %s, %s)", (uuid.uuid4(), topic, state))
        raw = n / (time.perf_counter() - t0)
        conn.execute(f'DROP TABLE "{schema}".raw_events')
        conn.commit()
    return raw


def _pg_scan(schema: str) -> float:
    import psycopg

    with psycopg.connect(connect_timeout=3, **DSN) as conn:
        t0 = time.perf_counter()
        cnt = 0
        with conn.cursor(name="scan") as cur:
            cur.itersize = 4096
            cur.execute(f'SELECT notification_id, originator_id, originator_version, topic, state FROM '
                        f'"{schema}".arledger_events ORDER BY notification_id')
            for row in cur:
                hashlib.sha256(row[4]).digest()
                cnt += 1
        return cnt / (time.perf_counter() - t0)


def _concurrent_writer(url: str, home: str, n: int, start_at: float, q: multiprocessing.Queue) -> None:
    os.environ["ARLEDGER_HOME"] = home
    led = Ledger.open(url)
    led = led.with_signer(signer_for(led, "agent:bench"))
    evs = [make_event(i) for i in range(n)]
    while time.time() < start_at:
        time.sleep(0.001)
    lat = []
    for e in evs:
        t0 = time.perf_counter()
        led.save(e)
        lat.append(time.perf_counter() - t0)
    done = time.time()
    led.close()
    q.put((lat, done))


def bench_pg_concurrent(url: str, procs: int, per_proc: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    q: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 3.0 + 0.2 * procs  # every process is connected and waiting by then
    ps = [ctx.Process(target=_concurrent_writer, args=(url, os.environ["ARLEDGER_HOME"], per_proc, start_at, q))
          for _ in range(procs)]
    for p in ps:
        p.start()
    res = [q.get(timeout=600) for _ in ps]
    for p in ps:
        p.join()
    lat = sorted(x for r, _ in res for x in r)
    end = max(d for _, d in res)
    return {"pg_concurrent_procs": procs, "pg_concurrent_appends_per_s": round(len(lat) / (end - start_at), 1),
            "pg_concurrent_p50_ms": round(lat[len(lat) // 2] * 1e3, 2),
            "pg_concurrent_p95_ms": round(lat[int(len(lat) * 0.95)] * 1e3, 2)}


def bench_postgres(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    try:
        import psycopg
    except ImportError:
        return {"postgres": "skipped: psycopg not installed"}
    try:
        admin = psycopg.connect(autocommit=True, connect_timeout=3, **DSN)
    except psycopg.Error as e:
        return {"postgres": f"skipped: not reachable ({str(e).strip()[:60]})"}
    res: dict[str, object] = {}
    schemas: list[str] = []

    def url_for() -> tuple[str, str]:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return f"postgresql://postgres@127.0.0.1:5432/test?schema={schema}", schema

    try:
        n = max(args.appends // 3, 200)
        app_r, raw_r = [], []
        for _ in range(args.repeats):
            url, schema = url_for()
            raw_r.append(_pg_raw_appends(schema, n))
            app_r.append(bench_appends(url, n, tmp))
        res["pg_append_per_s"] = round(median(app_r), 1)
        res["pg_raw_per_s"] = round(median(raw_r), 1)
        res["pg_append_ratio"] = round(median([a / b for a, b in zip(app_r, raw_r, strict=True)]), 3)
        url, _schema = url_for()
        res["pg_append_breakdown_us"] = append_breakdown(url, 200, tmp)
        url, schema = url_for()
        led = build_ledger(url, min(args.verify_events, 20_000), tmp)
        v, s, ratio, nev = verify_pair(led, lambda: _pg_scan(schema), args.repeats)
        led.close()
        res.update(pg_verify_events=nev, pg_verify_events_per_s=round(v, 1), pg_raw_scan_events_per_s=round(s, 1),
                   pg_verify_ratio=round(ratio, 3))
        if args.pg_procs:
            url, _schema = url_for()
            signed_ledger(url, tmp).close()
            res.update(bench_pg_concurrent(url, args.pg_procs, max(20, n // args.pg_procs * 2)))
    finally:
        for s in schemas:
            admin.execute(f'DROP SCHEMA "{s}" CASCADE')
        admin.close()
    return res


if __name__ == "__main__":
    main()
