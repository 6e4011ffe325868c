"""A CMU record's metric and direction come from the record: a known metric name (NanoChat's CORE is
raised), else the way its keeps moved the score; a name the keeps contradict is refused, clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli

TREE = "exp_id\tparent_exp\tdepth\tpath\tspecialist\tstatus\t{m}\tdelta_vs_best\thypothesis\n"
RESULTS = ("exp_id\ttimestamp\tspecialist\tparent_exp\tbaseline_exp\tdomain\thypothesis\texpected_delta\tstatus\t{m}"
           "\tdelta_vs_best\ttrain_s\ttotal_s\tjob_name\tsnapshot_path\tnotes\n")
# (exp, parent, specialist, status, score, delta_vs_best): two keeps that raise the score, one discard
ROWS = [("000", "", "baseline", "baseline", "0.1618", ""),
        ("001", "000", "sched", "keep", "0.1700", "+0.008200"),
        ("002", "001", "arch", "discard", "0.1650", "-0.005000"),
        ("003", "001", "arch", "keep", "0.1800", "+0.010000")]


def record(tmp: Path, metric: str, rows: list[tuple[str, ...]] = ROWS, best: float | None = 0.18) -> Path:
    d = tmp / f"run_{metric}"
    d.mkdir()
    tree, res = [TREE.format(m=metric)], [RESULTS.format(m=metric)]
    for i, (n, parent, spec, status, score, delta) in enumerate(rows):
        hyp = f"hypothesis {i}: change {spec} setting number {i}"
        tree.append(f"{n}\t{parent}\t{i}\t{n}\t{spec}\t{status}\t{score}\t{delta}\t{hyp}\n")
        res.append(f"{n}\t2026-05-01T0{i}:00:00Z\t{spec}\t{parent}\t000\t{spec}\t{hyp}\t\t{status}\t{score}\t{delta}"
                   f"\t100\t120\t{spec}-{i}\t\t\n")
    (d / "tree.tsv").write_text("".join(tree))
    (d / "results.tsv").write_text("".join(res))
    if best is not None:
        (d / "best.json").write_text(json.dumps({"exp_id": rows[-1][0], metric: best}))
    return d


def imported(tmp: Path, d: Path) -> dict:
    url = f"sqlite://{tmp}/ledger.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--ledger", url]).exit_code == 0
    res = runner.invoke(cli, ["import", "cmu", str(d), "--ledger", url])
    assert res.exit_code == 0, res.output
    out = runner.invoke(cli, ["status", "--json", "--ledger", url])
    return json.loads(out.output)["campaigns"][0]


def test_core_metric_is_maximised(tmp_path: Path) -> None:
    s = imported(tmp_path, record(tmp_path, "core_metric"))
    assert (s["metric"], s["direction"], s["task"]) == ("core_metric", "max", "nanochat-d12")
    assert (s["start"], s["best"], s["best_trial"], s["rel_change_pct"]) == (0.1618, 0.18, 3, 11.25)
    assert s["cross_role_keeps"] == [1, 1]  # #3 (arch) on #1 (sched); #1's parent is the baseline
    assert s["status_counts"] == {"keep": 2, "discard": 1} and s["trials"] == 3


def test_an_unknown_metric_takes_the_direction_its_keeps_moved(tmp_path: Path) -> None:
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    down.mkdir()
    s = imported(up, record(up, "pass_rate"))
    assert (s["metric"], s["direction"], s["best"]) == ("pass_rate", "max", 0.18)
    lowered = {"0.1700": "0.1500", "0.1650": "0.1650", "0.1800": "0.1400"}
    rows = [(n, p, sp, st, lowered.get(sc, sc), d.replace("+", "-")) for n, p, sp, st, sc, d in ROWS]
    s = imported(down, record(down, "pass_rate", rows, best=0.14))
    assert (s["direction"], s["best"], s["best_trial"]) == ("min", 0.14, 3)


def test_an_unknown_metric_without_keeps_is_minimised(tmp_path: Path) -> None:
    rows = [r if r[3] != "keep" else (*r[:3], "discard", r[4], "-0.001000") for r in ROWS]
    s = imported(tmp_path, record(tmp_path, "pass_rate", rows, best=None))
    assert (s["direction"], s["best"], s["best_trial"]) == ("min", 0.1618, 0)


@pytest.mark.parametrize("metric", ["val_bpb", "train_s"])
def test_a_name_the_keeps_contradict_is_refused(tmp_path: Path, metric: str) -> None:
    url = f"sqlite://{tmp_path}/ledger.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--ledger", url]).exit_code == 0
    res = runner.invoke(cli, ["import", "cmu", str(record(tmp_path, metric)), "--ledger", url])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{metric} is lowered by a better recipe, but the record's keeps moved it the other way" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert json.loads(runner.invoke(cli, ["status", "--json", "--ledger", url]).output)["campaigns"] == []
