"""Figures for the paper export (matplotlib, Agg backend; each saved as PNG and PDF).

* ``progress``   — best-so-far curve over trial index; every scored trial scattered by status,
  and below it a strip with one mark per trial (scored or not) in its status row.
* ``specialists`` — outcome breakdown per specialist, stacked horizontal bars.
* ``lineage``    — the lineage tree of keeps: each keep at (trial number, score), joined to the
  keep (or baseline) it descends from; the chain to the best drawn bold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ledger import events as ev  # noqa: E402

STATUS_COLORS = {
    "keep": "#2ca02c", "discard": "#9e9e9e", "baseline": "#000000", "crash": "#d62728",
    "preflight_crash": "#ff9896", "size_blocked": "#ff7f0e", "train_budget_overrun": "#bcbd22",
    "eval_budget_overrun": "#e7ba52", "disqualified": "#9467bd", "oom": "#8c564b", "diverged": "#e377c2",
    "illegal_edit": "#17becf", "duplicate": "#c5b0d5", "runner_lost": "#7f7f7f", "cancelled": "#c7c7c7",
    "harness_abort": "#1f77b4", "(pending)": "#dddddd", "candidate": "#98df8a", "scored": "#aec7e8",
    "confirmation": "#6b8e23", "rerun": "#6b6ecf", "truncated": "#dbdb8d", "stopped_early": "#ad494a",
}
STATUS_ORDER = ["baseline", "keep", "candidate", "confirmation", "rerun",
                *[s for s in ev.STATUSES if s not in ("baseline", "keep")], "(pending)"]


def category(row: Any) -> str:
    """How a trial is drawn: re-measures (baseline, confirmation, rerun) apart from proposals' outcomes."""
    if row.status is None:
        return "(pending)"
    if row.kind in ("baseline", "confirmation", "rerun") and row.label in ev.VALID_SCORED:
        return row.kind
    return row.status


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=150 if ext == "png" else None, bbox_inches="tight",
                    metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        paths.append(p)
    plt.close(fig)
    return paths


def _metric_label(info: Any) -> str:
    return f"{info.metric} ({info.objective.word} is better)"


def progress(proj: Any, info: Any, out: Path, stem: str) -> list[Path]:
    rows = proj.trials.rows(info.campaign_id)
    statuses = [category(r) for r in rows]
    present = [s for s in STATUS_ORDER if s in set(statuses)]
    fig, (ax, strip) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3.2, max(1.0, 0.22 * len(present))],
                                                 "hspace": 0.06})
    scored = [r for r in rows if r.score is not None]
    off_scale = 0
    if scored:
        ys = np.array([r.score for r in scored], dtype=float)
        best_val = min(ys, key=info.objective.sort_key)
        base = proj.trials.baseline(info.campaign_id)
        ref = base.score if base is not None and base.score is not None else float(np.median(ys))
        # robust y-range: from the best to a little past the baseline / the bulk of the scores
        spread = abs(ref - best_val) or (abs(ref) * 0.01 or 1.0)
        q = np.quantile(ys, 0.90 if info.direction == "min" else 0.10)
        if info.direction == "min":
            lo, hi = best_val - 0.12 * spread, max(ref + 0.35 * spread, min(q, ref + 1.5 * spread))
        else:
            lo, hi = min(ref - 0.35 * spread, max(q, ref - 1.5 * spread)), best_val + 0.12 * spread
        for s in present:
            pts = [r for r in scored if category(r) == s]
            if not pts:
                continue
            x = np.array([r.number for r in pts])
            y = np.array([r.score for r in pts], dtype=float)
            inside = (y >= lo) & (y <= hi)
            big = s in ("keep", "baseline")
            ax.scatter(x[inside], y[inside], s=28 if big else 10, c=STATUS_COLORS.get(s, "#555555"),
                       alpha=0.95 if big else 0.55, zorder=3 if big else 2, edgecolors="none")
            over = ~inside
            off_scale += int(over.sum())
            if over.any():  # off-scale scores: a marker on the edge
                edge = np.where(y[over] > hi, hi, lo)
                ax.scatter(x[over], edge, marker="^" if info.direction == "min" else "v", s=14,
                           c=STATUS_COLORS.get(s, "#555555"), alpha=0.6, zorder=2, clip_on=False)
        # best so far: the confirmed incumbent (each promotion's mean), never a single unconfirmed run
        if info.promotions:
            xs = [p.number for p in info.promotions] + [rows[-1].number]
            bs = [p.score for p in info.promotions] + [info.promotions[-1].score]
            ax.step(xs, bs, where="post", color=STATUS_COLORS["keep"], lw=1.8, zorder=4, label="best so far")
        ax.set_ylim(lo, hi)
    ax.set_ylabel(_metric_label(info))
    ax.grid(True, alpha=0.25)
    title = info.config.get("title") or info.name
    n = sum(1 for r in rows if r.kind != "baseline")
    ax.set_title(f"{title} — {n} trials, {sum(1 for s in statuses if s == 'keep')} keeps", fontsize=11)
    # the strip: every trial, one row per status
    for i, s in enumerate(present):
        x = [r.number for r, st in zip(rows, statuses, strict=True) if st == s]
        strip.scatter(x, [i] * len(x), marker="|", s=40, c=STATUS_COLORS.get(s, "#555555"), lw=1.0)
    strip.set_yticks(range(len(present)))
    strip.set_yticklabels(present, fontsize=7)
    strip.set_ylim(-0.7, len(present) - 0.3)
    strip.invert_yaxis()
    strip.set_xlabel("trial number")
    strip.grid(True, axis="x", alpha=0.25)
    counts = {s: statuses.count(s) for s in present}
    handles = [Line2D([], [], color=STATUS_COLORS["keep"], lw=1.8, label="best so far")]
    handles += [Line2D([], [], marker="o", ls="", color=STATUS_COLORS.get(s, "#555555"), label=f"{s} ({counts[s]})")
                for s in present]
    if off_scale:
        handles.append(Line2D([], [], marker="^" if info.direction == "min" else "v", ls="", color="#777777",
                              label=f"off the scale ({off_scale})"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    return _save(fig, out, stem)


def specialists(proj: Any, info: Any, out: Path, stem: str) -> list[Path]:
    prof = proj.specialists.table_for(info.campaign_id)
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(prof), 3) + 1.6))
    present = [s for s in STATUS_ORDER if any(p["statuses"].get(s) for p in prof)]
    names = [p["specialist"] for p in prof]
    left = np.zeros(len(prof))
    for s in present:
        vals = np.array([p["statuses"].get(s, 0) for p in prof], dtype=float)
        ax.barh(names, vals, left=left, color=STATUS_COLORS.get(s, "#555555"), label=s, edgecolor="white", lw=0.4)
        left += vals
    for i, p in enumerate(prof):
        ax.text(left[i] + max(left.max(), 1) * 0.01, i, f"{p['trials']} · {p['keeps']} keep", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("trials")
    ax.set_xlim(0, max(left.max(), 1) * 1.15)
    ax.set_title(f"{info.config.get('title') or info.name} — outcomes per specialist", fontsize=11)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    ax.grid(True, axis="x", alpha=0.25)
    return _save(fig, out, stem)


def lineage(proj: Any, info: Any, out: Path, stem: str) -> list[Path]:
    table, tree, board = proj.trials, proj.lineage, proj.leaderboard
    cid = info.campaign_id
    keeps = sorted(board.ranked(cid), key=lambda r: r.number)
    base = table.baseline(cid)
    nodes = ([base] if base is not None and base.score is not None else []) + keeps
    keep_ids = {r.trial_id for r in nodes}
    best = board.best(cid)
    chain = {r.trial_id for r in tree.chain(cid, best.number)} if best is not None else set()
    specs = sorted({r.specialist for r in keeps})
    cmap = plt.get_cmap("tab20")
    colors = {s: cmap(i % 20) for i, s in enumerate(specs)}
    fig, ax = plt.subplots(figsize=(11, 6))
    for r in keeps:  # edge to the nearest kept ancestor
        p = table.trials.get(r.parent_id) if r.parent_id else None
        while p is not None and p.trial_id not in keep_ids:
            p = table.trials.get(p.parent_id) if p.parent_id else None
        if p is None or p.score is None:
            continue
        on_chain = r.trial_id in chain and p.trial_id in chain
        ax.plot([p.number, r.number], [p.score, r.score], color="#333333" if on_chain else "#bbbbbb",
                lw=2.0 if on_chain else 0.9, zorder=1)
    for r in nodes:
        c = "#000000" if r.kind == "baseline" else colors[r.specialist]
        ax.scatter([r.number], [r.score], s=70 if r.trial_id in chain else 36, color=c, zorder=3,
                   edgecolors="black" if r is best else "white", linewidths=1.6 if r is best else 0.5)
    _label_points(ax, [(r.number, r.score, str(r.number)) for r in nodes])
    handles = [Line2D([], [], marker="o", ls="", color=colors[s], label=s) for s in specs]
    if base is not None:
        handles.insert(0, Line2D([], [], marker="o", ls="", color="#000000", label="baseline"))
    handles.append(Line2D([], [], color="#333333", lw=2.0, label="chain to the best"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    ax.set_xlabel("trial number")
    ax.set_ylabel(_metric_label(info))
    ax.grid(True, alpha=0.25)
    ax.set_title(f"{info.config.get('title') or info.name} — lineage of the {len(keeps)} keeps", fontsize=11)
    return _save(fig, out, stem)


def _label_points(ax: Any, points: list[tuple[float, float, str]], fontsize: float = 6.5) -> None:
    """Label points without overlapping: each label takes the first of a few offsets whose box
    clears the labels and points placed so far (greedy, in display coordinates)."""
    ax.autoscale_view()
    fig = ax.figure
    fig.canvas.draw()
    scale = fig.dpi / 72.0
    trans = ax.transData
    pts = [trans.transform((x, y)) for x, y, _ in points]
    taken: list[tuple[float, float, float, float]] = [(px - 4 * scale, py - 4 * scale, px + 4 * scale, py + 4 * scale)
                                                      for px, py in pts]
    offsets = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 11), (4, -18), (-4, 11), (-4, -18), (10, -4), (-10, -4)]

    def clear(box: tuple[float, float, float, float]) -> bool:
        return all(box[2] <= t[0] or box[0] >= t[2] or box[3] <= t[1] or box[1] >= t[3] for t in taken)

    for (x, y, text), (px, py) in zip(points, pts, strict=True):
        w, h = 0.62 * fontsize * len(text) * scale, 0.9 * fontsize * scale
        for dx, dy in offsets:
            x0 = px + dx * scale if dx >= 0 else px + dx * scale - w
            box = (x0, py + dy * scale, x0 + w, py + dy * scale + h)
            if clear(box):
                break
        else:
            dx, dy = offsets[0]
            x0 = px + dx * scale
            box = (x0, py + dy * scale, x0 + w, py + dy * scale + h)
        taken.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                    ha="left" if dx >= 0 else "right", va="bottom", color="#222222")


def file_stem(campaign: str) -> str:
    """The stem of a campaign's figure files (``<stem>_progress.png`` ...)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in campaign)


def all_figures(proj: Any, info: Any, out: Path) -> list[Path]:
    safe = file_stem(info.name)
    paths: list[Path] = []
    paths += progress(proj, info, out, f"{safe}_progress")
    paths += specialists(proj, info, out, f"{safe}_specialists")
    paths += lineage(proj, info, out, f"{safe}_lineage")
    return paths
