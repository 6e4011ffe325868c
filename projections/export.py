"""The paper export: summary.json, tables (CSV + Parquet), LaTeX tables, figures, manifest.

``export(proj, out_dir, campaigns)`` writes into ``out_dir``:

* ``summary.json`` — ``{"campaigns": [{name, task, metric, direction, trials, keeps, start, best,
  rel_change_pct, status_counts, baseline_status_counts, cross_role_keeps: [n, of], effective_clusters,
  max_cluster_share, near_dup_rate, trials_per_hour, compute_s, compute_saved_s, figures, ...}]}``:
  ``start``, ``best`` (``best_trial``, ``best_runs``, ``best_sd``), ``rel_change_pct`` (100 × (best −
  start) / |start|, 2 places), ``threshold``, ``best_single_run``, ``counts`` and ``promotions`` are
  :func:`projections.headline.headline`'s — the confirmed incumbent's mean against the baseline's
  mean, the number every output prints; ``figures`` is each figure's caption data (what it plots).
  ``trials`` exclude the baseline and so do ``status_counts`` (they add up to ``trials``; the
  baseline's label is in ``baseline_status_counts``); ``cross_role_keeps`` is [keeps whose parent is
  another specialist's trial, keeps whose parent is not the baseline] (see projections.stats);
  ``compute_saved_s``: what early stopping saved (``TrialRow.compute_saved_s``);
* ``tables/<name>.csv`` and ``tables/<name>.parquet`` for trials, status_counts, specialists, keeps,
  headline, arms, cost, throughput, diversity, noise;
* ``latex/headline.tex`` (run, metric (direction), start, best, change, proposals, re-runs, keeps —
  the paper's Table 1) and ``latex/arms.tex`` (campaigns compared by arm — its Table 3);
* ``figures/<campaign>_{progress,specialists,lineage}.{png,pdf}``;
* ``index.html`` — one self-contained page of it all (``projections.html_report``);
* ``manifest.json`` — the checkpoint the export was made from (signed if a key was available, else
  the unsigned size and root, saying so) and the sha256 of every file written.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ledger.store import LedgerError
from projections import figure_data
from projections.headline import fmt_metric, headline
from projections.records import CampaignInfo

TABLES = ("trials", "status_counts", "specialists", "keeps", "headline", "arms", "cost", "throughput",
          "diversity", "noise")


def select(proj: Any, campaigns: list[str] | None) -> list[CampaignInfo]:
    infos = sorted(proj.trials.campaigns.values(), key=lambda c: c.position)
    if not campaigns:
        return infos
    missing = [c for c in campaigns if proj.trials.campaign(c) is None]
    if missing:
        raise LedgerError(f"no campaign {', '.join(missing)} in this ledger "
                       f"(there are: {', '.join(c.name for c in infos) or 'none'})")
    return [proj.trials.campaign(c) for c in campaigns]  # type: ignore[misc]


def campaign_summary(proj: Any, info: CampaignInfo) -> dict[str, Any]:
    """The campaign's summary: its result as :func:`projections.headline.headline` computes it
    (``start``, ``best``, ``rel_change_pct`` and the rest of ``Headline.to_dict``), beside the counts,
    diversity, throughput, noise and cost figures; ``figures``: each figure's caption data."""
    cid = info.campaign_id
    h = headline(proj.trials, info)
    div = proj.diversity.summary(cid)
    thr = proj.throughput.get(cid)
    noise = proj.noise.get(cid)
    cost = proj.cost.summary(cid)
    return {
        "name": info.name, "task": info.task, "metric": info.metric, "direction": info.direction,
        "trials": h.counts.trials, "keeps": h.counts.keeps,
        **h.to_dict(),
        "status_counts": proj.statuses.labels(cid), "baseline_status_counts": proj.statuses.baseline_labels(cid),
        "cross_role_keeps": proj.cross_role.keeps(cid),
        "effective_clusters": div["effective_clusters"], "max_cluster_share": div["max_cluster_share"],
        "near_dup_rate": div["near_dup_rate"], "trials_per_hour": thr["trials_per_hour"],
        # beyond the schema
        "title": info.config.get("title") or info.name, "arm": info.arm,
        "result": h.result_words(), "best_single_run_text": h.best_run_words(),
        "parallel_efficiency": thr["parallel_efficiency"], "parallel_slots": thr["parallel_slots"],
        "noise_sd": noise["noise_sd"] or None, "keeps_within_noise": noise["within_noise"],
        "cost_usd": cost["total"]["cost_usd"], "tokens": cost["total"]["tokens"],
        "compute_s": cost["total"]["compute_s"],
        # trials the task's early-stopping rule stopped: the compute their reference runs took, less theirs
        "compute_saved_s": sum(r.compute_saved_s for r in proj.trials.rows(cid)),
        "gates": info.config.get("gates") or {},
        "figures": figure_data.captions(proj, info),
    }


# ---------------------------------------------------------------------------------------------
# tables


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    if not rows:
        return pa.table({"empty": pa.array([], pa.null())})
    cols = list(rows[0])
    for r in rows[1:]:
        for k in r:
            if k not in cols:
                cols.append(k)
    arrays = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if any(isinstance(v, dict | list) for v in vals):
            vals = [json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for v in vals]
        if any(isinstance(v, float) for v in vals) and all(v is None or isinstance(v, int | float) and
                                                           not isinstance(v, bool) for v in vals):
            vals = [float(v) if v is not None else None for v in vals]
        elif any(isinstance(v, str) for v in vals):
            vals = [v if v is None or isinstance(v, str) else str(v) for v in vals]
        arrays[c] = pa.array(vals)
    return pa.table(arrays)


def tables(proj: Any, infos: list[CampaignInfo], summaries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in TABLES}
    for info, s in zip(infos, summaries, strict=True):
        cid = info.campaign_id
        for r in proj.trials.rows(cid):
            d = r.to_dict()
            d["trial_id"] = str(r.trial_id)
            for k in ("campaign_id", "parent_id"):
                d.pop(k, None)
            out["trials"].append(d)
        for counted, key in (("trials", "status_counts"), ("baseline", "baseline_status_counts")):
            for status, n in s[key].items():
                out["status_counts"].append({"campaign": info.name, "counted": counted, "status": status, "count": n})
        for p in proj.specialists.table_for(cid):
            row = {"campaign": info.name, **{k: v for k, v in p.items() if k != "statuses"}}
            row.update({f"n_{k}": v for k, v in p["statuses"].items()})
            out["specialists"].append(row)
        # each keep at the mean of its runs, its delta from the same numbers (projections.stats.NoiseReport)
        keeps = sorted(proj.noise.get(cid)["keeps"],
                       key=lambda k: (info.objective.sort_key(k["score"] if k["score"] is not None else math.inf),
                                      k["number"]))
        for rank, k in enumerate(keeps, start=1):
            r = proj.trials.row(cid, k["number"])
            out["keeps"].append({"campaign": info.name, "rank": rank, "number": k["number"],
                                 "specialist": k["specialist"], "score": k["score"], "runs": k["runs"],
                                 "delta": k["delta"], "previous": k["previous"], "parent": r.parent if r else None,
                                 "own_run_score": r.score if r else None, "within_noise": k["within_noise"],
                                 "hypothesis": k["hypothesis"]})
        out["headline"].append(_headline_row(info, s))
        out["arms"].append({"arm": info.arm, "campaign": info.name, **_counts(s),
                            "start": s["start"], "best": s["best"], "best_trial": s["best_trial"],
                            "best_runs": s["best_runs"], "rel_change_pct": s["rel_change_pct"],
                            "cross_role_keeps": s["cross_role_keeps"][0],
                            "cross_role_of": s["cross_role_keeps"][1], "effective_clusters": s["effective_clusters"],
                            "near_dup_rate": s["near_dup_rate"], "trials_per_hour": s["trials_per_hour"]})
        c = proj.cost.summary(cid)
        out["cost"].append({"campaign": info.name, "trials": c["trials"], "keeps": c["keeps"],
                            **{f"total_{k}": v for k, v in c["total"].items()},
                            **{f"per_trial_{k}": v for k, v in c["per_trial"].items()},
                            **{f"per_keep_{k}": v for k, v in c["per_keep"].items()}})
        out["throughput"].append({"campaign": info.name, **proj.throughput.get(cid)})
        d = proj.diversity.summary(cid)
        out["diversity"].append({"campaign": info.name, **{k: v for k, v in d.items() if k != "cluster_sizes"}})
        for k in proj.noise.get(cid)["keeps"]:
            out["noise"].append({"campaign": info.name, **{kk: vv for kk, vv in k.items() if kk != "hypothesis"}})
    return out


def _counts(s: dict[str, Any]) -> dict[str, Any]:
    c = s["counts"]
    return {"proposals": c["proposals"], "confirmation_runs": c["confirmation_runs"], "reruns": c["reruns"],
            "keeps": c["keeps"], "trials_after_baseline": c["trials"], "trials_total": c["trials_total"]}


def _headline_row(info: CampaignInfo, s: dict[str, Any]) -> dict[str, Any]:
    thr = s["threshold"] or {}
    single = s["best_single_run"] or {}
    return {"run": s["title"], "campaign": info.name, "metric": info.metric, "direction": info.direction,
            "start": s["start"], "start_runs": s["start_runs"], "best": s["best"], "best_trial": s["best_trial"],
            "best_runs": s["best_runs"], "best_sd": s["best_sd"], "confirmed": s["confirmed"],
            "rel_change_pct": s["rel_change_pct"], "threshold": thr.get("value"), "threshold_sd": thr.get("sd"),
            "threshold_sd_runs": thr.get("sd_runs"), "threshold_sd_source": thr.get("sd_source"),
            **_counts(s), "best_single_run": single.get("score"), "best_single_run_trial": single.get("number")}


# ---------------------------------------------------------------------------------------------
# LaTeX


def tex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", ">=": r"$\geq$", "<=": r"$\leq$"}
    out = []
    i = 0
    while i < len(s):
        two = s[i:i + 2]
        if two in (">=", "<="):
            out.append(rep[two])
            i += 2
            continue
        out.append(rep.get(s[i], s[i]))
        i += 1
    return "".join(out)


def metric_cell(info: CampaignInfo) -> str:
    words = info.objective.word
    gates = info.config.get("gates") or {}
    extra = ""
    if isinstance(gates, dict) and gates.get("accuracy_min") is not None:
        extra = f"; mean {gates.get('accuracy_metric', 'accuracy')} >= {gates['accuracy_min']} gate"
    return tex_escape(f"{info.metric} ({words}{extra})")


def change_cell(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:+.2f}\\%".replace("+", "+" if pct > 0 else "")


def value_cell(v: float | None, runs: int | None) -> str:
    """A result as the tables print it: the mean, and how many runs it is the mean of when more than one."""
    return fmt_metric(v) + (f" ($n={runs}$)" if runs and runs > 1 else "")


def headline_tex(infos: list[CampaignInfo], summaries: list[dict[str, Any]]) -> str:
    lines = [
        "% Headline results (cf. Table 1 of arXiv 2605.05724); generated by arledger export",
        "% Start: the baseline's mean; Best: the confirmed incumbent's mean (n: its runs); Change: relative to",
        "% the baseline's mean. Re-runs: confirmation runs and reruns (noise measurements); the baseline is",
        "% counted in none of the columns.",
        r"\begin{tabular}{llrrrrrr}", r"\toprule",
        r"Run & Metric (direction) & Start & Best & Change & Proposals & Re-runs & Keeps \\", r"\midrule",
    ]
    for info, s in zip(infos, summaries, strict=True):
        c = s["counts"]
        lines.append(f"{tex_escape(s['title'])} & {metric_cell(info)} & {value_cell(s['start'], s['start_runs'])} & "
                     f"{value_cell(s['best'], s['best_runs'])} & {change_cell(s['rel_change_pct'])} & "
                     f"{c['proposals']} & {c['confirmation_runs'] + c['reruns']} & {c['keeps']} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def arms_tex(infos: list[CampaignInfo], summaries: list[dict[str, Any]]) -> str:
    lines = [
        "% Campaigns compared by arm (cf. Table 3 of arXiv 2605.05724); generated by arledger export",
        "% Best: the confirmed incumbent's mean (n: its runs), as in headline.tex",
        r"\begin{tabular}{llrrrrrrr}", r"\toprule",
        r"Arm & Campaign & Proposals & Keeps & Best & Change & Cross-role keeps & Eff.\ clusters & Near-dup \\",
        r"\midrule",
    ]
    pairs = sorted(zip(infos, summaries, strict=True), key=lambda p: (p[0].arm, p[0].position))
    last = None
    for info, s in pairs:
        if last is not None and info.arm != last:
            lines.append(r"\midrule")
        last = info.arm
        n, of = s["cross_role_keeps"]
        lines.append(f"{tex_escape(info.arm)} & {tex_escape(info.name)} & {s['counts']['proposals']} & "
                     f"{s['counts']['keeps']} & {value_cell(s['best'], s['best_runs'])} & "
                     f"{change_cell(s['rel_change_pct'])} & {n}/{of} & "
                     f"{s['effective_clusters']:.1f} & {100 * s['near_dup_rate']:.1f}\\% \\\\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(proj: Any, out_dir: str | Path, campaigns: list[str] | None = None, *,
           checkpoint: dict[str, Any] | None = None, ledger: str = "", figures: bool = True,
           progress: Callable[[str], None] | None = None, text_of: Callable[[str], str | None] | None = None,
           verification: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the export; returns the manifest. ``checkpoint``: what the export was made from (see
    the module doc); None records the projector's position, unsigned. ``text_of(sha)``: an
    artifact's text (the page quotes diffs and logs), ``verification``: the ledger's verify report."""
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infos = select(proj, campaigns)
    summaries = [campaign_summary(proj, i) for i in infos]
    written: list[Path] = []

    say("summary.json")
    p = out / "summary.json"
    p.write_text(json.dumps({"campaigns": summaries}, indent=2, default=str) + "\n")
    written.append(p)

    say("tables")
    (out / "tables").mkdir(exist_ok=True)
    for name, rows in tables(proj, infos, summaries).items():
        t = _table(rows)
        pc, pp = out / "tables" / f"{name}.csv", out / "tables" / f"{name}.parquet"
        pacsv.write_csv(t, pc)
        pq.write_table(t, pp)
        written += [pc, pp]

    say("LaTeX")
    (out / "latex").mkdir(exist_ok=True)
    for name, text in (("headline", headline_tex(infos, summaries)), ("arms", arms_tex(infos, summaries))):
        p = out / "latex" / f"{name}.tex"
        p.write_text(text)
        written.append(p)

    if figures:
        from projections import figures as figs

        for info in infos:
            say(f"figures for {info.name}")
            written += figs.all_figures(proj, info, out / "figures")

    cp = dict(checkpoint) if checkpoint else {"signed": False, "size": proj.cursor, "root": None,
                                              "note": "no checkpoint was given; size is the projector's position"}
    say("index.html")
    from projections import html_report

    written.append(html_report.write(out, proj, infos, summaries, checkpoint=cp, verification=verification,
                                     ledger=ledger, text_of=text_of or (lambda _sha: None), figures=figures))
    manifest = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ledger": ledger, "events": proj.cursor, "campaigns": [i.name for i in infos], "checkpoint": cp,
        "files": {str(f.relative_to(out)): _sha(f) for f in sorted(set(written))},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest
