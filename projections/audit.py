"""The audit report: what each submission really changed, and what the record cannot vouch for.

For every campaign:

* **submissions** — for each trial with a diff: the files, functions and knobs it touched
  (:mod:`projections.diffscan`; from the parent's code in the artifact store when it can be rebuilt,
  else from the hunk headers), whether it stayed inside its declared surface
  (``config["surfaces"][name] = {"files", "regions", "knobs"}``; evaluator-owned files never), and
  whether it was a hyperparameter edit (only knob literals changed) or a program-level edit;
* **evaluation drift** — trials scored under a different evaluator, task or harness version than
  most of the campaign, and every harness change (CampaignOpened/CampaignResumed);
* **corrections** — every relabel and quarantine, with actor and reason;
* **harness failures** — trials the harness lost or aborted (harness_abort, runner_lost, cancelled);
* **noise** — keeps whose delta is inside the campaign's noise, and those resting on one run;
* **steering notes** — every note a person left for the campaign (``arledger note``): number, author,
  addressee, time, text, and whether, when and by whom it was closed;
* **sandbox** — every trial that ran without a sandbox (``--unsafe-no-sandbox``) or whose start
  recorded none, and every diff that references the task directory, an evaluator-owned file or
  held-out data (:mod:`projections.contamination`), whether or not the sandbox stopped it.

Imported records that carry no diffs say so and still list the rest.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

from ledger.objective import Objective
from ledger.store import LedgerError
from projections import contamination
from projections.diffscan import Analysis, analyse, apply_diff, knob_lines, regions
from projections.lineage_view import clip, fmt_delta, fmt_score
from projections.records import HARNESS_STATUSES, CampaignInfo, TrialRow
from projections.stats import NoiseReport
from projections.trials import TrialTable

BASELINE_KEYS = ("baseline_tree_sha", "baseline_files_sha", "baseline_code_sha", "recipe_tree_sha")


class CodeResolver:
    """Rebuilds a trial's code as baseline + its diff chain, from the artifact store.

    The baseline's files come from an artifact named by the campaign config (one of
    ``BASELINE_KEYS``; a JSON object ``{path: text}`` or ``{"files": {path: text}}``) or from the
    baseline trial's own diff (against an empty tree). Returns None when anything is missing."""

    def __init__(self, table: TrialTable, artifacts: Any | None):
        self.table = table
        self.artifacts = artifacts
        self._code: dict[uuid.UUID, dict[str, str] | None] = {}
        self._diffs: dict[str, str | None] = {}

    def diff(self, sha: str | None) -> str | None:
        if not sha or self.artifacts is None:
            return None
        if sha not in self._diffs:
            try:
                self._diffs[sha] = self.artifacts.get(sha).decode("utf-8", errors="replace")
            except Exception:  # missing or corrupt artifact: the audit says "unavailable"
                self._diffs[sha] = None
        return self._diffs[sha]

    def _baseline(self, info: CampaignInfo) -> dict[str, str] | None:
        if self.artifacts is None:
            return None
        for sha in (info.baseline_sha, *(info.config.get(key) for key in BASELINE_KEYS)):
            if isinstance(sha, str) and sha:
                try:
                    data = json.loads(self.artifacts.get(sha))
                except Exception:
                    return None
                files = data.get("files", data) if isinstance(data, dict) else None
                if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
                    return dict(files)
                return None
        return None

    def files(self, row: TrialRow) -> dict[str, str] | None:
        if row.trial_id in self._code:
            return self._code[row.trial_id]
        chain: list[TrialRow] = []
        cur: TrialRow | None = row
        while cur is not None and cur.trial_id not in self._code:
            chain.append(cur)
            cur = self.table.trials.get(cur.parent_id) if cur.parent_id else None
        base = self._code[cur.trial_id] if cur is not None else None
        for r in reversed(chain):
            d = self.diff(r.diff_sha) if r.diff_sha else None
            if r.parent_id is None:  # the root: the baseline
                code = self._baseline(self.table.campaigns[r.campaign_id])
                if code is None:
                    code = apply_diff({}, d) if (d is not None and r.kind == "baseline") else None
                elif d is not None and r.kind != "baseline":
                    code = apply_diff(code, d)
            elif base is None:
                code = None
            elif r.diff_sha:
                code = apply_diff(base, d) if d is not None else None
            else:
                code = base  # no diff: the parent's code (a rerun)
            self._code[r.trial_id] = code
            base = code
        return self._code[row.trial_id]


def _surface_knobs(decl: dict[str, Any]) -> set[str]:
    out = set()
    for k in decl.get("knobs", []) or []:
        if isinstance(k, str):
            out.add(k)
        elif isinstance(k, dict) and isinstance(k.get("name"), str):
            out.add(k["name"])
    return out


def surface_verdict(info: CampaignInfo, row: TrialRow, a: Analysis,
                    parent_files: dict[str, str] | None) -> tuple[bool | None, list[str]]:
    """(inside the surface? None when it cannot be told, reasons)."""
    surfaces = info.config.get("surfaces")
    notes: list[str] = []
    evaluator_files = set(info.config.get("evaluator_files") or [])
    touched_eval = sorted(set(a.files) & evaluator_files)
    if touched_eval:
        notes.append(f"touches evaluator-owned {', '.join(touched_eval)}")
    if not isinstance(surfaces, dict) or not surfaces:
        return (False if touched_eval else None), notes + ["the campaign declares no surfaces"]
    decl = surfaces.get(row.surface)
    if not isinstance(decl, dict):
        return (False if touched_eval else None), notes + [f"surface {row.surface!r} is not declared"]
    allowed = set(decl.get("files") or [])
    if allowed:
        outside = sorted(f for f in a.files if f not in allowed)
        if outside:
            notes.append(f"touches {', '.join(outside)} outside the surface's files")
    own = _surface_knobs(decl)
    others = set()
    for name, d in surfaces.items():
        if name != row.surface and isinstance(d, dict):
            others |= _surface_knobs(d)
    foreign = sorted(k for k in a.knobs if k in others and k not in own)
    if foreign:
        notes.append(f"changes knob(s) {', '.join(foreign)} owned by another surface")
    wanted = set(decl.get("regions") or [])
    unknown = False
    if wanted:
        if parent_files is None or a.new_files is None:
            unknown = True
            notes.append("regions not checked: the parent's code is not in the artifact store")
        else:
            for path in a.files:
                old, new = parent_files.get(path, ""), a.new_files.get(path, "")
                ro = [r for r in regions(old) if r[2] in wanted]
                rn = [r for r in regions(new) if r[2] in wanted]
                ko, kn = knob_lines(old), knob_lines(new)
                bad = [ln for ln in a.removed.get(path, []) if not any(s <= ln <= e for s, e, _ in ro)
                       and ko.get(ln) not in own]
                bad += [ln for ln in a.added.get(path, []) if not any(s <= ln <= e for s, e, _ in rn)
                        and kn.get(ln) not in own]
                if bad:
                    notes.append(f"{path}: {len(bad)} changed line(s) outside regions {', '.join(sorted(wanted))}")
    violated = any(not n.startswith("regions not checked") for n in notes)
    if violated:
        return False, notes
    return (None if unknown else True), notes


def _majority(values: list[tuple[int, str]]) -> tuple[str | None, list[tuple[int, str]]]:
    if not values:
        return None, []
    cnt = Counter(v for _, v in values)
    top = sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return top, [(n, v) for n, v in values if v != top]


def campaign_report(proj: Any, info: CampaignInfo, resolver: CodeResolver) -> dict[str, Any]:
    table: TrialTable = proj.trials
    cid = info.campaign_id
    rows = table.rows(cid)
    imported = [imp for imp in table.imports if imp["campaign_id"] == str(cid)]

    # submissions ----------------------------------------------------------------------------
    subs: list[dict[str, Any]] = []
    refs = contamination.refs_from_config(info.config)
    contaminated: list[dict[str, Any]] = []
    no_diff = 0
    unavailable = 0
    for r in rows:
        if r.kind == "baseline":
            continue
        if not r.diff_sha:
            no_diff += 1
            continue
        diff = resolver.diff(r.diff_sha)
        if diff is None:
            unavailable += 1
            subs.append({"number": r.number, "specialist": r.specialist, "surface": r.surface,
                         "status": r.status, "diff": "unavailable", "files": [], "functions": [], "knobs": {},
                         "edit_kind": "unknown", "inside_surface": None,
                         "surface_notes": ["the diff artifact is missing from the store"], "basis": ""})
            continue
        parent = table.trials.get(r.parent_id) if r.parent_id else None
        parent_files = resolver.files(parent) if parent is not None else None
        a = analyse(diff, parent_files)
        inside, notes = surface_verdict(info, r, a, parent_files)
        found = contamination.scan(diff, refs)
        if found:
            contaminated.append({"number": r.number, "specialist": r.specialist, "status": r.status,
                                 "findings": [str(f) for f in found]})
        subs.append({"number": r.number, "specialist": r.specialist, "surface": r.surface, "status": r.status,
                     "diff": r.diff_sha, "files": a.files, "functions": a.functions, "knobs": a.knobs,
                     "edit_kind": a.edit_kind, "inside_surface": inside, "surface_notes": notes,
                     "basis": a.basis})
    kinds = Counter(s["edit_kind"] for s in subs)
    summary = {
        "trials": sum(1 for r in rows if r.kind != "baseline"),
        "with_diff": len(subs), "without_diff": no_diff, "diff_unavailable": unavailable,
        "hyperparameter": kinds.get("hyperparameter", 0), "program": kinds.get("program", 0),
        "outside_surface": sum(1 for s in subs if s["inside_surface"] is False),
        "inside_surface": sum(1 for s in subs if s["inside_surface"] is True),
        "surface_unchecked": sum(1 for s in subs if s["inside_surface"] is None),
    }

    # evaluation drift -----------------------------------------------------------------------
    evaluated = [r for r in rows if r.evaluator or r.evaluator_sha or r.score is not None]
    drift: dict[str, Any] = {}
    for key, get in (("evaluator", lambda r: f"{r.evaluator}@{r.evaluator_sha[:12]}" if r.evaluator_sha else r.evaluator),
                     ("task_sha", lambda r: r.task_sha), ("harness_version", lambda r: r.harness_version)):
        top, odd = _majority([(r.number, get(r)) for r in evaluated])
        drift[key] = {"majority": top, "trials": [{"number": n, "value": v} for n, v in odd]}
    drift["harness_changes"] = [{"at": at, "version": v, "reason": why} for at, v, why in info.harness_history]

    # corrections, harness failures, noise ------------------------------------------------------
    # (verdicts are the campaign's decisions, not corrections: the trial table lists only the latter)
    corrections = [c for c in table.corrections if c["campaign"] == info.name]
    harness = [{"number": r.number, "status": r.status, "specialist": r.specialist,
                "hypothesis": r.hypothesis, "excerpt": r.excerpt or r.reason, "quarantined": r.quarantined}
               for r in rows if r.status in HARNESS_STATUSES]
    noise = proj[NoiseReport].get(cid)
    within = [k for k in noise["keeps"] if k["within_noise"]]
    notes: list[str] = []
    if imported:
        fmt = imported[-1]["format"]
        notes.append(
            f"Imported from a {fmt} record ({imported[-1]['source']}); it carries no diffs or code, so what each "
            "submission touched, its surface and its edit kind cannot be audited. Statuses, scores, harness "
            "failures and noise are audited below."
        )
    elif no_diff and not subs:
        notes.append("No trial in this campaign carries a diff.")
    if not noise["noise_sd"]:
        notes.append("No noise measurement or documented noise for this campaign: keeps cannot be tested "
                     "against the noise.")
    return {
        "campaign": info.name, "task": info.task, "metric": info.metric, "direction": info.direction,
        "arm": info.arm, "imported": imported[-1] if imported else None, "notes": notes,
        "submissions_summary": summary, "submissions": subs, "evaluation_drift": drift,
        "corrections": corrections, "harness_failures": harness,
        "unsandboxed": [{"number": r.number, "status": r.status, "sandbox": r.sandbox, "runner": r.runner}
                        for r in rows if r.started_at is not None and r.sandbox in ("none", "unrecorded")],
        "contamination": contaminated,
        "steering_notes": [n.to_dict() for n in info.notes],
        "noise": {"noise_sd": noise["noise_sd"], "source": noise["source"], "keeps": len(noise["keeps"]),
                  "within_noise": within,
                  "single_run_within_noise": [k for k in within if k["single_run"]]},
    }


def build_report(proj: Any, campaigns: list[str] | None = None, *, artifacts: Any | None = None,
                 ledger: str = "") -> dict[str, Any]:
    """The audit report (plain data) over ``campaigns`` (default: all, in opening order)."""
    table: TrialTable = proj.trials
    infos = sorted(table.campaigns.values(), key=lambda c: c.position)
    if campaigns:
        missing = [c for c in campaigns if table.campaign(c) is None]
        if missing:
            raise LedgerError(f"no campaign {', '.join(missing)} in this ledger")
        infos = [c for c in infos if c.name in campaigns]
    resolver = CodeResolver(table, artifacts)
    return {"ledger": ledger, "generated_at": time.time(), "events": proj.cursor,
            "campaigns": [campaign_report(proj, info, resolver) for info in infos]}


# ---------------------------------------------------------------------------------------------
# Markdown


def _md(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def render_markdown(report: dict[str, Any], *, hyp_chars: int = 90) -> str:
    out = ["# Audit report", ""]
    if report.get("ledger"):
        out.append(f"Ledger: {report['ledger']} · {report.get('events', 0)} events")
        out.append("")
    for c in report["campaigns"]:
        metric = c["metric"]
        out += [f"## Campaign {c['campaign']}", "",
                f"Task {c['task']} · metric {metric} ({Objective(c['direction']).word} is better)"
                f" · arm {c['arm']}", ""]
        for n in c["notes"]:
            out += [f"> {n}", ""]
        s = c["submissions_summary"]
        out += ["### Submissions", "",
                f"{s['trials']} trials: {s['with_diff']} with a diff, {s['without_diff']} without"
                + (f", {s['diff_unavailable']} whose diff is missing from the store" if s["diff_unavailable"] else "")
                + ".", ""]
        if c["submissions"]:
            out += [f"Hyperparameter edits: {s['hyperparameter']} · program-level edits: {s['program']} · "
                    f"outside the surface: {s['outside_surface']} · inside: {s['inside_surface']} · "
                    f"not checkable: {s['surface_unchecked']}", "",
                    "| # | specialist | status | edit | inside surface | files | functions | knobs | notes |",
                    "|---|---|---|---|---|---|---|---|---|"]
            for x in c["submissions"]:
                inside = {True: "yes", False: "**NO**", None: "?"}[x["inside_surface"]]
                knobs = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in x["knobs"].items())
                out.append(f"| {x['number']:03d} | {x['specialist']} | {x['status']} | {x['edit_kind']} | {inside} | "
                           f"{_md(', '.join(x['files']))} | {_md(', '.join(x['functions'][:8]))} | {_md(knobs)} | "
                           f"{_md('; '.join(x['surface_notes']))} |")
            out.append("")
        d = c["evaluation_drift"]
        out += ["### Evaluator, task and harness", ""]
        for key, label in (("evaluator", "evaluator"), ("task_sha", "task"), ("harness_version", "harness version")):
            odd = d[key]["trials"]
            maj = d[key]["majority"] or "not recorded"
            if odd:
                out.append(f"- **{len(odd)} trial(s) scored under a different {label}** than the majority ({maj}): "
                           + ", ".join(f"#{t['number']:03d} ({t['value'] or '—'})" for t in odd[:50])
                           + (" …" if len(odd) > 50 else ""))
            else:
                out.append(f"- every scored trial used the same {label} ({maj})")
        if len(d["harness_changes"]) > 1:
            out.append("- harness changes: " + "; ".join(
                f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(h['at']))} {h['version']} ({h['reason']})"
                for h in d["harness_changes"]))
        out.append("")
        out += ["### Corrections (relabels and quarantines)", ""]
        if c["corrections"]:
            out += ["| # | kind | from → to | actor | when | reason |", "|---|---|---|---|---|---|"]
            for x in c["corrections"]:
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(x["at"]))
                change = f"{x['from']} → {x['to']}" if x["kind"] == "relabel" else f"(was {x['from']})"
                out.append(f"| {x['number']:03d} | {x['kind']} | {change} | {x['actor']} | {when} | "
                           f"{_md(x['reason'])} |")
        else:
            out.append("None.")
        out.append("")
        hf = c["harness_failures"]
        counts = Counter(x["status"] for x in hf)
        out += [f"### Harness failures ({len(hf)}: "
                + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none") + ")", ""]
        if hf:
            out += ["| # | status | specialist | hypothesis | note |", "|---|---|---|---|---|"]
            for x in hf:
                out.append(f"| {x['number']:03d} | {x['status']} | {x['specialist']} | {_md(clip(x['hypothesis'], hyp_chars))} "
                           f"| {_md(clip(x['excerpt'] or '', 120))} |")
        out.append("")
        out += _render_sandbox(c)
        out += _render_notes(c)
        nz = c["noise"]
        out += ["### Keeps inside the noise", ""]
        if not nz["noise_sd"]:
            out.append("No noise level is known for this campaign.")
        else:
            w = nz["within_noise"]
            out.append(f"Noise: ±{fmt_score(nz['noise_sd'])} {metric} ({nz['source'] or 'unknown source'}). "
                       f"**{len(w)} of {nz['keeps']} keeps** improved by less than the noise; "
                       f"{len(nz['single_run_within_noise'])} of them rest on a single run.")
            if w:
                out += ["", f"| # | specialist | {metric} | Δ | Δ/noise | runs | hypothesis |",
                        "|---|---|---|---|---|---|---|"]
                for k in w:
                    ratio = f"{k['ratio']:.2f}" if k["ratio"] is not None else "—"
                    out.append(f"| {k['number']:03d} | {k['specialist']} | {fmt_score(k['score'])} | "
                               f"{fmt_delta(k['delta'])} | {ratio} | {k['runs']} | {_md(clip(k['hypothesis'], hyp_chars))} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _render_sandbox(c: dict[str, Any]) -> list[str]:
    out = [f"### Trials run without a sandbox ({len(c['unsandboxed'])})", ""]
    if c["unsandboxed"]:
        out += ["| # | status | sandbox | runner |", "|---|---|---|---|"]
        for x in c["unsandboxed"]:
            why = "none (--unsafe-no-sandbox)" if x["sandbox"] == "none" else "not recorded"
            out.append(f"| {x['number']:03d} | {x['status']} | {why} | {x['runner']} |")
    else:
        out.append("None: every started trial ran in a recorded sandbox.")
    out += ["", f"### Contamination ({len(c['contamination'])} diffs)", ""]
    if c["contamination"]:
        out += ["| # | specialist | status | references |", "|---|---|---|---|"]
        for x in c["contamination"]:
            out.append(f"| {x['number']:03d} | {x['specialist']} | {x['status']} | {_md('; '.join(x['findings'][:6]))} |")
    else:
        out.append("No diff references the task directory, an evaluator-owned file or held-out data.")
    return out + [""]


def _render_notes(c: dict[str, Any]) -> list[str]:
    notes = c.get("steering_notes") or []
    still = sum(1 for n in notes if n["open"])
    out = [f"### Steering notes ({len(notes)}, {still} open)", ""]
    if not notes:
        return out + ["None: nobody left the campaign a note.", ""]
    out += ["| note | to | by | when | text | closed |", "|---|---|---|---|---|---|"]
    for n in notes:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(n["at"]))
        closed = "open" if n["open"] else (
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(n['closed_at']))} by {n['closed_by']}"
            + (f": {_md(n['close_reason'])}" if n["close_reason"] else ""))
        out.append(f"| {n['number']} | {n['specialist'] or 'every specialist'} | {n['actor']} | {when} | "
                   f"{_md(n['text'])} | {closed} |")
    return out + [""]


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)
