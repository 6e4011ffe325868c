"""Claiming ahead: a slot whose trial is in its last step claims its next trial, which starts the
moment the slot is free — never two trials at once in one slot, and a runner killed while holding
a trial claimed ahead loses both leases to the reaper (both recorded ``runner_lost``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.audit import init_ledger, verify
from tasks.runner import Runner


def _queue(led, n: int) -> list:
    camp = Campaign.open(name="ahead", actor="agent:campaign", task="tick", task_version="1", task_sha="x",
                         metric="loss", direction="min", arm="lineage", harness_version="h", config={},
                         specialists=[ev.SpecialistDecl(name="s", surface="shape")])
    led.save(camp)
    camp = led.load(Campaign, camp.id)
    trials = []
    for i in range(n):
        t = Trial.propose(camp.id, i, actor="agent:campaign", specialist="s", surface="shape", hypothesis=f"t{i}")
        t.preflight(True, [], "agent:campaign", tree_sha="0" * 64)
        t.request_launch("agent:campaign", task="tick")
        camp.register(t.id, i, "s", "proposal", "agent:campaign")
        trials.append(t)
    led.save(camp, *trials)
    return [t.id for t in trials]


def _runner(led, name: str, tmp: Path, hold: float) -> Runner:
    return Runner(ledger=led, runner_id=name, slots=1, lease_s=2.0, heartbeat_s=0.4, noop_s=hold, isolate=False,
                  work_root=tmp / f"work-{name}", reap_margin_s=0.2, poll_s=0.05)


def test_the_next_trial_is_claimed_during_the_last_step_and_starts_when_the_slot_is_free(tmp_path):
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db")
    _queue(led, 5)
    r = _runner(led, "ahead", tmp_path, hold=0.5)
    assert r.run_until_idle() == 5
    h = sorted(r.history, key=lambda x: x["started_at"])
    for prev, nxt in zip(h, h[1:], strict=False):
        assert nxt["claimed_at"] < prev["labelled_at"], "the next trial was not claimed ahead"
        assert nxt["started_at"] >= prev["labelled_at"], "two trials ran at once in one slot"
    assert verify(led).ok
    led.close()


def test_a_runner_killed_with_a_trial_claimed_ahead_loses_both_leases_to_the_reaper(tmp_path):
    led, _, _ = init_ledger(f"sqlite:{tmp_path}/ledger.db")
    ids = _queue(led, 3)
    doomed = _runner(led, "doomed", tmp_path, hold=3.0)  # claims ahead 0.3 s before its label
    t = threading.Thread(target=doomed.run_forever, args=(threading.Event(),), daemon=True)
    t.start()
    t_end = time.time() + 30
    while time.time() < t_end and not (doomed.slots[0].next is not None):
        time.sleep(0.02)
    assert doomed.slots[0].next is not None, "no trial was claimed ahead"
    held = {doomed.slots[0].attempt.trial_id, doomed.slots[0].next.trial_id}
    doomed.kill()  # as a second SIGTERM does: the trials stop, nothing more is recorded
    t.join(30)
    assert not t.is_alive()
    rescuer = _runner(led, "rescuer", tmp_path, hold=0.1)
    rescuer.run_until_idle(wait_for_others=True, timeout_s=60)
    for tid in ids:
        evs = led.stream(tid)
        labels = [(e.status, e.epoch) for e in evs if isinstance(e, ev.OutcomeLabelled)]
        if tid in held:
            assert labels == [("runner_lost", 1), ("cancelled", 2)], labels
        else:
            assert labels == [("cancelled", 1)], labels
    assert verify(led).ok
    led.close()
