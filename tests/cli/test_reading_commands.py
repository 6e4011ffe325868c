"""`arledger status | show | diff | lineage | export | audit report | import`, on a real campaign:
each shows the same state (the campaign's verdicts), and each bad request is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import World, invoke
from tests.projections.records import CMU

ROOT = Path(__file__).resolve().parents[2]


def _keep(world: World) -> dict:
    rows = json.loads(world.run("lineage", "--json").output)
    stack, found = list(rows["tree"]), []
    while stack:
        n = stack.pop()
        if n["status"] == "keep":
            found.append(n)
        stack.extend(n.get("children", []))
    assert found, "the stand-in campaign promotes a keep"
    return found[0]


def test_status_shows_the_campaign_and_its_confirmed_result(world: World) -> None:
    res = world.run("status")
    assert res.exit_code == 0 and "c1" in res.output and "closed" in res.output
    data = json.loads(world.run("status", "--json").output)
    [c] = data["campaigns"]
    assert c["name"] == "c1" and c["state"] == "closed" and c["keeps"] >= 1
    assert c["best_runs"] == 2 and c["confirmed"]  # the keep's own run and its confirmation


def test_show_of_a_keep_shows_its_verdict_and_evidence(world: World) -> None:
    keep = _keep(world)
    res = world.run("show", str(keep["number"]))
    assert res.exit_code == 0
    out = res.output
    assert f"#{keep['number']:03d}" in out and "· keep" in out
    assert "Verdict: keep by agent:campaign" in out and "confirming" in out
    flat = " ".join(out.split())  # the evidence line wraps to the terminal
    assert "Evidence: runs #" in flat and "threshold max(min_delta" in flat and "policy noise-aware" in flat
    assert "relabelled" not in out and "corrected" not in out  # a keep is a verdict, not a correction
    d = json.loads(world.run("show", str(keep["number"]), "--json").output)
    assert d["state"] == "keep" and d["label"] == "scored" and d["verdict"]["verdict"] == "keep"
    assert len(d["verdict"]["runs"]) == 2
    conf = world.run("show", "c1/" + str(d["children"][0]) if d["children"] else "0")
    assert conf.exit_code == 0


def test_show_of_a_confirmation_run_and_of_the_baseline(world: World) -> None:
    rows = json.loads(world.run("lineage", "--json").output)
    base = rows["tree"][0]
    assert base["number"] == 0 and base["state"] == "baseline"
    out = world.run("show", "0").output
    assert "· baseline" in out and "Verdict" not in out


def test_show_and_diff_refuse_what_is_not_a_trial(world: World) -> None:
    for args, words in ((("show", "banana"), "is not a trial"), (("show", "999"), "has no trial 999"),
                        (("show", "other/1"), "no campaign 'other'"), (("diff", "0", "999"), "has no trial 999")):
        res = world.run(*args)
        assert res.exit_code != 0 and words in res.output and "Traceback" not in res.output


def test_diff_between_the_baseline_and_the_keep(world: World) -> None:
    keep = _keep(world)
    res = world.run("diff", "0", str(keep["number"]))
    assert res.exit_code == 0 and res.output.startswith("--- a/") and "VALUE" in res.output
    same = world.run("diff", "0", "0")
    assert same.exit_code == 0 and same.stdout == "" and "have the same code" in same.stderr
    d = json.loads(world.run("diff", "0", str(keep["number"]), "--json").output)
    assert d["basis"] == "code" and "VALUE" in d["diff"]


def test_lineage_as_a_tree_and_keeps_only(world: World) -> None:
    res = world.run("lineage")
    assert res.exit_code == 0 and res.output.startswith("# c1: value (lower is better)")
    assert "#000 [baseline, baseline" in res.output
    keeps = world.run("lineage", "--keeps-only").output
    assert "keeps only" in keeps and "discard" not in keeps
    sub = world.run("lineage", str(_keep(world)["number"]))
    assert sub.exit_code == 0 and "#000" in sub.output


def test_export_writes_the_paper_files(world: World, tmp_path: Path) -> None:
    out = tmp_path / "paper"
    res = world.run("export", "c1", "--out", str(out), "--no-sign")
    assert res.exit_code == 0 and "files written" in res.output
    for name in ("summary.json", "manifest.json", "latex/headline.tex", "tables/trials.csv",
                 "figures/c1_progress.png", "figures/c1_progress.pdf"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["campaigns"][0]["keeps"] >= 1
    unknown = world.run("export", "nope", "--out", str(tmp_path / "x"), "--no-sign")
    assert unknown.exit_code != 0 and "nope" in unknown.output and "Traceback" not in unknown.output


def test_audit_report_as_markdown_json_and_file(world: World, tmp_path: Path) -> None:
    md = world.run("audit", "report")
    assert md.exit_code == 0 and md.output.startswith("# Audit report") and "## Campaign c1" in md.output
    assert "### Corrections (relabels and quarantines)\n\nNone." in md.output
    data = json.loads(world.run("audit", "report", "--json").output)
    assert data["campaigns"][0]["corrections"] == []
    f = tmp_path / "audit.md"
    res = world.run("audit", "report", "--out", str(f))
    assert res.exit_code == 0 and f.read_text().startswith("# Audit report")
    denied = world.run("audit", "report", "--out", str(tmp_path / "no" / "such" / "dir" / "a.md"))
    assert denied.exit_code == 1 and "cannot write" in denied.output


def test_import_autoresearch_and_its_errors(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/ledger.db"
    assert invoke("init", "--ledger", url).exit_code == 0
    tsv = tmp_path / "results.tsv"
    tsv.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                   "a1b2c3d\t0.9979\t44.0\tkeep\tbaseline\n"
                   "b2c3d4e\t0.9932\t44.2\tkeep\tincrease LR\n"
                   "c3d4e5f\t1.0050\t44.0\tdiscard\tswitch to GeLU\n"
                   "d4e5f6g\t0.0000\t0.0\tcrash\tdouble the width (OOM)\n")
    res = invoke("import", "autoresearch", str(tsv), "--ledger", url, "--name", "ar")
    assert res.exit_code == 0 and "imported" in res.output and "'ar'" in res.output
    st = json.loads(invoke("status", "--json", "--ledger", url).output)
    assert [c["name"] for c in st["campaigns"]] == ["ar"]
    missing = invoke("import", "autoresearch", str(tmp_path / "none.tsv"), "--ledger", url)
    assert missing.exit_code == 1 and "Traceback" not in missing.output


@pytest.mark.skipif(not (CMU / "cifar").is_dir(), reason=f"the CMU release records are not at {CMU}")
def test_import_cmu_record(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path}/ledger.db"
    invoke("init", "--ledger", url)
    res = invoke("import", "cmu", str(CMU / "cifar"), "--ledger", url)
    assert res.exit_code == 0 and "imported" in res.output and "cifar" in res.output
    again = invoke("import", "cmu", str(CMU / "cifar"), "--ledger", url)
    assert again.exit_code == 1 and "Traceback" not in again.output
