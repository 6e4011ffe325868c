"""The `arledger` command: the composition root. Thin: parse, call into the packages, print.

    arledger init                      make the ledger (SQLite under .arledger/) and a signing key
    arledger run                       run a campaign (default: golf-mini, offline specialists)
    arledger runner                    claim and train queued trials
    arledger runners                   the fleet: each runner's trials, last heartbeat, alive/lost
    arledger trial submit | cancel N | requeue N     trials by hand
    arledger log | status | show | lineage | diff
    arledger note "..." | note --close N | notes     steering notes for a running campaign
    arledger audit verify | upgrade | checkpoint | prove | check-proof | report
    arledger keys list | trust ACTOR PUBLIC_KEY
    arledger export --out DIR          tables, LaTeX, figures and a signed manifest
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from arledger.options import JSON, KEY, LEDGER, Group, open_ledger
from ledger import events as ev
from ledger.app import __version__


def console() -> Console:
    return Console(stderr=False, soft_wrap=True)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="arledger")
def cli() -> None:
    """arledger: auto-research for ML training recipes on a verifiable trial ledger.

    Every proposal, diff, launch, metric, failure and piece of feedback is an immutable event in
    an append-only, hash-chained ledger (a Merkle log with Ed25519-signed checkpoints).

    Start with `arledger run` (it initialises the ledger), then `arledger status`,
    `arledger export --out paper/` and `arledger audit verify`.
    """


@cli.command()
@LEDGER
@KEY
def init(ledger_url: str | None, key_path: Path | None) -> None:
    """Create the ledger and its signing key (mode 0600). Safe to run twice."""
    from ledger.audit import init_ledger

    led, kp, created = init_ledger(ledger_url, key_path)
    with led:
        verb = "created" if created else "already initialised:"
        click.echo(f"{verb} {led.describe()}")
        click.echo(f"ledger id    {led.ledger_id()}")
        click.echo(f"signing key  {kp}")
        pub = led.ledger_root().public_keys
        click.echo(f"trusted keys {', '.join(pub)}")


def event_summary(e: ev.Event) -> str:
    t = type(e)
    if t is ev.TrialProposed:
        return f"#{e.number} {e.specialist}: {e.hypothesis}"
    if t is ev.OutcomeLabelled:
        s = f"{e.status}"
        if e.score is not None:
            s += f" score={e.score:.6g}"
        return s + (f" — {e.reason}" if e.reason else "") + (f" [{e.excerpt}]" if e.excerpt else "")
    if t is ev.TrialEvaluated:
        return f"score={e.score} by {e.evaluator}"
    if t is ev.TrialFinished:
        return f"exit={e.exit_status} wall={e.wall_s:.1f}s"
    if t is ev.LaunchClaimed:
        return f"{e.runner} epoch {e.epoch}"
    if t is ev.CampaignOpened:
        return f"{e.name}: task {e.task} ({e.metric}, {e.direction}), arm {e.arm}"
    if t is ev.IncumbentPromoted:
        return f"#{e.number} score={e.score:.6g} {e.reason}"
    if t is ev.CheckpointSigned:
        return f"size={e.size} root={e.root[:16]}…"
    if t is ev.TrialRegistered:
        return f"#{e.number} {e.specialist} ({e.kind})"
    if t is ev.TrialJudged:
        return f"{e.verdict}: mean {e.mean:.6g} of {len(e.runs)} run(s) — {e.reason}"
    if t is ev.TrialRelabelled:
        return f"{e.previous_status} → {e.status}: {e.reason}"
    if t is ev.SpecialistRetired:
        return f"{e.specialist}: {e.reason}"
    if t is ev.RunStoppedEarly:
        return (f"step {e.step}: {e.metric} {e.value:.6g} vs #{e.reference_number}'s {e.reference_value:.6g} "
                f"(margin {e.margin:g})")
    if t is ev.NoteAdded:
        return f"note {e.number} to {e.specialist or 'all'}: {e.text}"
    if t is ev.NoteClosed:
        return f"note {e.number} closed" + (f": {e.reason}" if e.reason else "")
    if t is ev.CampaignClosed:
        return e.reason
    if t is ev.LaunchRequeued:
        return f"epoch {e.previous_epoch} of {e.previous_runner or 'no runner'}: {e.reason}"
    if t is ev.RunnerStarted:
        gpus = ",".join(map(str, e.gpus)) or "cpu"
        return f"{e.runner} on {e.host}: {e.slots} slot(s), gpus {gpus}, {e.sandbox}, v{e.version}"
    if t is ev.RunnerHeartbeat:
        return "holds " + (", ".join(f"#{h.number}" for h in e.running) or "nothing")
    if t is ev.RunnerStopped:
        return e.reason
    return ""


@cli.command()
@LEDGER
@click.option("--trial", "trial_no", type=int, default=None, help="Only events of this trial number.")
@click.option("--campaign", default=None, help="Only this campaign (default: all).")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Only these event types (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one event each.")
@click.option("--limit", type=int, default=None, help="At most this many (the most recent).")
def log(ledger_url: str | None, trial_no: int | None, campaign: str | None, types: tuple[str, ...],
        as_json: bool, limit: int | None) -> None:
    """The events in commit order, with their Merkle positions."""
    known = {c.__name__ for c in ev.EVENT_TYPES}
    bad = [t for t in types if t not in known]
    if bad:
        raise click.ClickException(f"unknown event type(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    with open_ledger(ledger_url) as led:
        cid = ev.campaign_id_for(campaign) if campaign else None
        want_trial = None
        if trial_no is not None:
            if cid is None:
                cids = [r.event.originator_id for r in led.events(types=(ev.CampaignOpened,))]
                if not cids:
                    raise click.ClickException("the ledger has no campaign")
                cid = cids[-1]
            want_trial = ev.trial_id_for(cid, trial_no)
        rows = []
        for r in led.events():
            e = r.event
            if types and e.type not in types:
                continue
            if want_trial is not None and e.originator_id != want_trial:
                continue
            if cid is not None and want_trial is None:
                if e.originator_id != cid and getattr(e, "campaign_id", None) != cid:
                    continue
            rows.append(r)
        if limit is not None:
            rows = rows[-limit:]
        if as_json:
            for r in rows:
                d = r.event.to_builtins()
                d["position"] = r.position
                click.echo(json.dumps(d, default=str))
            return
        import datetime as dt

        # names never cut: the position, time and type keep their width; actor and summary wrap
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("pos", justify="right", no_wrap=True)
        table.add_column("time (UTC)", no_wrap=True)
        table.add_column("type", no_wrap=True)
        table.add_column("actor", overflow="fold", max_width=24)
        table.add_column("summary", overflow="fold", ratio=1)
        for r in rows:
            e = r.event
            t = dt.datetime.fromtimestamp(e.at, dt.UTC).strftime("%m-%d %H:%M:%S")
            table.add_row(str(r.position), t, e.type, e.actor, event_summary(e)[:300])
        console().print(table)


@cli.group()
def audit() -> None:
    """Tamper evidence: sign checkpoints, verify the whole ledger, prove one event."""


@audit.command("checkpoint")
@LEDGER
@KEY
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="File or directory to write the checkpoint to (default: checkpoints/ beside the ledger).")
def audit_checkpoint(ledger_url: str | None, key_path: Path | None, out: Path | None) -> None:
    """Sign the ledger's current size and Merkle root; record it and write it to a file."""
    from ledger.audit import make_checkpoint

    with open_ledger(ledger_url) as led:
        dest = out or (led.home / "checkpoints")
        if out is None:
            dest.mkdir(parents=True, exist_ok=True)
        cp, path = make_checkpoint(led, key_path, write_to=dest)
        click.echo(f"signed checkpoint: size {cp.size}, root {cp.root}")
        click.echo(f"written to {path} — keep a copy elsewhere; `arledger audit verify --checkpoint {path}`")


@audit.command("verify")
@LEDGER
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path), default=None,
              help="A checkpoint file held outside the ledger: the ledger must still extend it.")
@JSON
@click.option("--no-artifacts", is_flag=True, help="Skip the artifact store.")
@click.option("--artifacts", "artifacts_dir", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="The artifact folder to check (default: artifacts/ beside the SQLite ledger, or the "
                   "PostgreSQL table).")
@click.option("--deep", is_flag=True, help="Also decode every signed event and check its signed artifact list.")
def audit_verify(ledger_url: str | None, checkpoint_file: Path | None, as_json: bool, no_artifacts: bool,
                 artifacts_dir: Path | None, deep: bool) -> None:
    """Recompute every leaf and root, check every event's signature and every checkpoint's, re-hash
    every referenced artifact and every object in the store. Names the first divergence by
    position; exits 1 on any problem. --json prints one object: ok, events, artifacts_checked,
    orphan_artifacts, signed_events, unsigned_events, signers, problems."""
    from ledger.app import Ledger
    from ledger.artifacts import DirArtifactStore
    from ledger.keys import Checkpoint
    from ledger.store import LedgerError
    from ledger.verify import verify

    cp = Checkpoint.read(checkpoint_file) if checkpoint_file else None
    with Ledger.open(ledger_url, create_tables=False) as led:
        store = DirArtifactStore(artifacts_dir) if artifacts_dir is not None else None
        if sys.stderr.isatty():
            click.echo(f"verifying {led.describe()}…", err=True)
        rep = verify(led, cp, check_artifacts=not no_artifacts, deep=deep, artifacts=store,
                     checkpoint_source=str(checkpoint_file) if checkpoint_file else "checkpoint file")
    if rep.ok and rep.events == 0:
        raise LedgerError(f"{led.describe()} is not initialised; run `arledger init`")
    if as_json:
        click.echo(json.dumps(rep.to_dict()))
    elif rep.ok:
        signers = ", ".join(f"{a} {t.events}" for a, t in sorted(rep.signers.items()))
        legacy = f", {rep.legacy_unsigned_events} legacy unsigned" if rep.legacy_unsigned_events else ""
        click.echo(f"OK: {rep.events} events, root {rep.root}, {rep.checkpoints} signed checkpoint(s), "
                   f"{rep.signed_events} signed event(s){legacy}"
                   f"{' (' + signers + ')' if signers else ''}, {rep.artifacts_checked} artifact(s) verified, "
                   f"{rep.orphan_artifacts} unreferenced object(s)"
                   + (f"; {rep.appended_during} event(s) appended while it read (checked next time)"
                      if rep.appended_during else ""))
    else:
        first = rep.first()
        assert first is not None
        click.echo(f"FAILED: {len(rep.problems)} problem(s); first divergence: [{first.kind}] {first.message}",
                   err=True)
        for p in sorted(rep.problems, key=lambda p: p.sort_key())[1:20]:
            click.echo(f"  also: [{p.kind}] {p.message}", err=True)
    if not rep.ok:
        sys.exit(1)


@audit.command("upgrade")
@LEDGER
@KEY
def audit_upgrade(ledger_url: str | None, key_path: Path | None) -> None:
    """Move a ledger written before signing existed forward: from now on every event is signed.
    Earlier events stay as they are and verify as legacy unsigned."""
    from ledger.audit import upgrade_ledger

    with open_ledger(ledger_url) as led:
        pos, wrote = upgrade_ledger(led, key_path)
    if wrote:
        click.echo(f"upgraded {led.describe()}: every event from position {pos} on is signed")
    else:
        click.echo(f"{led.describe()} is already signed from position {pos} on; nothing to do")


@audit.command("prove")
@LEDGER
@click.argument("position", type=int)
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the proof here (default stdout).")
def audit_prove(ledger_url: str | None, position: int, checkpoint_file: Path, out: Path | None) -> None:
    """An inclusion proof that the event at POSITION (see `arledger log`) is in a signed checkpoint.
    Anyone can check it with `arledger audit check-proof FILE` and the public key alone."""
    from ledger.audit import dump_proof, prove
    from ledger.keys import Checkpoint

    cp = Checkpoint.read(checkpoint_file)
    with open_ledger(ledger_url) as led:
        doc = prove(led, position, cp)
    text = dump_proof(doc)
    if out:
        out.write_text(text)
        click.echo(f"proof of position {position} written to {out}")
    else:
        click.echo(text)


@audit.command("check-proof")
@click.argument("proof_file", type=click.Path(exists=True, path_type=Path))
@click.option("--public-key", default=None, help="The hex public key you trust (default: the one in the proof).")
def audit_check_proof(proof_file: Path, public_key: str | None) -> None:
    """Check an inclusion proof offline: no ledger needed."""
    from ledger.audit import check_proof

    try:
        doc = json.loads(proof_file.read_text())
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{proof_file} is not JSON ({e})") from None
    ok, msg = check_proof(doc, public_key)
    click.echo(("VALID: " if ok else "INVALID: ") + msg)
    if not ok:
        sys.exit(1)


def _register_parts() -> None:
    from arledger import cli_fleet, cli_keys, cli_notes, cli_read, cli_replay, cli_run, cli_tasks

    for mod in (cli_tasks, cli_fleet, cli_read, cli_run, cli_keys, cli_notes, cli_replay):
        reg = getattr(mod, "register", None)
        if reg is not None:
            reg(cli)
    reg_audit = getattr(cli_read, "register_audit", None)
    if reg_audit is not None:
        reg_audit(audit)


_register_parts()


def main() -> None:
    cli(prog_name="arledger")


if __name__ == "__main__":
    main()
