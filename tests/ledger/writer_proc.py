"""A writer process for fault tests: appends trials forever, reporting each append that returned."""

from __future__ import annotations

import sys

from ledger.aggregates import Campaign, Trial
from ledger.app import ConflictError, Ledger


def main() -> None:
    url, name = sys.argv[1], sys.argv[2]
    led = Ledger.open(url)
    from ledger import events as ev

    cid = ev.campaign_id_for(name)
    c = led.load(Campaign, cid) if led.exists(cid) else Campaign.open(
        name=name, actor="human:test", task="t", task_version="1", task_sha="0" * 64, metric="m", direction="min")
    if c.pending:
        led.save(c)
    while True:
        n = c.next_number
        payload = "x" * 700
        t = Trial.propose(c.id, n, actor="agent:w", specialist="w", surface="s", hypothesis=f"h{n} {payload}",
                          diff_sha=led.artifacts.put(f"diff for {n}"))
        c.register(t.id, n, "w", "proposal", "agent:w")
        t.request_launch("agent:w", task="t")
        try:
            led.save(c, t)  # three events in one transaction
        except ConflictError:
            c = led.load(Campaign, cid)
            continue
        sys.stdout.write(f"APPENDED {n}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
