"""What one specialist sees for one proposal: the :class:`Context` a backend is handed.

A context is a snapshot taken when the proposal is asked for — the rendered lineage view, the trial
rows (filtered by the arm: under ``no-lineage`` only the baseline and the incumbent), the incumbent
— plus read access to any listed trial's code through the campaign's code cache. It is safe to use
from the worker thread the proposal is written in.
"""

from __future__ import annotations

from collections.abc import Callable

from ledger import diffs
from ledger.objective import Objective
from projections.records import TrialRow
from tasks import preflight
from tasks.spec import TaskSpec


class Context:
    def __init__(self, *, specialist: str, surface: str, preamble: str, task: TaskSpec, arm: str,
                 objective: Objective, seed: int, rows: list[TrialRow], lineage: str, incumbent: int,
                 files_of: Callable[[int], dict[str, str]]):
        self.specialist = specialist
        self.surface = surface  # a surface of the task, or "*" for a generalist
        self.preamble = preamble
        self.task = task
        self.task_name = task.name
        self.metric = task.metric
        self.arm = arm
        self.objective = objective
        self.seed = seed
        self._rows = rows
        self._lineage = lineage
        self._incumbent = incumbent
        self._files_of = files_of

    @property
    def direction(self) -> str:
        return self.objective.direction

    def lineage_text(self) -> str:
        return self._lineage

    def trials(self) -> list[TrialRow]:
        return list(self._rows)

    def incumbent(self) -> int:
        return self._incumbent

    def trial_files(self, number: int) -> dict[str, str]:
        return self._files_of(number)

    def trial_diff(self, a: int, b: int) -> str:
        return diffs.make_diff(self.trial_files(a), self.trial_files(b))

    def editable_files(self) -> list[str]:
        s = self.task.surfaces.get(self.surface)
        return list(s.files) if s else list(self.task.recipe_files)

    def check_size(self, files: dict[str, str]) -> str:
        cap = self.task.gates.artifact_max_bytes
        code = sum(len(files[f].encode()) for f in self.task.recipe_files if f in files)
        if cap is None:
            return f"code is {code} bytes; this task has no artifact cap"
        verdict = "fits" if code < cap else "DOES NOT FIT"
        return (f"code is {code} bytes of the {cap}-byte cap ({verdict}); the compressed model must fit in the "
                f"remaining {max(cap - code, 0)} bytes")

    def check_surface(self, parent: int, diff: str) -> str | None:
        """None when the diff applies and stays inside the specialist's surface; else why not."""
        return preflight.check_edit(self.task, self.trial_files(parent), diff,
                                    surface=None if self.surface == "*" else self.surface)

    def query_trials(self, query: str) -> str:
        return query_rows(self._rows, query, self.objective)


def query_rows(rows: list[TrialRow], query: str, objective: Objective) -> str:
    """A small query language over the trial table: 'trial N', 'children N', 'chain N', 'status S',
    'specialist S', 'best K' (the K best scored trials), or free text searched in hypotheses."""
    words = query.strip().split()
    by_num = {r.number: r for r in rows}
    sel: list[TrialRow]
    if len(words) == 2 and words[0] == "children" and words[1].isdigit():
        sel = [r for r in rows if r.parent == int(words[1])]
    elif len(words) == 2 and words[0] == "chain" and words[1].isdigit():
        sel, n = [], int(words[1])
        while n in by_num:
            sel.append(by_num[n])
            n = by_num[n].parent if by_num[n].parent is not None else -1
        sel.reverse()
    elif len(words) == 2 and words[0] == "trial" and words[1].lstrip("#").isdigit():
        sel = [r for r in rows if r.number == int(words[1].lstrip("#"))]
    elif len(words) == 2 and words[0] == "status":
        sel = [r for r in rows if r.status == words[1] or r.state == words[1]]
    elif len(words) == 2 and words[0] == "specialist":
        sel = [r for r in rows if r.specialist == words[1]]
    elif len(words) == 2 and words[0] == "best" and words[1].isdigit():
        scored = [r for r in rows if r.scored and r.score is not None]
        sel = sorted(scored, key=lambda r: objective.sort_key(r.score or 0.0))[: int(words[1])]
    else:
        q = query.lower()
        sel = [r for r in rows if q in r.hypothesis.lower()]
    if not sel:
        return "no trials match"
    out = []
    for r in sel[:60]:
        score = f"{r.score:.6g}" if r.score is not None else "-"
        out.append(f"#{r.number} parent={r.parent} {r.specialist} {r.state} score={score} "
                   f"{r.hypothesis[:120]}" + (f" [{r.excerpt[:100]}]" if r.excerpt else ""))
    return "\n".join(out)
