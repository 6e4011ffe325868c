"""The export's index.html: self-contained, every trial in its table with its evidence, text escaped;
and in a real headless Chromium: no console errors, every trial shown, the filters and the detail
rows work, and a screenshot of it."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from projections.html_report import CampaignReport, Report, TrialEntry, render
from projections.records import CampaignInfo, TrialRow
from tests.cli.browser import chromium
from tests.cli.conftest import World


@pytest.fixture(scope="module")
def page(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("paper")
    res = world.run("export", "c1", "--out", str(out))
    assert res.exit_code == 0, res.output
    return out / "index.html"


def test_the_page_is_one_self_contained_file_with_every_trial(world: World, page: Path) -> None:
    text = page.read_text()
    manifest = json.loads((page.parent / "manifest.json").read_text())
    assert "index.html" in manifest["files"]
    assert "default-src 'none'" in text  # the page's own policy forbids every fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "a network resource"
    assert text.count("data:image/png;base64,") == 2  # progress and lineage, embedded
    trials = world.trials()
    assert text.count("<tr class=trial ") == len(trials)
    keep = next(t for t in trials if t["status"] == "keep")
    assert f"<td class=n>{keep['number']}</td>" in text and "<b>Verdict</b> keep by agent:campaign" in text
    assert "ledger verification: OK" in text and "Checkpoint (signed)" in text
    assert "<span class=add>+VALUE = " in text  # the diffs, coloured


def test_text_from_the_ledger_is_escaped() -> None:
    cid, tid = uuid.uuid4(), uuid.uuid4()
    info = CampaignInfo(campaign_id=cid, name="c<x>", metric="loss", task="t")
    row = TrialRow(campaign_id=cid, campaign="c<x>", trial_id=tid, number=1, specialist="opt\"><b>",
                   surface="opt", kind="proposal", hypothesis="</td><script>alert(1)</script>",
                   status="discard", label="scored", score=1.5)
    html = render(Report([CampaignReport(info, {"trials": 1}, [TrialEntry(row, "+<img src=x>\n", "<b>log")])],
                         {"signed": False, "size": 3, "root": "ab"}, None, "memory://", 3, 0.0))
    assert "<script>alert" not in html and "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x>" not in html and "&lt;b&gt;log" in html
    assert 'data-specialist="opt&quot;&gt;&lt;b&gt;"' in html
    assert html.count("<script>") == 1  # the page's own


def test_in_headless_chromium(world: World, page: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    trials = world.trials()
    with chromium() as d:
        d.get(page.as_uri())
        errors = [m for m in d.get_log("browser") if m["level"] in ("SEVERE", "WARNING")]
        assert errors == [], errors
        rows = d.find_elements(By.CSS_SELECTOR, "tr.trial")
        assert len(rows) == len(trials) and all(r.is_displayed() for r in rows)
        shown = [int(r.find_element(By.CSS_SELECTOR, "td").text) for r in rows]
        assert shown == [t["number"] for t in trials]
        assert not any(x.is_displayed() for x in d.find_elements(By.CSS_SELECTOR, "tr.detail"))
        # a trial's row opens its evidence: hypothesis, verdict, diff
        keep = next(t for t in trials if t["status"] == "keep")
        row = rows[shown.index(keep["number"])]
        row.click()
        detail = row.find_element(By.XPATH, "following-sibling::tr[1]")
        assert detail.is_displayed() and "Verdict keep" in detail.text and "VALUE" in detail.text
        # filters: by label, by specialist, together
        label = Select(d.find_element(By.CSS_SELECTOR, "select[data-filter=label]"))
        label.select_by_visible_text("keep")
        visible = [r for r in rows if r.is_displayed()]
        assert len(visible) == sum(t["status"] == "keep" for t in trials) >= 1
        assert "of" in d.find_element(By.CSS_SELECTOR, ".count").text
        spec = Select(d.find_element(By.CSS_SELECTOR, "select[data-filter=specialist]"))
        label.select_by_visible_text("all")
        spec.select_by_visible_text("baseline")
        assert [int(r.find_element(By.CSS_SELECTOR, "td").text) for r in rows if r.is_displayed()] == [0]
        spec.select_by_visible_text("all")
        assert all(r.is_displayed() for r in rows)
        assert [m for m in d.get_log("browser") if m["level"] == "SEVERE"] == []
        assert d.execute_script("return performance.getEntriesByType('resource')"
                                ".filter(function(e){return !e.name.startsWith('data:')}).length") == 0
        d.set_window_size(1280, min(4000, d.execute_script("return document.body.scrollHeight")))
        shot = tmp_path / "index.png"
        d.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("ARLEDGER_REPORT_SCREENSHOT"):  # keep it where a person can look at it
        shutil.copyfile(shot, os.environ["ARLEDGER_REPORT_SCREENSHOT"])
