"""Tasks travel through the ledger: a runner with no copy of a task serves it from the campaign's
bundle; a --task copy that differs is refused, naming both hashes; a built-in copy of another
version gives way to the ledger's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from arledger.cli import cli
from ledger import events as ev
from ledger.aggregates import Campaign, Trial
from ledger.app import Ledger
from ledger.audit import init_ledger, verify
from tasks import bundle
from tasks.spec import load_task
from tasks.submit import open_campaign, submit_trial
from tests.fleet.helpers import runner_proc, stream
from tests.tasks.runner_helpers import make_task, world_dir


@pytest.fixture
def world():
    yield from world_dir("arl-bundle-")


def test_bundle_is_deterministic_and_recorded(world: Path) -> None:
    a = load_task(make_task(world / "a", name="friedman"))
    b = load_task(make_task(world / "b", name="friedman"))
    assert bundle.build(a).sha == bundle.build(b).sha  # same content, other folder
    assert set(bundle.build(a).files) == {"task.toml", "recipe/train.py", "evaluator/evaluate.py",
                                          "evaluator/common.py", "prepare.py"}
    led, _, _ = init_ledger(f"sqlite:{world}/l/ledger.db")
    try:
        camp = open_campaign(led, a, "c", actor="human:t")
        assert camp.opened is not None and camp.opened.task_bundle_sha == bundle.build(a).sha
        spec = bundle.materialise(led, camp.opened.task_bundle_sha, world / "cache", want_task_sha=a.content_sha())
        assert spec.content_sha() == a.content_sha() and spec.root == world / "cache" / camp.opened.task_bundle_sha
        assert verify(led).ok  # the bundle is an artifact an event names
    finally:
        led.close()


def test_runner_without_a_copy_serves_the_campaign_task_from_the_ledger(world: Path) -> None:
    task = make_task(world / "elsewhere" / "friedman", name="friedman")
    spec = load_task(task)
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        sub = submit_trial(led, spec, campaign="c", diff="", hypothesis="baseline", actor="human:t")
        assert sub.passed
    finally:
        led.close()
    sha = bundle.build(spec).sha
    shutil.rmtree(world / "elsewhere")  # the task exists nowhere on disk now
    log = world / "runner.log"
    p = runner_proc(world / "host-b", url, "--once", "--lease", "5", log=log)
    assert p.wait(timeout=300) == 0, log.read_text()
    text = log.read_text()
    assert "serving task friedman from the ledger" in text, text
    labels = [e for e in stream(url, sub.trial_id) if isinstance(e, ev.OutcomeLabelled)]
    assert [x.status for x in labels] == ["scored"], text
    assert labels[0].score == pytest.approx(1.0)
    cached = list((world / "host-b" / "work" / "tasks").iterdir())
    assert [c.name for c in cached] == [sha]  # cached by bundle hash


def test_a_different_local_copy_is_refused_naming_both_hashes(world: Path) -> None:
    spec = load_task(make_task(world / "orig", name="friedman"))
    other = make_task(world / "other", name="friedman")
    ev_py = other / "evaluator" / "evaluate.py"
    ev_py.write_text(ev_py.read_text() + "\n# a different evaluator\n")
    url = f"sqlite:{world}/ledger/ledger.db"
    led, _, _ = init_ledger(url)
    try:
        sub = submit_trial(led, spec, campaign="c", diff="", hypothesis="baseline", actor="human:t")
    finally:
        led.close()
    res = CliRunner().invoke(cli, ["runner", "--ledger", url, "--task", str(other), "--once", "--work-root",
                                   str(world / "work")], env={"COLUMNS": "400"}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    mine, theirs = load_task(other).content_sha(), spec.content_sha()
    assert f"--task {other} is not the task campaign c runs" in res.output
    assert mine[:12] in res.output and theirs[:12] in res.output and "fix:" in res.output
    assert "Traceback" not in res.output
    with Ledger.open(url) as led2:  # the trial is left as it was: not claimed, not labelled
        assert led2.load(Trial, sub.trial_id).phase == "queued"


def test_a_builtin_copy_of_another_version_gives_way_to_the_ledgers(world: Path) -> None:
    theirs = world / "golf-mini-v2"
    shutil.copytree(load_task("golf-mini").root, theirs, ignore=shutil.ignore_patterns("__pycache__"))
    (theirs / "evaluator" / "evaluate.py").write_text((theirs / "evaluator" / "evaluate.py").read_text() + "\n#v2\n")
    spec = load_task(theirs)
    led, _, _ = init_ledger(f"sqlite:{world}/l/ledger.db")
    try:
        camp = open_campaign(led, spec, "c", actor="human:t")
        got = bundle.resolve(led, camp, local=[], builtin=load_task("golf-mini"), root=world / "cache")
        assert got.root.parent == world / "cache" and got.content_sha() == spec.content_sha()
        same = open_campaign(led, load_task("golf-mini"), "c2", actor="human:t")
        assert bundle.resolve(led, same, local=[], builtin=load_task("golf-mini"), root=world / "cache").root == \
            load_task("golf-mini").root  # the built-in copy, when it is the campaign's
        old = led.load(Campaign, camp.id)
        old.task_bundle_sha = None  # as a campaign opened before bundles reads
        with pytest.raises(bundle.TaskRefused, match="recorded no task bundle"):
            bundle.resolve(led, old, local=[], builtin=None, root=world / "cache")
    finally:
        led.close()
