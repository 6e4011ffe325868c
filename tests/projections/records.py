"""Where the released CMU records (arXiv 2605.05724) are: ``../shared/data/cmu-release`` from the
repository root, or the folder named by ``ARLEDGER_CMU_RELEASE``, else the tests' copy. Each run is a folder holding
results.tsv, tree.tsv and best.json (release_artifacts/<run>/blackboard/ of cxcscmu/Auto-Research-Recipes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "cmu-release"
"""The released runs kept with the tests, unchanged (see its README): a clone anywhere has them."""
_SHARED = REPO.parent / "shared" / "data" / "cmu-release"
CMU = Path(os.environ.get("ARLEDGER_CMU_RELEASE") or (_SHARED if (_SHARED / "pg_main").is_dir() else FIXTURES))


def records_present() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not CMU.is_dir(), reason=f"the CMU release records are not on this machine ({CMU})")



def run_dir(name: str) -> Path:
    """The folder of one released run (the shared folder's, else the tests' copy); skips, naming it,
    when neither holds it."""
    d = CMU / name
    if not (d / "tree.tsv").is_file() and (FIXTURES / name / "tree.tsv").is_file():
        d = FIXTURES / name
    if not (d / "tree.tsv").is_file():
        pytest.skip(f"{d} is absent: copy release_artifacts/{name}/blackboard/ of cxcscmu/Auto-Research-Recipes "
                    f"there (or point ARLEDGER_CMU_RELEASE at a copy that has it)")
    return d
