"""Import the released CMU records and export them through the CLI: the paper's Table 1 rows come out.

Parameter Golf: 900 trials, 36 keeps, 1.0810 -> 1.072210, -0.81%; cross-role keeps 32 of 33 (keeps
whose parent is another specialist's trial, among keeps whose parent is not the baseline).
CIFAR-10 Airbench96: 97 trials, 4 keeps, 26.3560 -> 25.1464, -4.59%.
Status counts leave the baseline out (it is counted apart), so they add up to the trials.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from arledger.cli import cli
from tests.projections.records import CMU, records_present

pytestmark = records_present()


def run(*args: str, ok: bool = True) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res.output


def tree_counts(run_dir: str) -> Counter[str]:
    """tree.tsv's statuses, the baseline row (exp 000, status baseline) left out."""
    with (CMU / run_dir / "tree.tsv").open(newline="") as f:
        return Counter(r["status"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                       if r["exp_id"] != "000")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("cmu")
    url = f"sqlite://{root}/ledger.db"
    run("init", "--ledger", url)
    assert "imported 900 trials (36 keeps)" in run("import", "cmu", str(CMU / "pg_main"), "--ledger", url)
    assert "imported 97 trials (4 keeps)" in run("import", "cmu", str(CMU / "cifar"), "--ledger", url)
    out = root / "export"
    run("export", "--out", str(out), "--ledger", url)
    return url, out


def test_summary_reproduces_table_1(exported: tuple[str, Path]) -> None:
    _url, out = exported
    s = {c["name"]: c for c in json.loads((out / "summary.json").read_text())["campaigns"]}
    pg, cf = s["pg_main"], s["cifar"]
    assert (pg["metric"], pg["direction"], pg["trials"], pg["keeps"]) == ("val_bpb", "min", 900, 36)
    assert pg["start"] == pytest.approx(1.0810) and pg["best"] == pytest.approx(1.072210)
    assert pg["rel_change_pct"] == -0.81
    assert (cf["metric"], cf["direction"], cf["trials"], cf["keeps"]) == ("train_s", "min", 97, 4)
    assert cf["start"] == pytest.approx(26.3560) and cf["best"] == pytest.approx(25.1464)
    assert cf["rel_change_pct"] == -4.59
    for name in ("pg_main", "cifar"):  # status counts as tree.tsv has them; the baseline counted apart
        assert s[name]["status_counts"] == dict(tree_counts(name))
        assert sum(s[name]["status_counts"].values()) == s[name]["trials"]
        assert "baseline" not in s[name]["status_counts"] and s[name]["baseline_status_counts"] == {"baseline": 1}
        for key in ("effective_clusters", "max_cluster_share", "near_dup_rate", "trials_per_hour"):
            assert s[name][key] is not None
    assert pg["status_counts"]["harness_abort"] == 42
    assert pg["cross_role_keeps"] == [32, 33] and cf["cross_role_keeps"] == [1, 1]
    assert pg["effective_clusters"] == pytest.approx(439.6, rel=0.05) and 0 < pg["max_cluster_share"] <= 1
    assert pg["trials_per_hour"] == pytest.approx(900 / ((1777172628 - 1776822266) / 3600), rel=1e-6)


def test_headline_latex_table(exported: tuple[str, Path]) -> None:
    tex = (exported[1] / "latex" / "headline.tex").read_text()
    assert r"Parameter Golf & val\_bpb (lower) & 1.0810 & 1.072210 & -0.81\% & 900 & 0 & 36 \\" in tex
    assert (r"CIFAR-10 Airbench96 & train\_s (lower; mean accuracy $\geq$ 0.96 gate) & 26.3560 & 25.1464 & "
            r"-4.59\% & 97 & 0 & 4 \\") in tex
    arms = (exported[1] / "latex" / "arms.tex").read_text()
    assert "lineage & pg\\_main & 900 & 36 & 1.072210 & -0.81\\% & 32/33 & " in arms


def test_tables_figures_and_manifest(exported: tuple[str, Path]) -> None:
    out = exported[1]
    trials = pq.read_table(out / "tables" / "trials.parquet")
    assert trials.num_rows == 901 + 98
    keeps = pq.read_table(out / "tables" / "keeps.parquet").to_pylist()
    assert [k["number"] for k in keeps if k["campaign"] == "pg_main"][0] == 750
    counts = list(csv.DictReader((out / "tables" / "status_counts.csv").open(newline="")))
    assert len(counts) == 7 + 5  # pg_main: 6 labels + the baseline; cifar: 4 + the baseline
    for name, trials in (("pg_main", 900), ("cifar", 97)):
        mine = [r for r in counts if r["campaign"] == name]
        assert sum(int(r["count"]) for r in mine if r["counted"] == "trials") == trials
        assert [(r["counted"], r["status"], r["count"]) for r in mine if r["counted"] != "trials"] == [
            ("baseline", "baseline", "1")]
    for name in ("pg_main", "cifar"):
        for kind in ("progress", "specialists", "lineage"):
            png = (out / "figures" / f"{name}_{kind}.png").read_bytes()
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
            assert (out / "figures" / f"{name}_{kind}.pdf").read_bytes()[:5] == b"%PDF-"
    manifest = json.loads((out / "manifest.json").read_text())
    cp = manifest["checkpoint"]
    assert cp["signed"] is True and len(cp["signature"]) == 128 and cp["size"] > 4900
    assert cp["key_id"] and cp["public_key"] and len(cp["root"]) == 64
    assert len(manifest["files"]) >= 2 * 10 + 2 + 12 + 1
    for rel, sha in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha, rel


def test_importing_twice_is_refused(exported: tuple[str, Path]) -> None:
    url = exported[0]
    res = CliRunner().invoke(cli, ["import", "cmu", str(CMU / "cifar"), "--ledger", url])
    assert res.exit_code != 0
    assert "already imported as campaign 'cifar'" in res.output and "Traceback" not in res.output


def test_audit_report_on_pg_main(exported: tuple[str, Path]) -> None:
    url = exported[0]
    rep = json.loads(run("audit", "report", "--json", "--campaign", "pg_main", "--ledger", url))
    c = rep["campaigns"][0]
    with (CMU / "pg_main" / "tree.tsv").open(newline="") as f:
        tree = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    aborts = sorted(int(r["exp_id"]) for r in tree if r["status"] == "harness_abort")
    small = sorted(int(r["exp_id"]) for r in tree if r["status"] == "keep" and abs(float(r["delta_vs_best"])) < 0.001)
    assert len(aborts) == 42 and len(small) == 35
    assert sorted(h["number"] for h in c["harness_failures"]) == aborts
    assert sorted(k["number"] for k in c["noise"]["within_noise"]) == small
    assert c["noise"]["noise_sd"] == 0.001 and c["noise"]["source"] == "imported"
    assert any("carries no diffs" in n for n in c["notes"])
    md = run("audit", "report", "--campaign", "pg_main", "--ledger", url)
    assert "### Harness failures (42: 42 harness_abort)" in md
    assert "**35 of 36 keeps** improved by less than the noise" in md
    for n in aborts:
        assert f"| {n:03d} | harness_abort |" in md


def test_reading_commands(exported: tuple[str, Path]) -> None:
    url = exported[0]
    status = json.loads(run("status", "--json", "--ledger", url))
    assert [c["name"] for c in status["campaigns"]] == ["pg_main", "cifar"]
    text = run("status", "--ledger", url)
    assert "pg_main" in text and "1.072210 (#750)" in text
    assert ("pg_main: 900 trials — 410 discard, 319 size_blocked, 55 eval_budget_overrun, 42 harness_abort, "
            "38 crash, 36 keep; plus the baseline (labelled baseline, val_bpb 1.0810)") in text
    # a row whose columns had leaked into the hypothesis is repaired
    t475 = json.loads(run("show", "pg_main/475", "--json", "--ledger", url))
    assert t475["status"] == "keep" and t475["artifact_bytes"] == 15998390
    assert t475["hypothesis"].startswith("Bifurcated q_gain [num_heads, 2]") and '"' not in t475["hypothesis"][:2]
    assert t475["chain"][:3] == [0, 5, 17]
    shown = run("show", "750", "--campaign", "pg_main", "--ledger", url)
    assert "keep" in shown and "#596" in shown
    tree = run("lineage", "--campaign", "pg_main", "--keeps-only", "--ledger", url)
    assert tree.count("keep, val_bpb=") == 36
    # a user's mistakes are one clear line
    res = CliRunner().invoke(cli, ["show", "pg_main/9999", "--ledger", url])
    assert res.exit_code != 0 and "has no trial 9999" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["diff", "1", "2", "--campaign", "pg_main", "--ledger", url])
    assert res.exit_code != 0 and "imported records carry no code" in res.output


def test_import_autoresearch(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/ledger.db"
    run("init", "--ledger", url)
    src = tmp_path / "results.tsv"
    src.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                   "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n"
                   "b2c3d4e\t0.993200\t44.2\tkeep\tincrease LR to 0.04\n"
                   "c3d4e5f\t1.005000\t44.0\tdiscard\tswitch to GeLU activation\n"
                   "d4e5f6g\t0.000000\t0.0\tcrash\tdouble the model width (OOM)\n"
                   "e5f6a7b\t0.990000\t44.1\tkeep\tlonger warmup\n")
    assert "imported 4 trials (2 keeps)" in run("import", "autoresearch", str(src), "--ledger", url, "--name", "ar")
    tree = json.loads(run("lineage", "--campaign", "ar", "--json", "--ledger", url))["tree"]
    assert tree[0]["number"] == 0 and tree[0]["status"] == "baseline"
    kids = {c["number"]: c for c in tree[0]["children"]}
    assert set(kids) == {1}  # 2, 3 and 4 descend from the keep 1
    assert sorted(c["number"] for c in kids[1]["children"]) == [2, 3, 4]
    t3 = json.loads(run("show", "ar/3", "--json", "--ledger", url))
    assert t3["status"] == "crash" and t3["score"] is None and t3["proposer"] == "importer:autoresearch"
    res = CliRunner().invoke(cli, ["import", "autoresearch", str(src), "--ledger", url, "--name", "ar2"])
    assert res.exit_code != 0 and "already imported" in res.output
