"""Contamination: recipe diffs that reach for what only the evaluator may see.

``scan(diff, refs)`` reads the lines a diff adds and flags every one that references

* the **task directory** — its absolute path, or its package path (``tasks/builtin/golf_mini``,
  ``tasks.builtin.golf_mini``): the evaluator's code and data preparation live there;
* an **evaluator-owned file** the recipe is not given — its path (``evaluator/data.py``) or an
  import of it by module name (``from data import ...``); the files staged into the workspace for
  the recipe (``stage_into_workspace``) are allowed;
* **held-out data** — a held-out name (``heldout``, ``held_out``, ``held-out``; words like
  ``val`` or ``test`` are too common to flag) or a path built upward from the train split
  (``$ARLEDGER_DATA/..``, ``Path(os.environ["ARLEDGER_DATA"]).parent``).

The sandbox stops such reads at run time; this makes the attempt visible in the audit, whatever
its outcome. A pure function of the diff and the campaign's configuration.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ledger import diffs

HELDOUT = re.compile(r"held[-_ ]?out", re.I)
ABOVE_TRAIN = re.compile(r"ARLEDGER_DATA.{0,80}?(\.parent\b|/\.\.|\bdirname\b|['\"]\.\.['\"])")


@dataclass(frozen=True)
class Refs:
    """What a campaign's recipes may not reference."""

    task_dir: str = ""
    evaluator_files: tuple[str, ...] = ()  # evaluator-owned and not staged for the recipe


@dataclass(frozen=True)
class Finding:
    path: str
    line: int  # in the new file
    kind: str  # "task directory" | "evaluator-owned file" | "held-out data"
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}:{self.line}: {self.text.strip()[:120]}"


def refs_from_config(config: dict[str, Any]) -> Refs:
    """The references to watch for, from a campaign's CampaignOpened config (``task_path``,
    ``evaluator_files``, ``stage_into_workspace``)."""
    staged = set(config.get("stage_into_workspace") or [])
    owned = tuple(sorted(str(p) for p in config.get("evaluator_files") or [] if p not in staged))
    return Refs(task_dir=str(config.get("task_path") or ""), evaluator_files=owned)


def _task_needles(task_dir: str) -> list[str]:
    if not task_dir:
        return []
    norm = posixpath.normpath(task_dir)
    out = [norm]
    parts = norm.strip("/").split("/")
    if "tasks" in parts:  # a built-in task: also its path and module name inside the package
        tail = parts[parts.index("tasks"):]
        out += ["/".join(tail), ".".join(tail)]
    return [n for n in out if len(n) > 3]


def _module_import(stem: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(from\s+{re.escape(stem)}\s+import\b|import\s+{re.escape(stem)}\b)")


def scan(diff: str, refs: Refs) -> list[Finding]:
    """Every added line of ``diff`` that references the task directory, an evaluator-owned file or
    held-out data (see the module docstring). A diff that does not parse gives no findings."""
    try:
        patches = diffs.parse(diff)
    except diffs.DiffError:
        return []
    task = _task_needles(refs.task_dir)
    owned = [(p, _module_import(posixpath.splitext(posixpath.basename(p))[0])) for p in refs.evaluator_files]
    out: list[Finding] = []
    for fp in patches:
        path = fp.new_path or fp.old_path or ""
        for h in fp.hunks:
            n = h.new_start
            for raw in h.lines:
                tag, text = raw[:1], raw[1:].rstrip("\r\n")
                if tag in ("-", "\\"):
                    continue
                if tag == "+":
                    kinds = []
                    if any(t in text for t in task):
                        kinds.append("task directory")
                    if any(p in text or imp.search(text) for p, imp in owned):
                        kinds.append("evaluator-owned file")
                    if HELDOUT.search(text) or ABOVE_TRAIN.search(text):
                        kinds.append("held-out data")
                    out += [Finding(path, n, k, text) for k in kinds]
                n += 1
    return out
