"""Terminal output that fits: `status`, `lineage` and `show` at 80 columns on a campaign of 20 trials,
no cell cut to "…", whole hypotheses wrapped under proper tree glyphs, `--wide` for every column, and
`show --prompt` printing the exact view the proposer saw."""

from __future__ import annotations

import re

from tests.cli.conftest import World

NARROW = {"COLUMNS": "80"}


def _flat(text: str) -> str:
    """The text without tree glyphs and line breaks: what wrapped lines say, joined."""
    return " ".join(re.sub(r"^[\s│├└─]+", "", ln) for ln in text.splitlines()).replace("  ", " ")


def test_status_at_80_columns_cuts_no_cell(world20: World) -> None:
    res = world20.run("status", env=NARROW)
    assert res.exit_code == 0 and "…" not in res.output
    assert all(len(line) <= 80 for line in res.output.splitlines()), res.output
    out = res.output
    assert "toy-20250101-120000" in out and "closed" in out and "value ↓" in out
    assert "not shown at 80 columns" in out and "--wide" in out
    assert re.search(r"\b\d+ trials — ", out) and re.search(r"· 1 campaign\n", out)
    wide = world20.run("status", "--wide", env=NARROW)
    header = next(ln for ln in wide.output.splitlines() if ln.startswith("campaign "))
    for col in ("campaign", "task", "metric", "arm", "state", "trials", "keeps", "in flight", "start", "best",
                "change", "threshold", "last activity (UTC)"):
        assert col in header, col
    assert "not shown" not in wide.output and "…" not in wide.output


def test_lineage_at_80_columns_wraps_whole_hypotheses_under_tree_glyphs(world20: World) -> None:
    rows = world20.trials()
    assert len([r for r in rows if r["kind"] == "proposal"]) == 20
    res = world20.run("lineage", env=NARROW)
    assert res.exit_code == 0 and "…" not in res.output
    lines = res.output.splitlines()
    assert all(len(line) <= 80 for line in lines), [ln for ln in lines if len(ln) > 80]
    assert any(ln.lstrip("│ ").startswith("├─ #") for ln in lines)  # children before the last: ├─
    assert any(ln.lstrip("│ ").startswith("└─ #") for ln in lines)  # the last child: └─
    flat = _flat(res.output)
    for r in rows:  # every hypothesis, whole
        assert " ".join(r["hypothesis"].split()) in flat, r["number"]
    # a parent with several children: all but the last joined with ├─, the last with └─
    parent = max(rows, key=lambda r: len(r.get("children", [])))
    kids = [c["number"] for c in parent["children"]]
    glyph = {int(m.group(2)): m.group(1) for m in re.finditer(r"(├─|└─) #(\d+)", res.output)}
    assert [glyph[k] for k in kids] == ["├─"] * (len(kids) - 1) + ["└─"]


def test_show_at_80_columns_and_the_prompt_it_was_shown(world20: World) -> None:
    rows = world20.trials()
    keep = next(r for r in rows if r["status"] == "keep")
    res = world20.run("show", str(keep["number"]), env=NARROW)
    assert res.exit_code == 0
    head = res.output.split("\nDiff\n")[0]
    assert "…" not in head and all(len(line) <= 80 for line in head.splitlines())
    assert head.count("Evaluator: ") == 1 and re.search(r"Evaluator: toy@[0-9a-f]{12} · task", head)
    assert "1 attempt ·" in head and "artifact file" in head and "Reported: loss=" in head
    assert " ".join(keep["hypothesis"].split()) in " ".join(head.split())
    prompt = world20.run("show", str(keep["number"]), "--prompt")
    assert prompt.exit_code == 0 and prompt.output.startswith("# Lineage view — campaign toy-20250101-120000")
    assert "You are specialist **opt**" in prompt.output
    base = world20.run("show", "0", "--prompt")
    assert base.exit_code == 1 and "has no recorded prompt" in base.output and "Traceback" not in base.output


def test_counts_read_in_the_singular_for_one(tmp_path) -> None:
    from tests.cli.conftest import invoke

    url = f"sqlite:{tmp_path}/ledger.db"
    assert invoke("init", "--ledger", url).exit_code == 0
    tsv = tmp_path / "results.tsv"
    tsv.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                   "a1b2c3d\t0.9979\t44.0\tkeep\tbaseline\n"
                   "b2c3d4e\t0.9932\t44.2\tkeep\tincrease LR\n")
    res = invoke("import", "autoresearch", str(tsv), "--ledger", url, "--name", "one")
    assert res.exit_code == 0 and "(1 keep)" in res.output and "keeps" not in res.output
    st = invoke("status", "--ledger", url, env=NARROW).output
    assert "1 campaign\n" in st and re.search(r"one: 1 trial — ", st)
