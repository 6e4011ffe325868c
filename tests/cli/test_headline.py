"""One headline everywhere: `run`'s last line, `status`, `show` of the incumbent, the export's
summary.json, headline.tex, arms.tex, the CSV tables and the figures' caption data give the same
best (the confirmed incumbent's mean) and the same change (against the baseline's mean)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from projections.headline import fmt_metric
from tests.cli.conftest import World, invoke


def test_every_output_prints_the_same_best_and_change(world: World, tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/l/ledger.db"
    ran = invoke("run", "--ledger", url, "--task", str(world.task), "--name", "h1", "--max-trials", "4",
                 "--quiet", "--seed", "1", env={"ARLEDGER_CACHE": str(world.root / "cache")})
    assert ran.exit_code == 0, ran.output
    [c] = json.loads(invoke("status", "--json", "--ledger", url).output)["campaigns"]
    assert c["confirmed"] and c["best_runs"] >= 2 and c["best_trial"] > 0
    best, start, pct = fmt_metric(c["best"]), fmt_metric(c["start"]), f"{c['rel_change_pct']:+.2f}%"
    # run's last lines: the confirmed mean, its runs, the threshold it beat; the single best run apart
    last = ran.output.strip().splitlines()[-3:]
    assert f"value {start} → {best} ({pct}): #{c['best_trial']}, mean of {c['best_runs']} runs" in last[0]
    assert f"beat threshold {c['threshold']['value']:.4g}" in last[0]
    assert "best single run: #" in last[1] and "not the result" in last[1]
    assert f"{c['counts']['proposals']} proposals, {c['counts']['confirmation_runs']} confirmation run" in last[1]
    # status (text) and show of the incumbent
    status = invoke("status", "--ledger", url, env={"COLUMNS": "200"}).output
    assert f"{best} (#{c['best_trial']}, n={c['best_runs']})" in status and pct in status
    show = invoke("show", str(c["best_trial"]), "--ledger", url, env={"COLUMNS": "200"}).output
    assert f"Result: the campaign's confirmed incumbent — value {start} → {best} ({pct})" in show
    # the export: summary.json, LaTeX, CSV, figures' caption data
    out = tmp_path / "paper"
    assert invoke("export", "--out", str(out), "--ledger", url).exit_code == 0
    [s] = json.loads((out / "summary.json").read_text())["campaigns"]
    assert (s["best"], s["start"], s["rel_change_pct"], s["best_trial"]) == (c["best"], c["start"],
                                                                            c["rel_change_pct"], c["best_trial"])
    tex = (out / "latex" / "headline.tex").read_text()
    n = c["counts"]
    assert (f"& {start} & {best} ($n={c['best_runs']}$) & {pct.replace('%', chr(92) + '%')} & {n['proposals']} & "
            f"{n['confirmation_runs'] + n['reruns']} & {n['keeps']} \\\\") in tex
    assert f"& {best} ($n={c['best_runs']}$) &" in (out / "latex" / "arms.tex").read_text()
    [row] = list(csv.DictReader((out / "tables" / "headline.csv").open(newline="")))
    assert float(row["best"]) == c["best"] and float(row["rel_change_pct"]) == c["rel_change_pct"]
    assert int(row["trials_total"]) == n["trials_total"] == n["trials"] + 1  # the baseline counted, and said so
    noise = {int(r["number"]): r for r in csv.DictReader((out / "tables" / "noise.csv").open(newline=""))}
    inc = noise[c["best_trial"]]
    assert float(inc["score"]) == c["best"]  # the score and its delta from the same number
    assert abs(float(inc["delta"]) - (float(inc["score"]) - float(inc["previous_score"]))) < 1e-12
    prog = s["figures"]["progress"]
    assert prog["incumbent"][-1]["value"] == c["best"] and prog["incumbent"][0]["value"] == c["start"]
    assert prog["promotions"][-1]["number"] == c["best_trial"]
    assert prog["points_by_series"]["confirmation"] == n["confirmation_runs"]
    lin = s["figures"]["lineage"]
    assert lin["incumbent"] == c["best_trial"] and lin["keeps"] == n["keeps"]
    assert [e for e in lin["edges"] if e[1] == c["best_trial"]]  # the incumbent has its parent edge
    page = (out / "index.html").read_text()
    assert f"{best} (#{c['best_trial']}, mean of {c['best_runs']} runs" in page
    assert re.search(r"the line is the confirmed incumbent", page)
