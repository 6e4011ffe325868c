"""Every run of the CMU release imports with its own metric, direction and arm, and gives the
published numbers: the release README's final bests, the paper's NanoChat-D12 CORE 0.1618 -> 0.2244
(+38.7%, CORE maximised), the lineage-on control's cross-role keeps 10 of 12. Status counts add up
to the trials, the baseline counted apart.

The runs beyond pg_main and cifar are read from the release copy (tests/projections/records.py);
a run that copy lacks is skipped, naming the folder to add.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from tests.projections.records import records_present, run_dir

pytestmark = records_present()

# run: (metric, direction, arm, trials, keeps, start, best, best trial, change %, cross-role [n, of])
RUNS = {
    "nanochat_d12": ("core_metric", "max", "lineage", 200, 5, 0.1618, 0.2244, 156, 38.69, [2, 4]),
    "pg_ablation_lineage_on": ("val_bpb", "min", "lineage", 200, 16, 1.0810, 1.073142, 176, -0.73, [10, 12]),
    "pg_ablation_lineage_off": ("val_bpb", "min", "no-lineage", 200, 3, 1.0810, 1.077413, 75, -0.33, [0, 1]),
    "pg_variant_single_agent": ("val_bpb", "min", "single", 200, 14, 1.0810, 1.075384, 171, -0.52, [0, 14]),
    "pg_variant_generic_multi": ("val_bpb", "min", "generic:10", 200, 10, 1.0810, 1.074495, 199, -0.60, [7, 9]),
}


def run(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite://{tmp_path}/ledger.db"
    run("init", "--ledger", url)
    return url


@pytest.mark.parametrize("name", list(RUNS))
def test_released_run_imports_as_published(name: str, ledger_url: str, tmp_path: Path) -> None:
    d = run_dir(name)
    metric, direction, arm, trials, keeps, start, best, best_n, change, cross = RUNS[name]
    assert f"imported {trials} trials ({keeps} keeps)" in run("import", "cmu", str(d), "--ledger", ledger_url)
    out = tmp_path / "export"
    run("export", "--out", str(out), "--no-figures", "--ledger", ledger_url)
    s = json.loads((out / "summary.json").read_text())["campaigns"][0]
    assert (s["metric"], s["direction"], s["arm"], s["trials"], s["keeps"]) == (metric, direction, arm, trials, keeps)
    assert s["start"] == pytest.approx(start) and s["best"] == pytest.approx(best) and s["best_trial"] == best_n
    assert s["rel_change_pct"] == change
    assert s["cross_role_keeps"] == cross
    with (d / "tree.tsv").open(newline="") as f:
        tree = Counter(r["status"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                       if r["exp_id"] != "000")
    assert s["status_counts"] == dict(tree) and sum(s["status_counts"].values()) == trials
    assert s["baseline_status_counts"] == {"baseline": 1}
    best_json = json.loads((d / "best.json").read_text())
    assert int(best_json["exp_id"]) == best_n and best_json[metric] == pytest.approx(best)


def test_nanochat_core_is_maximised(ledger_url: str, tmp_path: Path) -> None:
    d = run_dir("nanochat_d12")
    run("import", "cmu", str(d), "--ledger", ledger_url, "--name", "nc")
    out = tmp_path / "export"
    run("export", "--out", str(out), "--no-figures", "--ledger", ledger_url)
    tex = (out / "latex" / "headline.tex").read_text()
    assert r"NanoChat-D12 & core\_metric (higher) & 0.1618 & 0.2244 & +38.69\% & 200 & 0 & 5 \\" in tex
    status = run("status", "--ledger", ledger_url)
    assert "core_metric ↑" in status and "0.2244 (#156)" in status
    # the best keep raised CORE over the incumbent before it; the record's val_bpb comes along
    t156 = json.loads(run("show", "nc/156", "--json", "--ledger", ledger_url))
    assert t156["status"] == "keep" and t156["delta"] > 0 and t156["metrics"]["val_bpb"] > 0


def test_a_record_named_blackboard_takes_its_run_name(ledger_url: str, tmp_path: Path) -> None:
    src = run_dir("pg_ablation_lineage_off")
    d = tmp_path / "pg_ablation_lineage_off" / "blackboard"
    d.mkdir(parents=True)
    for f in ("results.tsv", "tree.tsv", "best.json"):
        (d / f).write_bytes((src / f).read_bytes())
    assert "as campaign 'pg_ablation_lineage_off'" in run("import", "cmu", str(d), "--ledger", ledger_url)
    s = json.loads(run("status", "--json", "--ledger", ledger_url))["campaigns"][0]
    assert (s["name"], s["arm"], s["trials"]) == ("pg_ablation_lineage_off", "no-lineage", 200)
