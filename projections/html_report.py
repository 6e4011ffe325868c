"""The export's ``index.html``: one self-contained page a reviewer opens instead of a terminal.

:func:`gather` collects what the page shows from the projections (and the texts of the artifacts
it quotes, through ``text_of``); :func:`render` is pure — a :class:`Report` in, the HTML out. The
page holds, per campaign: the headline (the numbers ``campaign_summary`` gives), the progress and
lineage figures (PNG, embedded as data URIs), the trial table with filters by label and by
specialist, and under each trial its hypothesis, verdict and evidence, reason, diff, log excerpt
and notes; then the ledger's verification status and the checkpoint the export was made from. No
network resource of any kind: CSS and JavaScript are inline, and the page's Content-Security-
Policy forbids every fetch.

Steering notes (issue 13) have their place: :class:`CampaignReport` ``steering``, shown when given.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from projections.headline import fmt_metric, fmt_pct
from projections.records import CampaignInfo, Note, TrialRow, Verdict

MAX_DIFF_LINES = 400
LOG_LINES = 30


@dataclass(frozen=True)
class TrialEntry:
    row: TrialRow
    diff: str | None  # its diff against its parent (None: none recorded, or missing from the store)
    log: str | None  # the last LOG_LINES lines of its training log


@dataclass(frozen=True)
class CampaignReport:
    info: CampaignInfo
    summary: dict[str, Any]  # campaign_summary's numbers, printed as they are
    trials: list[TrialEntry]
    figures: dict[str, bytes] = field(default_factory=dict)  # "progress" / "lineage" -> PNG bytes
    steering: list[Note] = field(default_factory=list)  # the campaign's steering notes, open and closed


@dataclass(frozen=True)
class Report:
    campaigns: list[CampaignReport]
    checkpoint: dict[str, Any]
    verification: dict[str, Any] | None  # ledger.audit.verify's report (to_dict), None if not run
    ledger: str
    events: int
    created_at: float


def _tail(text: str | None, n: int) -> str | None:
    return None if text is None else "\n".join(text.splitlines()[-n:])


def gather(proj: Any, infos: Sequence[CampaignInfo], summaries: Sequence[dict[str, Any]], *,
           checkpoint: dict[str, Any], verification: dict[str, Any] | None, ledger: str,
           text_of: Callable[[str], str | None], figures_dir: Path | None) -> Report:
    """What the page shows, from the projections; ``text_of(sha)`` reads an artifact (None when it
    is missing); ``figures_dir``: where the export wrote its figures (None: made without)."""
    camps = []
    for info, s in zip(infos, summaries, strict=True):
        trials = [TrialEntry(r, text_of(r.diff_sha) if r.diff_sha else None,
                             _tail(text_of(r.log_sha), LOG_LINES) if r.log_sha else None)
                  for r in proj.trials.rows(info.campaign_id)]
        figs: dict[str, bytes] = {}
        if figures_dir is not None:
            from projections.figures import file_stem

            for kind in ("progress", "lineage"):
                p = figures_dir / f"{file_stem(info.name)}_{kind}.png"
                if p.is_file():
                    figs[kind] = p.read_bytes()
        camps.append(CampaignReport(info, dict(s), trials, figs, list(info.notes)))
    return Report(camps, dict(checkpoint), verification, ledger, proj.cursor, time.time())


def write(out: Path, proj: Any, infos: Sequence[CampaignInfo], summaries: Sequence[dict[str, Any]], *,
          checkpoint: dict[str, Any], verification: dict[str, Any] | None, ledger: str,
          text_of: Callable[[str], str | None], figures: bool) -> Path:
    """Gather, render and write ``out/index.html``; returns its path."""
    rep = gather(proj, infos, summaries, checkpoint=checkpoint, verification=verification, ledger=ledger,
                 text_of=text_of, figures_dir=out / "figures" if figures else None)
    p = out / "index.html"
    p.write_text(render(rep), encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------
# rendering


def e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _num(v: float | None, fmt: str = ".6g") -> str:
    return "—" if v is None else format(v, fmt)


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else word + 's'}"


def render(rep: Report) -> str:
    title = ", ".join(c.summary.get("title") or c.info.name for c in rep.campaigns) or "no campaigns"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rep.created_at))
    body = [f"<header><h1>arledger · {e(title)}</h1><p class=muted>{e(rep.ledger)} · "
            f"{_plural(rep.events, 'event')} · exported {e(when)}</p></header>"]
    body += [_campaign(c, i) for i, c in enumerate(rep.campaigns)]
    body.append(_integrity(rep))
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
        f"<title>arledger · {e(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body) + f"<script>{JS}</script></body></html>\n")


def _runs(n: int | None, sd: float | None) -> str:
    if not n or n <= 1:
        return "1 run"
    return f"mean of {n} runs" + (f", sd {sd:.2g}" if sd is not None else "")


def _headline(c: CampaignReport) -> str:
    """The campaign's result as ``projections.headline`` computed it (the summary's numbers)."""
    s, info = c.summary, c.info
    arrow = "↓" if info.direction == "min" else "↑"
    best = (f"{fmt_metric(s.get('best'))} (#{s.get('best_trial')}, {_runs(s.get('best_runs'), s.get('best_sd'))})"
            if s.get("best") is not None else "—")
    if s.get("best") is not None and not s.get("confirmed"):
        best += " — the baseline: no confirmed improvement"
    start = (f"{fmt_metric(s.get('start'))} ({_runs(s.get('start_runs'), s.get('start_sd'))})"
             if s.get("start") is not None else "—")
    cells = [("metric", f"{info.metric} {arrow} ({info.objective.word} is better)"), ("start", start),
             ("best (confirmed incumbent)", best), ("change", fmt_pct(s.get("rel_change_pct")))]
    thr = s.get("threshold")
    if thr:
        runs = f" over {thr['sd_runs']} runs" if thr.get("sd_runs") else ""
        cells.append(("threshold beaten", f"{thr['value']:.4g} (noise sd {thr['sd']:.4g}{runs}, "
                                          f"{thr.get('sd_source') or '—'})"))
    one = s.get("best_single_run")
    if one:
        cells.append(("best single run", f"{fmt_metric(one['score'])} (#{one['number']}, {one['state']}; "
                                         "not the result)"))
    cnt = s.get("counts") or {}
    cells += [("proposals", str(cnt.get("proposals", 0))),
              ("confirmation runs", str(cnt.get("confirmation_runs", 0))),
              ("reruns", str(cnt.get("reruns", 0))), ("keeps", str(cnt.get("keeps", 0))),
              ("trials (with the baseline)", str(cnt.get("trials_total", len(c.trials)))),
              ("task", info.task), ("arm", info.arm), ("state", info.state)]
    items = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in cells)
    return f"<dl class=headline>{items}</dl>"


def _count_words(s: dict[str, Any], rows: int) -> str:
    c = s.get("counts")
    if not c:
        return _plural(rows, "row")
    parts = [_plural(c["proposals"], "proposal")]
    if c["confirmation_runs"]:
        parts.append(_plural(c["confirmation_runs"], "confirmation run"))
    if c["reruns"]:
        parts.append(_plural(c["reruns"], "rerun"))
    base = " and the baseline" if c["trials_total"] > c["trials"] else ""
    return ", ".join(parts) + base + f": {_plural(c['trials_total'], 'trial')}"


def _caption(kind: str, s: dict[str, Any]) -> str:
    """A figure's caption from its caption data (the summary's ``figures``)."""
    f = (s.get("figures") or {}).get(kind) or {}
    if kind == "progress" and f:
        steps = ", ".join(f"#{p['number']} {fmt_metric(p['value'])}" + (f" (n={p['runs']})" if p["runs"] > 1 else "")
                          for p in f.get("promotions", []))
        return (f"progress: {f['points']} scored runs of {f['trials']} trials, "
                f"{f['failures_without_score']} failed without a score; the line is the confirmed incumbent "
                f"(mean of its runs), stepping at each promotion: {steps or 'none'}")
    if kind == "lineage" and f:
        return (f"lineage: the tree of the {f['keeps']} keeps (arrows from the keep each descends from), "
                f"in {_plural(f['lanes'], 'branch')}; the confirmed incumbent is #{f['incumbent']}")
    return kind


def _label(r: TrialRow) -> str:
    """What the label filter matches: the trial's status (its label, with the verdict for scored)."""
    return r.status or "in flight"


def _campaign(c: CampaignReport, idx: int) -> str:
    info = c.info
    rows = [t.row for t in c.trials]
    labels = sorted({_label(r) for r in rows})
    specs = sorted({r.specialist for r in rows})
    name = c.summary.get("title") or info.name
    out = [f"<section class=campaign id=c{idx}><h2>{e(name)}</h2>", _headline(c)]
    if info.closed_at is not None:
        out.append(f"<p class=muted>closed: {e(info.closed_reason)}</p>")
    if c.figures:
        out.append("<div class=figures>" + "".join(
            f"<figure><img alt=\"{e(kind)} of {e(info.name)}\" src=\"data:image/png;base64,"
            f"{base64.b64encode(png).decode()}\"><figcaption>{e(_caption(kind, c.summary))}</figcaption></figure>"
            for kind, png in c.figures.items()) + "</div>")
    else:
        out.append("<p class=muted>No figures (exported with --no-figures).</p>")
    if c.steering:
        out.append("<h3>Steering notes</h3><ul class=notes>" + "".join(
            f"<li><time>{e(time.strftime('%Y-%m-%d %H:%M', time.gmtime(n.at)))}</time> #{n.number} "
            f"{e(n.actor)} to {e(n.specialist or 'every specialist')}: {e(n.text)}"
            + (" <span class=muted>(open)</span>" if n.open else
               f" <span class=muted>(closed by {e(n.closed_by)}"
               + (f": {e(n.close_reason)}" if n.close_reason else "") + ")</span>")
            + "</li>" for n in c.steering) + "</ul>")
    out.append(
        f"<div class=filters data-table=t{idx}><label>label <select data-filter=label>"
        "<option value=\"\">all</option>" + "".join(f"<option>{e(x)}</option>" for x in labels)
        + "</select></label> <label>specialist <select data-filter=specialist><option value=\"\">all</option>"
        + "".join(f"<option>{e(x)}</option>" for x in specs)
        + f"</select></label> <span class=count>{_plural(len(rows), 'row')}</span>"
        + f" <span class=muted>({e(_count_words(c.summary, len(rows)))})</span></div>")
    heads = ("#", "specialist", "kind", "state", info.metric, "Δ", "wall", "hypothesis")
    out.append(f"<table class=trials id=t{idx}><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in heads)
               + "</tr></thead><tbody>")
    for t in c.trials:
        out.append(_trial(t, info))
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _trial(t: TrialEntry, info: CampaignInfo) -> str:
    r = t.row
    state_cls = (r.status or "pending").replace(" ", "_")
    head = (f"<tr class=trial data-label=\"{e(_label(r))}\" data-specialist=\"{e(r.specialist)}\" tabindex=0>"
            f"<td class=n>{r.number}</td><td>{e(r.specialist)}</td><td>{e(r.kind)}</td>"
            f"<td><span class=\"st {e(state_cls)}\">{e(r.state)}</span></td><td class=n>{_num(r.score)}</td>"
            f"<td class=n>{_num(r.delta, '+.4g')}</td><td class=n>{f'{r.wall_s:.0f}s' if r.wall_s else ''}"
            "</td>"
            f"<td class=hyp>{e(r.hypothesis)}</td></tr>")
    parts = [f"<p><b>Hypothesis</b> {e(r.hypothesis)}</p>",
             f"<p class=muted>parent {'#' + str(r.parent) if r.parent is not None else 'none'} · proposed by "
             f"{e(r.proposer)} · label {e(r.label or '(not labelled yet)')}"
             + (f" · evaluator {e(r.evaluator)}" if r.evaluator else "") + "</p>"]
    if r.verdict is not None:
        parts.append(_verdict(r.verdict))
    if r.reason:
        parts.append(f"<p><b>Reason</b> {e(r.reason)}</p>")
    if r.excerpt:
        parts.append(f"<pre class=excerpt>{e(r.excerpt)}</pre>")
    if r.metrics:
        parts.append("<p><b>Metrics</b> " + e(", ".join(f"{k}={v:.6g}" for k, v in sorted(r.metrics.items())))
                     + "</p>")
    if r.notes:
        parts.append(f"<p><b>Notes</b> {e(r.notes)}</p>")
    parts.append(_diff(t.diff, r))
    if t.log:
        parts.append(f"<details><summary>log (last {LOG_LINES} lines)</summary><pre>{e(t.log)}</pre>"
                     "</details>")
    return head + f"<tr class=detail hidden><td colspan=8>{''.join(parts)}</td></tr>"


def _verdict(v: Verdict) -> str:
    runs = ", ".join(f"#{n} {x:.6g}" for n, x in v.runs) or "—"
    inc = f"#{v.incumbent_number} {_num(v.incumbent_score)}" if v.incumbent_number is not None else "—"
    return (f"<p><b>Verdict</b> {e(v.verdict)} by {e(v.actor)} — {e(v.reason)}</p>"
            f"<p class=evidence><b>Evidence</b> runs {e(runs)} · mean {_num(v.mean)} · incumbent {e(inc)} · "
            f"improvement {_num(v.improvement, '+.6g')} · threshold {e(v.rule or _num(v.threshold))} · "
            f"policy {e(v.policy)}</p>")


def _diff(diff: str | None, r: TrialRow) -> str:
    if diff is None:
        why = "missing from the artifact store" if r.diff_sha else "none recorded"
        return f"<p class=muted>diff: {why}</p>"
    lines = diff.splitlines()
    cut = len(lines) > MAX_DIFF_LINES
    shown = []
    for ln in lines[:MAX_DIFF_LINES]:
        cls = ("add" if ln.startswith("+") and not ln.startswith("+++")
               else "del" if ln.startswith("-") and not ln.startswith("---")
               else "hunk" if ln.startswith("@@") else "")
        shown.append(f"<span class={cls}>{e(ln)}</span>" if cls else e(ln))
    more = (f"\n… {len(lines) - MAX_DIFF_LINES} more lines: `arledger show {r.campaign}/{r.number}`"
            if cut else "")
    body = "\n".join(shown)
    return f"<details open><summary>diff</summary><pre class=diff>{body}{e(more)}</pre></details>"


def _integrity(rep: Report) -> str:
    cp = rep.checkpoint
    out = ["<section class=integrity><h2>Integrity</h2>"]
    v = rep.verification
    if v is None:
        out.append("<p class=muted>The ledger was not verified for this export.</p>")
    else:
        ok = bool(v.get("ok"))
        out.append(f"<p class=\"verify {'ok' if ok else 'bad'}\">ledger verification: "
                   f"{'OK' if ok else 'FAILED'}</p><dl class=kv>")
        for k, val in v.items():
            if k in ("ok", "problems") or isinstance(val, list | dict):
                continue
            out.append(f"<dt>{e(k)}</dt><dd>{e(val)}</dd>")
        out.append("</dl>")
        probs = v.get("problems") or []
        if probs:
            msgs = [p.get("message", p) if isinstance(p, dict) else p for p in probs[:20]]
            out.append("<ol class=problems>" + "".join(f"<li>{e(m)}</li>" for m in msgs) + "</ol>")
    signed = bool(cp.get("signed"))
    out.append(f"<h3>Checkpoint ({'signed' if signed else 'UNSIGNED'})</h3><dl class=kv>")
    for k in ("ledger_id", "size", "root", "key_id", "public_key", "signature", "note"):
        if cp.get(k) is not None:
            out.append(f"<dt>{e(k)}</dt><dd><code>{e(cp[k])}</code></dd>")
    out.append("</dl><p class=muted>Check it against the ledger with <code>arledger audit verify "
               "--checkpoint FILE</code>.</p></section>")
    return "".join(out)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;
  padding:0 16px 48px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:20px 0 2px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px}
.muted{color:#666}
dl.headline{display:flex;flex-wrap:wrap;gap:8px 20px;margin:8px 0}
dl.headline div{min-width:90px}
dl.headline dt{font-size:11px;text-transform:uppercase;color:#777}
dl.headline dd{margin:0;font-size:16px;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:12px}
.figures figure{margin:0;flex:1 1 480px}
.figures img{width:100%;border:1px solid #eee}
.filters{margin:12px 0 6px}
.filters select{margin:0 12px 0 4px}
.count{color:#666}
table.trials{border-collapse:collapse;width:100%}
table.trials th{text-align:left;border-bottom:2px solid #ccc;font-size:12px;padding:4px 6px}
table.trials td{border-bottom:1px solid #eee;padding:4px 6px;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.trial{cursor:pointer}
tr.trial:hover{background:#f6f8fa}
td.hyp{max-width:560px}
tr.detail td{background:#fafafa;padding:8px 14px}
pre{background:#f4f4f4;padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-word;font-size:12px}
.diff .add{color:#116329;background:#e6ffec}
.diff .del{color:#82071e;background:#ffebe9}
.diff .hunk{color:#0550ae}
.st{padding:1px 6px;border-radius:8px;background:#eee;white-space:nowrap}
.st.keep{background:#c9f1d0;font-weight:600}
.st.candidate{background:#e4f6e7}
.st.crash,.st.oom,.st.diverged,.st.runner_lost{background:#ffd7d5}
.st.illegal_edit,.st.preflight_crash{background:#f3d9f7}
.st.size_blocked,.st.train_budget_overrun,.st.eval_budget_overrun,.st.disqualified{background:#fff1c2}
.verify.ok{color:#116329;font-weight:600}
.verify.bad{color:#b00020;font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dl.kv dd{margin:0;word-break:break-all}
"""

JS = """
(function(){
  function apply(box){
    var t=document.getElementById(box.dataset.table), want={}, shown=0, all=0;
    box.querySelectorAll('select').forEach(function(s){want[s.dataset.filter]=s.value;});
    t.querySelectorAll('tr.trial').forEach(function(tr){
      all++;
      var ok=(!want.label||tr.dataset.label===want.label)&&
             (!want.specialist||tr.dataset.specialist===want.specialist);
      tr.hidden=!ok; if(!ok){tr.nextElementSibling.hidden=true;} else {shown++;}
    });
    box.querySelector('.count').textContent=(shown===all?'':shown+' of ')+all+(all===1?' row':' rows');
  }
  document.querySelectorAll('.filters').forEach(function(box){
    box.querySelectorAll('select').forEach(function(s){
      s.addEventListener('change',function(){apply(box);});
    });
  });
  document.querySelectorAll('tr.trial').forEach(function(tr){
    function toggle(){var d=tr.nextElementSibling; d.hidden=!d.hidden;}
    tr.addEventListener('click',toggle);
    tr.addEventListener('keydown',function(ev){if(ev.key==='Enter'){toggle();}});
  });
})();
"""
