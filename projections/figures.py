"""Figures for the paper export (matplotlib, Agg backend; each saved as PNG and PDF).

* ``progress``   — the confirmed incumbent over trial numbers (a step at each promotion, at the mean
  of the promoted trial's runs: the headline's number); every scored run by series, each with its
  own marker (keeps, candidates, confirmation runs, reruns, discards, failures with a score), and
  below it a strip of the runs with no score, one row per failure label. Integer trial ticks.
* ``specialists`` — outcome breakdown per specialist, stacked horizontal bars.
* ``lineage``    — the tree of keeps: each keep at its trial number in a lane of its own branch,
  an arrow from the keep (or baseline) it descends from, its value the mean of its runs; the
  chain from the baseline to the confirmed incumbent drawn bold.

What each plots is ``projections.figure_data`` (the export's ``summary.json`` carries it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ledger import events as ev  # noqa: E402
from projections import figure_data as fdata  # noqa: E402
from projections.headline import fmt_metric, fmt_pct, headline  # noqa: E402

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


SERIES_STYLE: dict[str, dict[str, Any]] = {  # marker, colour, size, label: each series told apart
    "baseline": {"marker": "s", "color": "#000000", "s": 46, "label": "baseline run"},
    "keep": {"marker": "*", "color": "#2ca02c", "s": 110, "label": "keep (its own run)"},
    "candidate": {"marker": "o", "color": "#98df8a", "s": 36, "label": "candidate, awaiting confirmation",
                  "edgecolors": "#2ca02c"},
    "not confirmed": {"marker": "o", "color": "none", "s": 36, "label": "candidate, not confirmed",
                      "edgecolors": "#2ca02c"},
    "discard": {"marker": "o", "color": "#9e9e9e", "s": 14, "label": "discard"},
    "confirmation": {"marker": "D", "color": "#1f77b4", "s": 26, "label": "confirmation run"},
    "rerun": {"marker": "P", "color": "#6b6ecf", "s": 30, "label": "rerun (noise)"},
    "scored": {"marker": "o", "color": "#aec7e8", "s": 14, "label": "scored, not judged yet"},
    "failed (scored)": {"marker": "x", "color": "#f4a582", "s": 12, "label": "failed a gate or budget (score shown)"},
}


def _y_range(values: list[float], ref: float, best: float, direction: str,
             start_runs: tuple[float, ...] = ()) -> tuple[float, float]:
    """From a little past the best to a little past the baseline's runs / the bulk of the scores."""
    ys = np.array(values, dtype=float)
    spread = abs(ref - best) or (abs(ref) * 0.01 or 1.0)
    pad = 0.08 * spread
    if direction == "min":
        q = float(np.quantile(ys, 0.90))
        hi = max(ref + 0.35 * spread, min(q, ref + 1.5 * spread), max(start_runs, default=ref) + pad)
        return min(best, float(ys.min())) - 0.12 * spread, hi
    q = float(np.quantile(ys, 0.10))
    lo = min(ref - 0.35 * spread, max(q, ref - 1.5 * spread), min(start_runs, default=ref) - pad)
    return lo, max(best, float(ys.max())) + 0.12 * spread


def progress(proj: Any, info: Any, out: Path, stem: str) -> list[Path]:
    """Every scored run by series (distinct markers), the confirmed incumbent as a step line that
    moves only at promotions, and a strip below with the runs that have no score (failures,
    pending), one row per label; integer trial ticks."""
    data = fdata.progress(proj.trials, info)
    h = headline(proj.trials, info)
    fail_labels = sorted({lab for _, lab in data.failures})
    strip_rows = fail_labels + (["(pending)"] if data.pending else [])
    if strip_rows:
        fig, (ax, strip) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                        gridspec_kw={"height_ratios": [3.4, max(0.8, 0.26 * len(strip_rows))],
                                                     "hspace": 0.08})
    else:  # nothing failed: no strip
        fig, ax = plt.subplots(figsize=(11, 5.2))
        strip = ax
    handles: list[Any] = []
    off_scale = 0
    all_scores = [y for pts in data.series.values() for _, y in pts]
    if all_scores and h.baseline is not None and h.best is not None:
        lo, hi = _y_range(all_scores, h.baseline.mean, h.best, info.direction, h.baseline.values)
        for name, pts in data.series.items():
            st = SERIES_STYLE[name]
            x = np.array([p[0] for p in pts])
            y = np.array([p[1] for p in pts], dtype=float)
            inside = (y >= lo) & (y <= hi)
            kw = {k: v for k, v in st.items() if k != "label"}
            if st["marker"] != "x":
                kw.setdefault("edgecolors", "none")
            big = name in ("keep", "baseline")
            ax.scatter(x[inside], y[inside], zorder=4 if big else 3, alpha=0.95 if big else 0.8, linewidths=1.0,
                       **kw)
            over = ~inside
            off_scale += int(over.sum())
            if over.any():  # off-scale scores: a small arrow on the edge
                edge = np.where(y[over] > hi, hi, lo)
                ax.scatter(x[over], edge, marker="^" if info.direction == "min" else "v", s=16, c="#777777",
                           alpha=0.7, zorder=2, clip_on=False)
            handles.append(Line2D([], [], marker=st["marker"], ls="", markersize=7 if big else 5,
                                  markerfacecolor=st["color"], markeredgecolor=st.get("edgecolors", st["color"]),
                                  color=st["color"], label=f"{st['label']} ({len(pts)})"))
        # the confirmed incumbent: steps only at promotions, each at the mean of the promoted trial's runs
        if data.incumbent:
            xs = [x for x, _ in data.incumbent] + [max(data.last, data.incumbent[-1][0])]
            ys = [v for _, v in data.incumbent] + [data.incumbent[-1][1]]
            ax.step(xs, ys, where="post", color="#2ca02c", lw=2.0, zorder=5)
            shown = h.steps[1:] if len(h.steps) <= 12 else h.steps[-1:]  # every promotion, or the last
            for st_ in shown:
                ax.annotate(f"#{st_.number}" + (f" (n={st_.runs})" if st_.runs > 1 else ""), (st_.at, st_.value),
                            textcoords="offset points", xytext=(3, 4 if info.direction == "min" else -10),
                            fontsize=7, color="#1b5e20")
            handles.insert(0, Line2D([], [], color="#2ca02c", lw=2.0,
                                     label="confirmed incumbent (mean of its runs)"))
        ax.set_ylim(lo, hi)
    if off_scale:
        handles.append(Line2D([], [], marker="^" if info.direction == "min" else "v", ls="", color="#777777",
                              label=f"off the scale ({off_scale})"))
    ax.set_ylabel(_metric_label(info))
    ax.grid(True, alpha=0.25)
    title = info.config.get("title") or info.name
    result = (f"{fmt_metric(h.start)} → {fmt_metric(h.best)} ({fmt_pct(h.pct)})" if h.confirmed
              else "no confirmed improvement")
    ax.set_title(f"{title} — {h.counts.words()}; {info.metric} {result}", fontsize=10)
    # the strip: the runs with no score to plot, one row per label
    if strip_rows:
        n_of = {lab: len(data.pending) if lab == "(pending)" else sum(1 for _, lb in data.failures if lb == lab)
                for lab in strip_rows}
        for i, lab in enumerate(strip_rows):
            x = data.pending if lab == "(pending)" else [n for n, lb in data.failures if lb == lab]
            strip.scatter(x, [i] * len(x), marker="x", s=22, c=STATUS_COLORS.get(lab, "#d62728"), lw=1.2)
        strip.set_yticks(range(len(strip_rows)))
        strip.set_yticklabels([f"{lab} ({n_of[lab]})" for lab in strip_rows], fontsize=7)
        strip.set_ylim(-0.7, len(strip_rows) - 0.3)
        strip.invert_yaxis()
    strip.set_xlabel("trial number")
    if strip is not ax:
        strip.grid(True, axis="x", alpha=0.25)
    strip.xaxis.set_major_locator(MaxNLocator(integer=True))
    strip.set_xlim(data.first - 0.6, data.last + 0.6)
    if data.failures:
        handles.append(Line2D([], [], marker="x", ls="", color="#d62728",
                              label=f"failed, no score ({len(data.failures)}; below)"))
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
    """The tree of keeps: each keep drawn at its trial number in its lane, with an arrow from the
    keep it descends from (dashed where trials that were not keeps lie between), labelled with its
    value (the mean of its runs); the chain from the baseline to the incumbent drawn bold."""
    data = fdata.lineage(proj.trials, info)
    nodes = {n.number: n for n in data.nodes}
    specs = sorted({n.specialist for n in data.nodes if n.specialist != "baseline"})
    cmap = plt.get_cmap("tab10" if len(specs) <= 10 else "tab20")
    colors = {s: cmap(i % cmap.N) for i, s in enumerate(specs)}
    colors["baseline"] = "#000000"
    lanes = 1 + max((n.lane for n in data.nodes), default=0)
    fig, ax = plt.subplots(figsize=(11, max(2.6, 1.2 + 0.55 * lanes)))
    for n in data.nodes:
        if n.parent is None or n.parent not in nodes:
            continue
        p = nodes[n.parent]
        bold = n.on_chain and p.on_chain
        style = {"color": "#333333" if bold else "#999999", "lw": 1.8 if bold else 1.0,
                 "ls": "--" if n.via else "-"}
        # an elbow: down (or up) the parent's trial column to the child's lane, then across to it
        ax.plot([p.number, p.number], [p.lane, n.lane], zorder=1, **style)
        ax.annotate("", xy=(n.number, n.lane), xytext=(p.number, n.lane), zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": style["color"], "lw": style["lw"],
                                "ls": style["ls"], "shrinkA": 0, "shrinkB": 6})
    for n in data.nodes:
        ax.scatter([n.number], [n.lane], s=90 if n.on_chain else 50, color=colors[n.specialist], zorder=3,
                   marker="s" if n.specialist == "baseline" else "o",
                   edgecolors="#d62728" if n.incumbent else "white", linewidths=2.0 if n.incumbent else 0.6)
    tips = {max((m.number for m in data.nodes if m.lane == lane), default=-1) for lane in range(lanes)}

    def text(n: fdata.Node) -> str:  # every keep by number; values at the root, the incumbent and branch tips
        if n.parent is None or n.incumbent or (n.number in tips and n.lane > 0) or len(data.nodes) <= 12:
            return f"#{n.number} {fmt_metric(n.value)}" + (f" n={n.runs}" if n.runs > 1 else "")
        return f"#{n.number}"

    labels = [(float(n.number), float(n.lane), text(n)) for n in data.nodes]
    _label_points(ax, labels)
    handles = [Line2D([], [], marker="s", ls="", color="#000000", label="baseline")]
    handles += [Line2D([], [], marker="o", ls="", color=colors[s], label=s) for s in specs]
    handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="#d62728",
                          markeredgewidth=2.0, label="confirmed incumbent"))
    handles.append(Line2D([], [], color="#333333", lw=1.8, label="chain to the incumbent"))
    if any(n.via for n in data.nodes):
        handles.append(Line2D([], [], color="#999999", lw=1.0, ls="--", label="through trials that were not keeps"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    ax.set_xlabel("trial number (each keep at the trial that proposed it; value: the mean of its runs; every "
                  "value is in summary.json)")
    ax.set_yticks(range(lanes))
    ax.set_yticklabels(["main line"] + [f"branch {i}" for i in range(1, lanes)], fontsize=7)
    ax.set_ylim(lanes - 0.5, -0.6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if data.nodes:
        lo, hi = min(nodes), max(nodes)
        pad = max(1.0, 0.04 * (hi - lo))
        ax.set_xlim(lo - pad, hi + 3 * pad)
    ax.grid(True, axis="x", alpha=0.25)
    keeps = sum(1 for n in data.nodes if n.parent is not None)
    ax.set_title(f"{info.config.get('title') or info.name} — the tree of the {keeps} keeps "
                 f"({info.metric}, {info.objective.word} is better)", fontsize=10)
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
