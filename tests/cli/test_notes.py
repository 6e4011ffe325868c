"""`arledger note | note --close | notes` through click's CliRunner: a note left while a campaign runs
reaches the lineage views of the specialists it addresses (the stored prompt of every later
proposal), not the others; a closed note leaves them; the audit report lists every note; mistakes
are one line each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.campaign import CampaignConfig, CampaignLoop
from ledger import events as ev
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from projections import Projector
from projections.lineage_view import render_lineage_view
from tasks.spec import load_task
from tests.agents.test_campaign import toy_task
from tests.cli.conftest import World, invoke
from tests.tasks.runner_helpers import open_dir


def _prompts(led: Ledger) -> dict[int, tuple[str, str]]:
    """Trial number -> (specialist, the lineage view it was shown) of every proposal."""
    out = {}
    for r in led.events(types=(ev.TrialProposed,)):
        e = r.event
        assert isinstance(e, ev.TrialProposed)
        if e.kind == "proposal" and e.prompt_sha:
            out[e.number] = (e.specialist, led.artifacts.get_text(e.prompt_sha))
    return out


def test_a_note_left_mid_campaign_reaches_the_specialists_it_addresses_until_closed(tmp_path: Path, monkeypatch
                                                                                      ) -> None:
    monkeypatch.setenv("ARLEDGER_CACHE", str(open_dir(tmp_path / "cache")))
    task = toy_task(open_dir(tmp_path / "toy"), confirmations=0)
    url = f"sqlite:{tmp_path}/store/ledger.db"
    led, _, _ = init_ledger(url)
    said: dict[str, Any] = {}

    def tick(loop: CampaignLoop) -> None:
        props = [r for r in loop.rows() if r.kind == "proposal" and r.status is not None]
        if len(props) >= 1 and "to_gen2" not in said:
            said["to_gen2"] = invoke("note", "Stop raising SLEEP: it only costs time", "--specialist", "gen2",
                                     "--by", "alice", env={"ARLEDGER_LEDGER": url})
            said["to_all"] = invoke("note", "Focus on VALUE", "--by", "bob", env={"ARLEDGER_LEDGER": url})
            # a proposal already being written saw the view before the note
            said["first_after"] = max(r.number for r in loop.rows()) + 1 + len(loop.writing)
        elif len(props) >= 4 and "closed" not in said:
            said["closed"] = invoke("note", "--close", "2", "--reason", "done", env={"ARLEDGER_LEDGER": url})
            said["closed_after"] = max(r.number for r in loop.rows()) + 1 + len(loop.writing)

    try:
        cfg = CampaignConfig(task=str(task), name="steered", arm="generic:2", max_trials=7, seed=3, confirmations=0)
        CampaignLoop(led, load_task(task), cfg).run(tick=tick, poll_s=0.05)
        for key in ("to_gen2", "to_all", "closed"):
            assert said[key].exit_code == 0, said[key].output
        assert said["to_gen2"].output.startswith("note 1 for specialist gen2 of campaign steered")
        prompts = _prompts(led)
        before = [v for n, (_, v) in prompts.items() if n < said["first_after"]]
        assert before and not any("Notes from the people" in v for v in before)
        between = {n: p for n, p in prompts.items() if said["first_after"] <= n < said["closed_after"]}
        after = {n: p for n, p in prompts.items() if n >= said["closed_after"]}
        assert {s for s, _ in between.values()} == {"gen1", "gen2"} and after
        for who, view in between.values():
            assert "note 2 (from bob, to every specialist): Focus on VALUE" in view
            assert ("Stop raising SLEEP" in view) == (who == "gen2"), (who, view)
        for who, view in after.values():
            assert "Focus on VALUE" not in view  # closed
            assert ("note 1 (from alice, to you): Stop raising SLEEP" in view) == (who == "gen2")
        notes = [r.event for r in led.events(types=(ev.NoteAdded, ev.NoteClosed))]
        assert [(type(e).__name__, e.actor) for e in notes] == [
            ("NoteAdded", "human:alice"), ("NoteAdded", "human:bob"), ("NoteClosed", "human:" + _user())]
        assert verify(led).ok
    finally:
        led.close()

    listed = invoke("notes", "--ledger", url)
    assert listed.exit_code == 0 and "1 open note(s), 1 closed" in listed.output
    assert "Stop raising SLEEP" in listed.output and "Focus on VALUE" not in listed.output
    every = json.loads(invoke("notes", "--all", "--json", "--ledger", url).output)["notes"]
    assert [(n["number"], n["specialist"], n["open"]) for n in every] == [(1, "gen2", True), (2, "", False)]
    assert every[1]["close_reason"] == "done"
    report = invoke("audit", "report", "--ledger", url).output
    section = report.split("### Steering notes (2, 1 open)", 1)[1].split("###", 1)[0]
    assert "| 1 | gen2 | human:alice |" in section and "Stop raising SLEEP: it only costs time | open |" in section
    assert "| 2 | every specialist | human:bob |" in section and ": done |" in section


def _user() -> str:
    import getpass

    return getpass.getuser()


def test_notes_show_in_the_lineage_view_and_the_log(fresh: World) -> None:
    res = fresh.run("note", "Try a much smaller VALUE", "--specialist", "opt", "--by", "carol")
    assert res.exit_code == 0, res.output
    led = Ledger.open(fresh.url)
    try:
        proj = Projector.from_ledger(led)
        view = render_lineage_view(proj, fresh.campaign, "opt")
        assert "note 1 (from carol, to you): Try a much smaller VALUE" in view
        # the notes come right after the header, above everything else the specialist reads
        assert view.index("## Notes from the people") < view.index("## Recent trials")
        assert "Try a much smaller VALUE" in render_lineage_view(proj, fresh.campaign, "opt", arm="no-lineage")
    finally:
        led.close()
    log = [json.loads(line) for line in fresh.run("log", "--type", "NoteAdded", "--json").output.splitlines()]
    assert [(e["number"], e["specialist"], e["text"], e["actor"]) for e in log] == [
        (1, "opt", "Try a much smaller VALUE", "human:carol")]
    closed = fresh.run("note", "--close", "1")
    assert closed.exit_code == 0 and closed.output.strip() == f"closed note 1 of campaign {fresh.campaign}"
    assert "no open notes (1 closed; --all lists them)" in fresh.run("notes").output


def test_note_mistakes_are_one_clear_line(fresh: World, tmp_path: Path) -> None:
    cases = [
        (("note", "x", "--specialist", "nobody"), "has no specialist 'nobody'; it has opt"),
        (("note", "--close", "9"), "has no note 9 (its notes: none)"),
        (("note",), "give a note's text"),
        (("note", "x", "--close", "1"), "not both"),
        (("note", "   "), "a note needs some text"),
        (("note", "x", "--campaign", "nope"), "no campaign 'nope' in this ledger (campaigns: c1)"),
        (("notes", "--campaign", "nope"), "no campaign 'nope'"),
    ]
    for args, message in cases:
        res = fresh.run(*args)
        assert res.exit_code == 1, (args, res.output)
        assert message in res.output and "Traceback" not in res.output, (args, res.output)
        assert res.output.count("Error:") == 1
    assert fresh.run("note", "first").exit_code == 0
    assert fresh.run("note", "--close", "1").exit_code == 0
    again = fresh.run("note", "--close", "1")
    assert again.exit_code == 1 and "note 1 of campaign c1 is already closed" in again.output
    empty = f"sqlite:{tmp_path}/empty/ledger.db"
    assert invoke("init", "--ledger", empty).exit_code == 0
    none = invoke("note", "hello", "--ledger", empty)
    assert none.exit_code == 1 and "the ledger has no campaign yet" in none.output


def test_notes_are_in_the_exported_page(fresh: World, tmp_path: Path) -> None:
    fresh.run("note", "Leave SLEEP alone", "--specialist", "opt", "--by", "dave")
    fresh.run("note", "Try VALUE below 0.1", "--by", "erin")
    fresh.run("note", "--close", "1", "--reason", "heard")
    out = tmp_path / "paper"
    assert fresh.run("export", "c1", "--out", str(out), "--no-sign", "--no-figures").exit_code == 0
    page = (out / "index.html").read_text()
    assert "<h3>Steering notes</h3>" in page
    assert "#1 human:dave to opt: Leave SLEEP alone" in page and "(closed by" in page and "heard" in page
    assert "#2 human:erin to every specialist: Try VALUE below 0.1 <span class=muted>(open)</span>" in page
