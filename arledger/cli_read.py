"""Reading commands: status, show, diff, lineage, export, import, audit report.

``register(cli)`` adds them to the main ``arledger`` group; ``register_audit(audit)`` adds
``report`` to the ``audit`` group. Every command takes ``--ledger URL`` (env ARLEDGER_LEDGER) and,
where it reads one campaign, ``--campaign NAME`` (default: the most recently opened). A TRIAL is a
trial number in that campaign, or ``CAMPAIGN/NUMBER``.
"""

from __future__ import annotations

import difflib
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from arledger import layout
from arledger.layout import plural
from arledger.options import CAMPAIGN, JSON, KEY, LEDGER, open_ledger
from ledger.app import Ledger
from ledger.artifacts import ArtifactError
from ledger.objective import Objective
from ledger.store import LedgerError


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


def _when(t: float | None, *, short: bool = False) -> str:
    if t is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------


@click.command("status")
@LEDGER
@JSON
@click.option("--wide", is_flag=True,
              help="Every column, however wide (default: the columns that fit the screen).")
def status_cmd(ledger_url: str | None, as_json: bool, wide: bool) -> None:
    """Campaigns in the ledger and where each stands."""
    from projections.export import campaign_summary
    from projections.headline import fmt_metric, fmt_pct

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
        avail = layout.width()
        _echo_wrapped(f"{led.describe()} · {plural(proj.cursor, 'event')} · {plural(len(out), 'campaign')}",
                      avail)
        if not out:
            click.echo("No campaigns yet.")
            return
        rows = []
        for s in out:
            arrow = "↓" if s["direction"] == "min" else "↑"
            thr = s["threshold"]
            rows.append([s["name"], s["task"], f"{s['metric']} {arrow}", s["arm"], s["state"],
                         str(s["trials"]), str(s["keeps"]), str(s["in_flight"]), _result_cell(s, "start"),
                         _result_cell(s, "best"), fmt_pct(s["rel_change_pct"]),
                         f"{thr['value']:.4g}" if thr else "—", _when(s["last_activity"], short=True)])
        lines, hidden = layout.table(STATUS_COLUMNS, rows, avail, wide=wide)
        click.echo("\n".join(lines))
        for s in out:  # the labels add up to the trials; the baseline is not a trial
            labels = ", ".join(f"{n} {k}" for k, n in s["status_counts"].items()) or "none labelled yet"
            base = ("labelled " + ", ".join(s["baseline_status_counts"])) if s["baseline_status_counts"] else "not labelled yet"
            score = f", {s['metric']} {fmt_metric(s['start'])}" if s["start"] is not None else ""
            saved = f"; early stopping saved {s['compute_saved_s']:.0f} s of compute" if s["compute_saved_s"] else ""
            c = s["counts"]
            runs = (f"; {plural(c['proposals'], 'proposal')}, {plural(c['confirmation_runs'], 'confirmation run')}, "
                    f"{plural(c['reruns'], 'rerun')}") if c["confirmation_runs"] or c["reruns"] else ""
            _echo_wrapped(f"{s['name']}: {plural(s['trials'], 'trial')} — {labels}; plus the baseline "
                          f"({base}{score}){runs}{saved}", avail, indent=2)
            _echo_wrapped(f"{s['name']} result: {s['result']}; {s['best_single_run_text']}", avail, indent=2)
        if hidden:
            _echo_wrapped(f"(not shown at {avail} columns: {', '.join(hidden)}; `arledger status --wide` "
                          "shows every column)", avail)


def _result_cell(s: dict[str, Any], key: str) -> str:
    """``start`` / ``best`` as status prints them: the mean, its trial and how many runs it averages."""
    from projections.headline import fmt_metric

    if s[key] is None:
        return "—"
    n = s["start_runs"] if key == "start" else s["best_runs"]
    runs = f"n={n}" if n and n > 1 else ""
    trial = f"#{s['best_trial']}" if key == "best" and s["best_trial"] else ""
    inside = ", ".join(x for x in (trial, runs) if x)
    return fmt_metric(s[key]) + (f" ({inside})" if inside else "")


STATUS_COLUMNS = [
    layout.Column("campaign", 0), layout.Column("task", 9), layout.Column("metric", 3),
    layout.Column("arm", 8), layout.Column("state", 1), layout.Column("trials", 1, right=True),
    layout.Column("keeps", 1, right=True), layout.Column("in flight", 6, right=True),
    layout.Column("start", 4, right=True), layout.Column("best", 2, right=True),
    layout.Column("change", 2, right=True), layout.Column("threshold", 5, right=True),
    layout.Column("last activity (UTC)", 7),
]
"""status's columns; at a narrow width the highest priority numbers are left out first."""


def _echo_wrapped(text: str, avail: int, *, label: str = "", indent: int | None = None) -> None:
    click.echo("\n".join(layout.wrap(text, avail, label=label, indent=indent)))


@click.command("show")
@click.argument("trial")
@LEDGER
@CAMPAIGN
@JSON
@click.option("--prompt", is_flag=True,
              help="Print the exact view the proposer was shown (from its artifact).")
def show_cmd(trial: str, ledger_url: str | None, campaign: str | None, as_json: bool, prompt: bool) -> None:
    """One trial: hypothesis, diff, outcome, log excerpt and lineage."""
    from projections.headline import headline
    from projections.lineage_view import fmt_delta, fmt_score, trial_tag

    with open_ledger(ledger_url) as led:
        proj = _projector(led)
        row = _trial(proj, trial, campaign)
        info = proj.trials.campaigns[row.campaign_id]
        if prompt:
            click.echo(_prompt_text(led, row, info.name), nl=False)
            return
        diff = _artifact_text(led, row.diff_sha)
        log = _artifact_text(led, row.log_sha)
        log_tail = "\n".join(log.splitlines()[-30:]) if log else None
        chain = proj.lineage.chain(row.campaign_id, row.number)
        kids = proj.lineage.children(row.campaign_id, row.number)
        h = headline(proj.trials, info)
        is_result = h.incumbent is not None and h.incumbent.number == row.number
        if as_json:
            d = row.to_dict()
            d.update({"diff": diff, "log_excerpt": log_tail, "chain": [r.number for r in chain],
                      "children": [r.number for r in kids], "metric": info.metric, "direction": info.direction,
                      "headline": h.to_dict() if is_result else None})
            _json(d)
            return
        avail = layout.width()

        def out(text: str, label: str = "") -> None:
            _echo_wrapped(text, avail, label=label, indent=2 if label else None)

        out(f"{info.name} #{row.number:03d} — {row.specialist} (surface {row.surface or '—'}) · {row.kind} · "
            f"{row.state}" + (" · QUARANTINED" if row.quarantined else ""))
        out(row.hypothesis, "Hypothesis: ")
        parent = (f"#{row.parent:03d}" if row.parent is not None else "none"
                  if row.kind in ("baseline", "imported") else "the task's baseline snapshot (no trial)")
        exp = f" · expected Δ {fmt_delta(row.expected_delta)}" if row.expected_delta is not None else ""
        out(f"{parent}{exp} · proposed {_when(row.proposed_at)} by {row.proposer}", "Parent: ")
        score = f"{info.metric}={fmt_score(row.score)}" if row.score is not None else "no score"
        delta = f" · Δ vs incumbent {fmt_delta(row.delta)}" if row.delta is not None else ""
        out(f"{row.label or '(not labelled yet)'} · {score}{delta}"
            + (f" · labelled by {row.label_actor} {_when(row.labelled_at)}" if row.labelled_at else "")
            + (f" · corrected {row.relabels}× (first label {row.first_label})" if row.relabels else ""),
            "Outcome: ")
        v = row.verdict
        if v is not None:
            runs = ", ".join(f"#{n} {fmt_score(x)}" for n, x in v.runs)
            out(f"{v.verdict} by {v.actor} {_when(v.at)} — {v.reason}", "Verdict: ")
            if v.policy != "as labelled":
                inc = (f"#{v.incumbent_number} {fmt_score(v.incumbent_score)}" if v.incumbent_number is not None
                       else "—")
                imp = fmt_delta(v.improvement) if v.improvement is not None else "—"
                out(f"runs {runs or '—'} · mean {fmt_score(v.mean)} · incumbent {inc} · improvement "
                    f"{imp} · threshold {v.rule or fmt_score(v.threshold)} · policy {v.policy}",
                    "  Evidence: ")
        if is_result:
            what = "the campaign's confirmed incumbent" if h.confirmed else "the incumbent (nothing beat it)"
            out(f"{what} — {h.result_words()}; {h.best_run_words()}", "Result: ")
        if row.reason:
            out(row.reason, "Reason: ")
        if row.excerpt:
            out(row.excerpt, "Excerpt: ")
        if row.gates_failed:
            out(", ".join(row.gates_failed), "Failed gates: ")
        if row.metrics:
            out(", ".join(f"{k}={v:.6g}" for k, v in sorted(row.metrics.items())), "Metrics: ")
        if row.last_metrics:
            out(", ".join(f"{k}={v:.6g}" for k, v in sorted(row.last_metrics.items()))
                + (f" at step {row.last_step}" if row.last_step is not None else "")
                + f" ({plural(row.metric_points, 'point')}; informational, not a score)", "Reported: ")
        art = (f"artifact file {row.artifact_bytes:,} bytes (+ code {row.code_bytes:,})" if row.code_bytes
               else f"artifact file {row.artifact_bytes:,} bytes")
        out(f"runner {row.runner or '—'} · accelerator {row.accelerator or '—'} · "
            f"{plural(row.attempts, 'attempt')} · wall {row.wall_s:.1f}s · cpu {row.cpu_s:.1f}s · "
            f"eval {row.eval_wall_s:.1f}s · {art} · started {_when(row.started_at)} · finished "
            f"{_when(row.finished_at)}", "Run: ")
        out(f"{row.evaluator or '—'} · task {row.task_sha[:12] or '—'} · harness "
            f"{row.harness_version or '—'}", "Evaluator: ")
        if row.tokens or row.cost_usd or row.requests:
            out(f"${row.cost_usd:.4f} · {row.tokens:,} tokens ({row.input_tokens:,} in, "
                f"{row.output_tokens:,} out) · {plural(row.turns, 'turn')}, {plural(row.requests, 'request')} "
                f"({row.retries} retried) · {row.backend} {row.model}", "Cost: ")
        if row.prompt_sha:
            out(f"`arledger show {info.name}/{row.number} --prompt` prints the view the proposer was shown",
                "Prompt: ")
        if row.notes:
            out(row.notes, "Notes: ")
        click.echo("")
        click.echo("Lineage")
        nxt = {a.number: [b] for a, b in zip(chain, chain[1:], strict=False)}
        click.echo("\n".join(layout.tree(chain[:1], lambda r: nxt.get(r.number, []),
                                         lambda r: trial_tag(r, info.metric) + " " + r.hypothesis, avail)))
        if kids:
            out(", ".join(f"#{r.number:03d} {r.state}" for r in kids), f"Children ({len(kids)}): ")
        click.echo("")
        if diff is not None:
            click.echo("Diff")
            click.echo(diff.rstrip("\n"))
        elif row.diff_sha:
            out(f"artifact {row.diff_sha[:16]} is missing from the store", "Diff: ")
        else:
            out("none recorded" + (" (imported records carry no code)" if row.kind in ("imported", "baseline")
                                   else ""), "Diff: ")
        if log_tail is not None:
            click.echo("")
            click.echo("Log (last 30 lines)")
            click.echo(log_tail)


def _prompt_text(led: Ledger, row: Any, campaign: str) -> str:
    """The view the proposer of ``row`` was shown, from the artifact its proposal recorded."""
    if not row.prompt_sha:
        why = ("it was not proposed by a specialist" if row.kind in ("baseline", "confirmation", "rerun")
               else "imported records carry none" if row.kind == "imported" else "its proposal recorded none")
        raise click.ClickException(f"trial {campaign}/{row.number} has no recorded prompt ({why}); "
                                   f"`arledger show {campaign}/{row.number}` shows what it did")
    try:
        text = led.artifacts.get_text(row.prompt_sha)
    except ArtifactError as e:
        raise click.ClickException(f"the prompt of trial {campaign}/{row.number} cannot be read: {e}; run "
                                   "`arledger audit verify`") from None
    return text if text.endswith("\n") else text + "\n"


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
        # the ancestors lead down to TRIAL, one child each; below it, its subtree to --depth
        path = [*ancestors, *roots[:1]] if ancestors else []
        nxt = {a.number: [b] for a, b in zip(path, path[1:], strict=False)}
        level = {r.number: 0 for r in roots}

        def shown(r: Any) -> list[Any]:
            if r.number in nxt:
                return nxt[r.number]
            if depth is not None and level.get(r.number, 0) >= depth:
                return []
            cs = kids(r)
            for c in cs:
                level[c.number] = level.get(r.number, 0) + 1
            return cs

        avail = layout.width()
        lines = layout.tree(path[:1] or roots, shown,
                            lambda r: trial_tag(r, info.metric) + " " + r.hypothesis, avail)
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
@click.option("--no-verify", is_flag=True, help="Do not verify the ledger for the page's integrity section.")
def export_cmd(campaigns: tuple[str, ...], out_dir: Path, ledger_url: str | None, key_path: Path | None,
               no_sign: bool, no_figures: bool, no_verify: bool) -> None:
    """Paper export: summary.json, CSV/Parquet tables, LaTeX tables, figures, signed manifest, and
    index.html (one self-contained page of it all)."""
    from ledger.audit import verify
    from projections.export import export
    from projections.headline import fmt_pct

    err = Console(stderr=True)
    with open_ledger(ledger_url) as led:
        cp = _checkpoint(led, key_path, sign=not no_sign)
        with err.status("reading the ledger…") as st:
            proj = _projector(led, until=cp["size"])
            if not no_verify:
                st.update("verifying the ledger…")
            checked = None if no_verify else verify(led).to_dict()
            try:
                manifest = export(proj, out_dir, list(campaigns) or None, checkpoint=cp, ledger=led.describe(),
                                  figures=not no_figures, progress=lambda m: st.update(f"writing {m}…"),
                                  text_of=lambda sha: _artifact_text(led, sha), verification=checked)
            except OSError as e:
                raise click.ClickException(f"cannot write to {out_dir}: {e.strerror or e}") from None
    summary = json.loads((out_dir / "summary.json").read_text())
    rows = [[s["title"], f"{s['metric']} ({Objective(s['direction']).word})", _result_cell(s, "start"),
             _result_cell(s, "best"), fmt_pct(s["rel_change_pct"]), str(s["counts"]["proposals"]),
             str(s["counts"]["keeps"])] for s in summary["campaigns"]]
    avail = layout.width()
    lines, hidden = layout.table(EXPORT_COLUMNS, rows, avail)
    click.echo("Headline\n" + "\n".join(lines))
    signed = "signed" if cp["signed"] else "UNSIGNED"
    _echo_wrapped(f"{len(manifest['files'])} files written to {out_dir} (open {out_dir / 'index.html'}) · "
                  f"{signed} checkpoint size {cp['size']} root {cp['root'][:16]} (manifest.json)", avail)
    if hidden:
        _echo_wrapped(f"(not shown at {avail} columns: {', '.join(hidden)}; see summary.json)", avail)
    if not cp["signed"]:
        _echo_wrapped(f"note: {cp['note']}", avail)


EXPORT_COLUMNS = [layout.Column("run", 0), layout.Column("metric", 0), layout.Column("start", 2, right=True),
                  layout.Column("best", 0, right=True), layout.Column("change", 1, right=True),
                  layout.Column("proposals", 1, right=True), layout.Column("keeps", 1, right=True)]


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
    click.echo(f"imported {plural(r.trials, 'trial')} ({plural(r.keeps, 'keep')}) from {directory} as campaign "
               f"{r.campaign!r}: {plural(r.events, 'event')}")


@import_group.command("autoresearch")
@click.argument("path", type=click.Path(path_type=Path))
@LEDGER
@click.option("--name", default=None, help="Campaign name (default: the file's stem, or its folder for results.tsv).")
def import_autoresearch_cmd(path: Path, ledger_url: str | None, name: str | None) -> None:
    """karpathy/autoresearch's results.tsv (commit, val_bpb, memory_gb, status, description)."""
    from ledger.importers import import_autoresearch

    with open_ledger(ledger_url) as led:
        r = import_autoresearch(led, path, name=name)
    click.echo(f"imported {plural(r.trials, 'trial')} ({plural(r.keeps, 'keep')}) from {path} as campaign "
               f"{r.campaign!r}: {plural(r.events, 'event')}")


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
