"""bench_fleet: claims per second, claim latency and idle slot time with many runner processes on
PostgreSQL.

    python tools/bench_fleet.py                     # 16 runners, 1,000 no-op trials, local server
    python tools/bench_fleet.py --runners 4 --trials 200 --ledger postgresql://...

Prints one JSON line. Each runner is its own process (``tasks.runner.Runner`` with one slot, in no-op
mode: a claimed trial is started, holds its lease for ``--hold`` seconds with heartbeats on, and is
labelled — the whole ledger part of a trial, without the work). All trials are queued before the
runners start; the runners start together once every one of them is ready. Reported:

* ``claims_per_s``: claims won per second from the first claim to the last, beside the ideal
  (runners / hold);
* ``p95_claim_ms`` (and p50, max): from the moment a slot wanted work (it was free, or its trial
  began labelling) to its claim won — the queue read, the races lost to other runners, the
  compare-and-set append; ``p95_claim_op_ms``: the winning load-claim-save alone;
* ``idle_fraction``: the share of slot time, from the start until the last claim (work was queued
  all along), that slots spent running no trial (a trial runs from its slot starting it to its label);
* the same for one runner over a few trials (``baseline``), and the machine's load average and CPU
  count (many runner processes on few cores are CPU-bound: read the ratios with that in mind).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = "postgresql://postgres@127.0.0.1:5432/test"


def _enqueue(url: str, n: int, name: str) -> None:
    from ledger import events as ev
    from ledger.aggregates import Campaign, Trial
    from ledger.audit import init_ledger
    from ledger.identity import signer_for

    led, _, _ = init_ledger(url)
    signer_for(led, f"runner:{socket.gethostname()}")  # enrolled once here, not raced by every runner
    camp = Campaign.open(name=name, actor="agent:campaign", task="tick", task_version="1", task_sha="bench",
                         metric="loss", direction="min", arm="lineage", harness_version="bench", config={},
                         specialists=[ev.SpecialistDecl(name="bench", surface="shape")])
    led.save(camp)
    camp = led.load(Campaign, camp.id)
    batch: list[Trial] = []
    for i in range(n):
        t = Trial.propose(camp.id, i, actor="agent:campaign", specialist="bench", surface="shape",
                          hypothesis=f"no-op {i}", kind="proposal")
        t.preflight(True, [], "agent:campaign", tree_sha="0" * 64)
        t.request_launch("agent:campaign", task="tick")
        camp.register(t.id, i, "bench", "proposal", "agent:campaign")
        batch.append(t)
        if len(batch) == 50 or i == n - 1:
            led.save(camp, *batch)
            batch = []
    led.close()


def _worker(args: argparse.Namespace) -> None:
    from tasks.runner import Runner

    r = Runner(args.ledger, args.id, slots=1, lease_s=args.lease, heartbeat_s=args.heartbeat, noop_s=args.hold,
               isolate=False, poll_s=0.2, work_root=args.work)
    r.queue.poll()
    Path(args.out + ".ready").write_text("ready")
    while not os.path.exists(args.go):
        time.sleep(0.005)
    for s in r.slots:  # the slots want work from the start signal on
        s.free_since = time.time()
    r.run_until_idle()
    Path(args.out).write_text(json.dumps({"history": r.history, "races_lost": r.races_lost, "claimed": r.claimed,
                                          "cpu_s": sum(os.times()[:2])}))
    r.close()


def _run(url: str, runners: int, trials: int, hold: float, lease: float, heartbeat: float, tmp: Path) -> dict:
    _enqueue(url, trials, f"bench-{uuid.uuid4().hex[:6]}")
    go = tmp / f"go-{runners}"
    outs = [str(tmp / f"r{runners}-{i}.json") for i in range(runners)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--ledger", url, "--id", f"bench-{runners}-{i}",
                               "--hold", str(hold), "--lease", str(lease), "--heartbeat", str(heartbeat),
                               "--out", outs[i], "--go", str(go), "--work", str(tmp / "work")],
                              start_new_session=True) for i in range(runners)]
    try:
        t_end = time.time() + 300
        while not all(os.path.exists(o + ".ready") for o in outs):
            if time.time() > t_end or any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("bench_fleet: a runner did not start")
            time.sleep(0.05)
        load0 = os.getloadavg()[0]
        t0 = time.time()
        go.write_text("go")
        for p in procs:
            p.wait(timeout=3600)
        wall = time.time() - t0
        load1 = os.getloadavg()[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    got = [json.loads(Path(o).read_text()) for o in outs]
    hist = [h for g in got for h in g["history"]]
    if len(hist) != trials:
        raise SystemExit(f"bench_fleet: {len(hist)} trials labelled of {trials}")
    first = min(h["claimed_at"] for h in hist)
    last = max(h["claimed_at"] for h in hist)  # work was queued until the last claim
    window = max(last - t0, 1e-9)
    busy = 0.0
    by_slot: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for k, g in enumerate(got):
        for h in g["history"]:
            by_slot.setdefault((k, h["slot"]), []).append((h["started_at"], h["labelled_at"]))
    for spans in by_slot.values():  # a slot is busy from a trial's start to its label
        for a, b in spans:
            a, b = max(a, t0), min(b, last)
            busy += max(0.0, b - a)
    waits = sorted(1000 * h["claim_wait_s"] for h in hist)
    ops = sorted(1000 * h["claim_op_s"] for h in hist)

    def pct(xs: list[float], q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)

    return {"runners": runners, "trials": trials, "claims_per_s": round(trials / max(last - first, 1e-9), 2),
            "ideal_claims_per_s": round(runners / hold, 2), "p50_claim_ms": pct(waits, 0.5),
            "p95_claim_ms": pct(waits, 0.95), "max_claim_ms": round(waits[-1], 1),
            "p95_claim_op_ms": pct(ops, 0.95), "mean_claim_op_ms": round(statistics.fmean(ops), 1),
            "idle_fraction": round(1 - busy / (runners * window), 4),
            "races_lost": sum(g["races_lost"] for g in got), "renewals": sum(h["renewals"] for h in hist),
            "runner_cpu_s": round(sum(g["cpu_s"] for g in got), 1), "wall_s": round(wall, 1),
            "loadavg_1m_before": round(load0, 2), "loadavg_1m_after": round(load1, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ledger", default=None, help="PostgreSQL URL (default: a fresh schema on the local server)")
    ap.add_argument("--runners", type=int, default=16)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--baseline-trials", type=int, default=60)
    ap.add_argument("--hold", type=float, default=1.0, help="seconds a no-op trial holds its lease")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--heartbeat", type=float, default=0.5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--id", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    os.environ.setdefault("ARLEDGER_HOME", str(tmp / "home"))  # keys of this run only
    schemas: list[str] = []

    def fresh() -> str:
        if args.ledger:
            return args.ledger
        name = "bench_fleet_" + uuid.uuid4().hex[:8]
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="test", autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {name}")
        schemas.append(name)
        return f"{PG}?schema={name}"

    try:
        base = _run(fresh(), 1, args.baseline_trials, args.hold, args.lease, args.heartbeat, tmp)
        fleet = _run(fresh(), args.runners, args.trials, args.hold, args.lease, args.heartbeat, tmp)
    finally:
        if schemas:
            with psycopg.connect(host="127.0.0.1", user="postgres", dbname="test", autocommit=True) as c:
                for name in schemas:
                    c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    out = {"bench": "fleet", "store": "postgresql", "hold_s": args.hold, "lease_s": args.lease,
           "heartbeat_s": args.heartbeat, "cpus": os.cpu_count(), **fleet,
           "p95_claim_vs_baseline": round(fleet["p95_claim_ms"] / max(base["p95_claim_ms"], 0.1), 2),
           "targets_met": fleet["idle_fraction"] <= 0.02 and fleet["p95_claim_ms"] <= 100,
           "baseline": base}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
