"""Reading commands: status, show, diff, lineage, export, import, audit report.

``register(cli)`` adds them to the main ``arledger`` group; ``register_audit(audit)`` adds
``report`` to the ``audit`` group. Every command takes ``--ledger URL`` (env ARLEDGER_LEDGER) and,
where it reads one campaign, ``--campaign NAME`` (default: the most recently opened). A TRIAL is a
trial number in that campaign, or ``CAMPAIGN/NUMBER``.
"""

from __future__ import annotations

import difflib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from arledger.options import CAMPAIGN, JSON, KEY, LEDGER, open_ledger
from ledger.app import Ledger
from ledger.artifacts import ArtifactError
from ledger.objective import Objective
from ledger.store import LedgerError


def _console() -> Console:
    """Plain text (no markup: hypotheses are full of brackets); wide when not on a terminal."""
    return Console(soft_wrap=True, highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)


def _projector(led: Ledger, until: int | None = None) -> Any:
    from projections import Projector

    return Projector.from_ledger(led, until=until)


def _campaign(proj: Any, name: str | None) -> Any:
    table = proj.trials
    if name is None:
        info = table.latest_campaign()
        if info is None:
            raise click.ClickException("the ledger has no campaign yet; run one, or import a record with `arledger import`")
        return info
    info = table.campaign(name)
    if info is None:
        names = ", ".join(c.name for c in sorted(table.campaigns.values(), key=lambda c: c.position)) or "none"
        raise click.ClickException(f"no campaign {name!r} in this ledger (campaigns: {names})")
    return info


def _trial(proj: Any, spec: str, campaign: str | None) -> Any:
    spec = spec.strip()
    camp_name, _, num = spec.rpartition("/")
    num = num.lstrip("#")
    if num.startswith("exp_"):
        num = num[4:]
    if not num.isdigit():
        raise click.ClickException(f"{spec!r} is not a trial: give a trial number (e.g. 42) or CAMPAIGN/NUMBER")
    info = _campaign(proj, camp_name or campaign)
    row = proj.trials.row(info.campaign_id, int(num))
    if row is None:
        n = len(proj.trials.numbers.get(info.campaign_id, {}))
        raise click.ClickException(f"campaign {info.name} has no trial {int(num)} (it has trials 0–{n - 1})"
                                   if n else f"campaign {info.name} has no trials yet")
    return row


def _when(t: float | None) -> str:
    return "—" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------


@click.command("status")
@LEDGER
@JSON
def status_cmd(ledger_url: str | None, as_json: bool) -> None:
    """Campaigns in the ledger and where each stands."""
    from projections.export import campaign_summary, fmt_metric

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        infos = sorted(proj.trials.campaigns.values(), key=lambda c: c.position)
        out = []
        for info in infos:
            s = campaign_summary(proj, info)
            s.update({"state": info.state, "opened_at": info.opened_at, "last_activity": info.last_at,
                      "in_flight": proj.statuses.pending(info.campaign_id), "harness_version": info.harness_version,
                      "closed_reason": info.closed_reason})
            out.append(s)
        if as_json:
            _json({"ledger": led.describe(), "events": proj.cursor, "campaigns": out})
            return
        con = _console()
        con.print(f"{led.describe()} · {proj.cursor} events · {len(out)} campaign(s)")
        if not out:
            con.print("No campaigns yet.")
            return
        t = Table(show_header=True, header_style="bold")
        numeric = ("trials", "keeps", "in flight", "start", "best", "change", "confirmed")
        for col in ("campaign", "task", "metric", "arm", "state", "trials", "keeps", "in flight", "start", "best",
                    "change", "confirmed", "last activity"):
            t.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
        for s in out:
            arrow = "↓" if s["direction"] == "min" else "↑"
            change = f"{s['rel_change_pct']:+.2f}%" if s["rel_change_pct"] is not None else "—"
            best = fmt_metric(s["best"]) + (f" (#{s['best_trial']})" if s["best_trial"] else "")
            confirmed = "—"
            if s["confirmed"] is not None:
                confirmed = (f"{fmt_metric(s['confirmed'])} (#{s['confirmed_trial']}, "
                             f"{s['confirmed_runs']} run{'s' if s['confirmed_runs'] != 1 else ''})")
            t.add_row(s["name"], s["task"], f"{s['metric']} {arrow}", s["arm"], s["state"], str(s["trials"]),
                      str(s["keeps"]), str(s["in_flight"]), fmt_metric(s["start"]), best, change, confirmed,
                      _when(s["last_activity"]))
        con.print(t)
        for s in out:  # the labels add up to the trials; the baseline is not a trial
            labels = ", ".join(f"{n} {k}" for k, n in s["status_counts"].items()) or "none labelled yet"
            base = ("labelled " + ", ".join(s["baseline_status_counts"])) if s["baseline_status_counts"] else "not labelled yet"
            score = f", {s['metric']} {fmt_metric(s['start'])}" if s["start"] is not None else ""
            saved = f"; early stopping saved {s['compute_saved_s']:.0f} s of compute" if s["compute_saved_s"] else ""
            con.print(f"{s['name']}: {s['trials']} trials — {labels}; plus the baseline ({base}{score}){saved}")


@click.command("show")
@click.argument("trial")
@LEDGER
@CAMPAIGN
@JSON
def show_cmd(trial: str, ledger_url: str | None, campaign: str | None, as_json: bool) -> None:
    """One trial: hypothesis, diff, outcome, log excerpt and lineage."""
    from projections.lineage_view import fmt_delta, fmt_score, trial_tag

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        row = _trial(proj, trial, campaign)
        info = proj.trials.campaigns[row.campaign_id]
        diff = _artifact_text(led, row.diff_sha)
        log = _artifact_text(led, row.log_sha)
        log_tail = "\n".join(log.splitlines()[-30:]) if log else None
        chain = proj.lineage.chain(row.campaign_id, row.number)
        kids = proj.lineage.children(row.campaign_id, row.number)
        if as_json:
            d = row.to_dict()
            d.update({"diff": diff, "log_excerpt": log_tail, "chain": [r.number for r in chain],
                      "children": [r.number for r in kids], "metric": info.metric, "direction": info.direction})
            _json(d)
            return
        con = _console()
        out = con.print
        out(f"{info.name} #{row.number:03d} — {row.specialist} (surface {row.surface or '—'}) · {row.kind} · "
            f"{row.state}" + (" · QUARANTINED" if row.quarantined else ""))
        out(f"Hypothesis: {row.hypothesis}")
        parent = f"#{row.parent:03d}" if row.parent is not None else "none"
        exp = f" · expected Δ {fmt_delta(row.expected_delta)}" if row.expected_delta is not None else ""
        out(f"Parent: {parent}{exp} · proposed {_when(row.proposed_at)} by {row.proposer}")
        score = f"{info.metric}={fmt_score(row.score)}" if row.score is not None else "no score"
        delta = f" · Δ vs incumbent {fmt_delta(row.delta)}" if row.delta is not None else ""
        out(f"Outcome: {row.label or '(not labelled yet)'} · {score}{delta}"
            + (f" · labelled by {row.label_actor} {_when(row.labelled_at)}" if row.labelled_at else "")
            + (f" · corrected {row.relabels}× (first label {row.first_label})" if row.relabels else ""))
        v = row.verdict
        if v is not None:
            runs = ", ".join(f"#{n} {fmt_score(x)}" for n, x in v.runs)
            out(f"Verdict: {v.verdict} by {v.actor} {_when(v.at)} — {v.reason}")
            if v.policy != "as labelled":
                inc = (f"#{v.incumbent_number} {fmt_score(v.incumbent_score)}" if v.incumbent_number is not None
                       else "—")
                imp = fmt_delta(v.improvement) if v.improvement is not None else "—"
                out(f"  Evidence: runs {runs or '—'} · mean {fmt_score(v.mean)} · incumbent {inc} · improvement "
                    f"{imp} · threshold {v.rule or fmt_score(v.threshold)} · policy {v.policy}")
        if row.reason:
            out(f"Reason: {row.reason}")
        if row.excerpt:
            out(f"Excerpt: {row.excerpt}")
        if row.gates_failed:
            out(f"Failed gates: {', '.join(row.gates_failed)}")
        if row.metrics:
            out("Metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in sorted(row.metrics.items())))
        out(f"Run: runner {row.runner or '—'} · accelerator {row.accelerator or '—'} · attempts {row.attempts} · "
            f"wall {row.wall_s:.1f}s · cpu {row.cpu_s:.1f}s · eval {row.eval_wall_s:.1f}s · "
            f"artifact {row.artifact_bytes:,} bytes · started {_when(row.started_at)} · finished {_when(row.finished_at)}")
        out(f"Evaluator: {row.evaluator or '—'} · task {row.task_sha[:12] or '—'} · harness "
            f"{row.harness_version or '—'}")
        if row.tokens or row.cost_usd or row.requests:
            out(f"Cost: ${row.cost_usd:.4f} · {row.tokens:,} tokens ({row.input_tokens:,} in, {row.output_tokens:,} out) "
                f"· {row.turns} turns, {row.requests} requests ({row.retries} retried) · {row.backend} {row.model}")
        if row.notes:
            out(f"Notes: {row.notes}")
        out("")
        out("Lineage")
        for i, r in enumerate(chain):
            out(("" if i == 0 else "  " * (i - 1) + " └─ ") + trial_tag(r, info.metric) + " " + _clip(r.hypothesis, 90))
        if kids:
            out(f"Children ({len(kids)}): " + ", ".join(f"#{r.number:03d} {r.state}" for r in kids[:40])
                + (" …" if len(kids) > 40 else ""))
        out("")
        if diff is not None:
            out("Diff")
            click.echo(diff.rstrip("\n"))
        elif row.diff_sha:
            out(f"Diff: artifact {row.diff_sha[:16]}… is missing from the store")
        else:
            out("Diff: none recorded" + (" (imported records carry no code)" if row.kind in ("imported", "baseline")
                                          else ""))
        if log_tail is not None:
            out("")
            out("Log (last 30 lines)")
            click.echo(log_tail)


def _clip(text: str, n: int) -> str:
    from projections.lineage_view import clip

    return clip(text, n)


def _artifact_text(led: Ledger, sha: str | None) -> str | None:
    if not sha:
        return None
    try:
        return led.artifacts.get_text(sha)
    except ArtifactError:
        return None


@click.command("diff")
@click.argument("a")
@click.argument("b")
@LEDGER
@CAMPAIGN
@JSON
def diff_cmd(a: str, b: str, ledger_url: str | None, campaign: str | None, as_json: bool) -> None:
    """The code change from trial A to trial B (a unified diff)."""
    from projections.audit import CodeResolver

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        ra, rb = _trial(proj, a, campaign), _trial(proj, b, campaign)
        res = CodeResolver(proj.trials, led.artifacts)
        fa, fb = res.files(ra), res.files(rb)
        how = "code"
        if fa is not None and fb is not None:
            parts = []
            for path in sorted(set(fa) | set(fb)):
                x, y = fa.get(path), fb.get(path)
                if x == y:
                    continue
                parts.extend(difflib.unified_diff(
                    (x or "").splitlines(keepends=True), (y or "").splitlines(keepends=True),
                    f"a/{path}" if x is not None else "/dev/null", f"b/{path}" if y is not None else "/dev/null"))
            text = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
        elif rb.parent_id == ra.trial_id and rb.diff_sha and res.diff(rb.diff_sha) is not None:
            text, how = res.diff(rb.diff_sha) or "", "B's own diff against its parent A"
        else:
            missing = [f"#{r.number}" for r, f in ((ra, fa), (rb, fb)) if f is None]
            raise click.ClickException(
                f"the code of trial(s) {', '.join(missing)} cannot be rebuilt from the ledger "
                "(imported records carry no code, or an artifact is missing), so the two cannot be compared")
        if as_json:
            _json({"a": f"{proj.trials.campaigns[ra.campaign_id].name}/{ra.number}",
                   "b": f"{proj.trials.campaigns[rb.campaign_id].name}/{rb.number}", "basis": how, "diff": text})
            return
        if not text:
            click.echo(f"# trials {ra.number} and {rb.number} have the same code", err=True)
        click.echo(text, nl=False)


@click.command("lineage")
@click.argument("trial", required=False)
@LEDGER
@CAMPAIGN
@click.option("--keeps-only", is_flag=True, help="Only keeps (and the baseline): the tree of improvements.")
@click.option("--depth", type=int, default=None, help="How many generations below TRIAL to show.")
@JSON
def lineage_cmd(trial: str | None, ledger_url: str | None, campaign: str | None, keeps_only: bool,
                depth: int | None, as_json: bool) -> None:
    """The trial tree as text: the whole campaign, or TRIAL's ancestry and descendants."""
    from projections.lineage_view import trial_tag

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        if trial is not None:
            row = _trial(proj, trial, campaign)
            info = proj.trials.campaigns[row.campaign_id]
            ancestors = proj.lineage.chain(row.campaign_id, row.number)[:-1]
            roots = [row]
        else:
            info = _campaign(proj, campaign)
            ancestors = []
            roots = proj.lineage.children(info.campaign_id, None)
        cid = info.campaign_id

        def keep_node(r: Any) -> bool:
            return not keeps_only or r.kept or r.kind == "baseline"

        def kids(r: Any) -> list[Any]:
            out = []
            stack = list(reversed(proj.lineage.children(cid, r.number)))
            while stack:  # with --keeps-only, skip non-keeps but keep their kept descendants
                c = stack.pop()
                if keep_node(c):
                    out.append(c)
                else:
                    stack.extend(reversed(proj.lineage.children(cid, c.number)))
            return out

        def node(r: Any, level: int) -> dict[str, Any]:
            d = {"number": r.number, "specialist": r.specialist, "kind": r.kind, "status": r.status,
                 "state": r.state, "score": r.score, "delta": r.delta, "hypothesis": r.hypothesis}
            if depth is None or level < depth:
                d["children"] = [node(c, level + 1) for c in kids(r)]
            return d

        if as_json:
            _json({"campaign": info.name, "metric": info.metric,
                   "ancestors": [{"number": r.number, "specialist": r.specialist, "status": r.status,
                                  "score": r.score} for r in ancestors],
                   "tree": [node(r, 0) for r in roots]})
            return
        lines: list[str] = []
        for i, r in enumerate(ancestors):
            lines.append(("" if i == 0 else "   " * (i - 1) + "└─ ") + trial_tag(r, info.metric) + " "
                         + _clip(r.hypothesis, 90))
        base_indent = len(ancestors)
        stack: list[tuple[Any, int]] = [(r, 0) for r in reversed(roots)]
        while stack:
            r, level = stack.pop()
            ind = base_indent + level
            prefix = "" if ind == 0 else "   " * (ind - 1) + "└─ "
            lines.append(prefix + trial_tag(r, info.metric) + " " + _clip(r.hypothesis, 90))
            if depth is None or level < depth:
                stack.extend((c, level + 1) for c in reversed(kids(r)))
        click.echo(f"# {info.name}: {info.metric} ({info.objective.word} is better)"
                   + (" · keeps only" if keeps_only else ""))
        click.echo("\n".join(lines) if lines else "(no trials)")


# ---------------------------------------------------------------------------------------------


def _checkpoint(led: Ledger, key_path: Path | None, sign: bool) -> dict[str, Any]:
    reason = "signing was turned off (--no-sign)"
    if sign:
        try:
            from ledger.audit import make_checkpoint

            cp, _path = make_checkpoint(led, key_path)
            return {"signed": True, "ledger_id": cp.ledger_id, "size": cp.size, "root": cp.root,
                    "key_id": cp.key_id, "public_key": cp.public_key, "signature": cp.signature}
        except ImportError:
            reason = "this build has no checkpoint signing (ledger.audit.make_checkpoint)"
        except LedgerError as e:
            reason = str(e)
    size, root = led.root()
    return {"signed": False, "size": size, "root": root.hex(),
            "note": f"unsigned checkpoint (size and Merkle root only): {reason}"}


@click.command("export")
@click.argument("campaigns", nargs=-1)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write into (created if needed).")
@LEDGER
@KEY
@click.option("--no-sign", is_flag=True, help="Record the unsigned size and root instead of signing a checkpoint.")
@click.option("--no-figures", is_flag=True, help="Skip the figures (faster).")
def export_cmd(campaigns: tuple[str, ...], out_dir: Path, ledger_url: str | None, key_path: Path | None,
               no_sign: bool, no_figures: bool) -> None:
    """Paper export: summary.json, CSV/Parquet tables, LaTeX tables, figures, signed manifest."""
    from projections.export import export, fmt_metric

    err = Console(stderr=True)
    with open_ledger(ledger_url) as led:
        cp = _checkpoint(led, key_path, sign=not no_sign)
        with err.status("reading the ledger…") as st:
            proj = _projector(led, until=cp["size"])
            try:
                manifest = export(proj, out_dir, list(campaigns) or None, checkpoint=cp, ledger=led.describe(),
                                  figures=not no_figures, progress=lambda m: st.update(f"writing {m}…"))
            except OSError as e:
                raise click.ClickException(f"cannot write to {out_dir}: {e.strerror or e}") from None
    summary = json.loads((out_dir / "summary.json").read_text())
    con = _console()
    t = Table(show_header=True, header_style="bold", title="Headline")
    for col in ("run", "metric", "start", "best", "change", "trials", "keeps"):
        t.add_column(col, justify="left" if col in ("run", "metric") else "right")
    for s in summary["campaigns"]:
        t.add_row(s["title"], f"{s['metric']} ({Objective(s['direction']).word})",
                  fmt_metric(s["start"]), fmt_metric(s["best"]),
                  f"{s['rel_change_pct']:.2f}%" if s["rel_change_pct"] is not None else "—",
                  str(s["trials"]), str(s["keeps"]))
    con.print(t)
    signed = "signed" if cp["signed"] else "UNSIGNED"
    con.print(f"{len(manifest['files'])} files written to {out_dir} · {signed} checkpoint size {cp['size']} "
              f"root {cp['root'][:16]}… (manifest.json)")
    if not cp["signed"]:
        con.print(f"note: {cp['note']}")


@click.group("import")
def import_group() -> None:
    """Import existing auto-research records as campaigns (events by importer:<format>)."""


@import_group.command("cmu")
@click.argument("directory", type=click.Path(path_type=Path))
@LEDGER
@click.option("--name", default=None, help="Campaign name (default: the folder's name).")
@click.option("--noise-sd", type=float, default=None,
              help="The run-to-run noise of the metric, if documented (val_bpb defaults to 0.001).")
def import_cmu_cmd(directory: Path, ledger_url: str | None, name: str | None, noise_sd: float | None) -> None:
    """A CMU blackboard folder (results.tsv, tree.tsv, best.json)."""
    from ledger.importers import import_cmu

    with open_ledger(ledger_url) as led:
        with Console(stderr=True).status(f"importing {directory}…"):
            r = import_cmu(led, directory, name=name, noise_sd=noise_sd)
    click.echo(f"imported {r.trials} trials ({r.keeps} keeps) from {directory} as campaign {r.campaign!r}: "
               f"{r.events} events")


@import_group.command("autoresearch")
@click.argument("path", type=click.Path(path_type=Path))
@LEDGER
@click.option("--name", default=None, help="Campaign name (default: the file's stem, or its folder for results.tsv).")
def import_autoresearch_cmd(path: Path, ledger_url: str | None, name: str | None) -> None:
    """karpathy/autoresearch's results.tsv (commit, val_bpb, memory_gb, status, description)."""
    from ledger.importers import import_autoresearch

    with open_ledger(ledger_url) as led:
        r = import_autoresearch(led, path, name=name)
    click.echo(f"imported {r.trials} trials ({r.keeps} keeps) from {path} as campaign {r.campaign!r}: "
               f"{r.events} events")


@click.command("report")
@LEDGER
@click.option("--campaign", "campaigns", multiple=True, metavar="NAME", help="Only these campaigns (repeatable).")
@JSON
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file instead of stdout.")
def audit_report_cmd(ledger_url: str | None, campaigns: tuple[str, ...], as_json: bool, out_file: Path | None) -> None:
    """What each submission touched, evaluator/harness drift, corrections, harness failures, and keeps
    inside the noise (Markdown, or --json)."""
    from projections.audit import build_report, render_json, render_markdown

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        rep = build_report(proj, list(campaigns) or None, artifacts=led.artifacts, ledger=led.describe())
    text = render_json(rep) if as_json else render_markdown(rep)
    if out_file is not None:
        try:
            out_file.write_text(text)
        except OSError as e:
            raise click.ClickException(f"cannot write {out_file}: {e.strerror or e}") from None
        click.echo(f"audit report written to {out_file}", err=True)
    else:
        click.echo(text, nl=False)


def register(cli: click.Group) -> None:
    """Add the reading commands to the main group."""
    for cmd in (status_cmd, show_cmd, diff_cmd, lineage_cmd, export_cmd, import_group):
        cli.add_command(cmd)


def register_audit(audit_group: click.Group) -> None:
    """Add ``report`` to the ``audit`` group."""
    audit_group.add_command(audit_report_cmd)
