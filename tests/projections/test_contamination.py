"""Contamination: diffs that reference the task directory, evaluator-owned files or held-out data."""

from __future__ import annotations

from ledger import diffs
from projections.contamination import Refs, refs_from_config, scan

BASE = {"train.py": "import os\nfrom common import FORMAT\n\nVALUE = 1.0\n"}
REFS = Refs(task_dir="/tmp/arl-x/task", evaluator_files=("evaluator/data.py", "evaluator/evaluate.py"))


def _scan(new: str, refs: Refs = REFS) -> list[str]:
    return [f.kind for f in scan(diffs.make_diff(BASE, {"train.py": new}), refs)]


def test_a_plain_edit_is_clean() -> None:
    assert _scan(BASE["train.py"].replace("VALUE = 1.0", "VALUE = 0.5")) == []


def test_the_issue_example_importing_the_tasks_evaluator_data_is_flagged() -> None:
    new = BASE["train.py"] + 'import sys\nsys.path.insert(0, "/tmp/arl-x/task/evaluator")\nfrom data import load_val\n'
    assert _scan(new) == ["task directory", "evaluator-owned file"]


def test_evaluator_paths_held_out_names_and_climbing_out_of_the_train_split() -> None:
    assert _scan(BASE["train.py"] + 'open("evaluator/evaluate.py").read()\n') == ["evaluator-owned file"]
    assert _scan(BASE["train.py"] + 'p = "data/heldout/secret.txt"\n') == ["held-out data"]
    assert _scan(BASE["train.py"] + 'p = Path(os.environ["ARLEDGER_DATA"]).parent / "x"\n') == ["held-out data"]
    assert _scan(BASE["train.py"] + 'p = os.environ["ARLEDGER_DATA"] + "/../x"\n') == ["held-out data"]
    # a built-in task is also found by its package path
    builtin = Refs(task_dir="/work/x/tasks/builtin/golf_mini")
    assert _scan(BASE["train.py"] + "import tasks.builtin.golf_mini.prepare\n", builtin) == ["task directory"]


def test_staged_evaluator_files_are_allowed_and_removed_lines_do_not_count() -> None:
    refs = refs_from_config({"task_path": "/t", "evaluator_files": ["evaluator/common.py", "evaluator/data.py"],
                             "stage_into_workspace": ["evaluator/common.py"]})
    assert refs.evaluator_files == ("evaluator/data.py",)
    assert _scan(BASE["train.py"] + "from common import OTHER\n", refs) == []
    dirty = {"train.py": BASE["train.py"] + "import data\n"}
    assert [f.kind for f in scan(diffs.make_diff(dirty, BASE), refs)] == []  # removing it is fine
    found = scan(diffs.make_diff(BASE, dirty), refs)
    assert [(f.path, f.line, f.kind) for f in found] == [("train.py", 5, "evaluator-owned file")]
    assert "train.py:5" in str(found[0])


def test_a_diff_that_does_not_parse_has_no_findings() -> None:
    assert scan("not a diff at all", REFS) == []
