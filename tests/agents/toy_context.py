"""A ProposalContext over hand-made trials of a two-file recipe, with no ledger: what the API
backends' tests give the model to work on. Trial 0 is the best; train.py is the editable file, its
SEED line belongs to the harness (outside the surface), evaluate.py is not editable."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger import diffs

TRAIN = """import math

LR = 0.01
STEPS = 100
SEED = 0  # owned by the harness


def train():
    return math.exp(-LR * STEPS)
"""
EVALUATE = """def score(x):
    return x
"""
BASE = {"train.py": TRAIN, "evaluate.py": EVALUATE}

@dataclass
class ToyContext:
    """A ProposalContext over three hand-made trials of a two-file recipe (no ledger)."""

    specialist: str = "opt"
    surface: str = "optimizer"
    preamble: str = "You own the optimizer: learning rate, schedule, steps."
    task_name: str = "toy"
    metric: str = "val_loss"
    direction: str = "min"
    seed: int = 0
    best: int = 0
    trials: dict[int, dict[str, str]] = field(default_factory=lambda: {
        0: dict(BASE),
        1: {**BASE, "train.py": TRAIN.replace("STEPS = 100", "STEPS = 200")},
        2: {**BASE, "train.py": TRAIN.replace("LR = 0.01", "LR = 0.05")},
    })
    queries: list[str] = field(default_factory=list)

    def lineage_text(self) -> str:
        return "LINEAGE: #0 baseline val_loss=0.37 | #1 opt STEPS=200 discard | #2 opt LR=0.05 crash"

    def query_trials(self, query: str) -> str:
        self.queries.append(query)
        return f"result of {query!r}"

    def incumbent(self) -> int:
        return self.best

    def trial_files(self, number: int) -> dict[str, str]:
        return dict(self.trials[number])

    def trial_diff(self, a: int, b: int) -> str:
        return diffs.make_diff(self.trials[a], self.trials[b])

    def editable_files(self) -> list[str]:
        return ["train.py"]

    def check_size(self, files: dict[str, str]) -> str:
        return f"ok: {sum(len(t) for t in files.values())} bytes of code, cap 16000000"

    def check_surface(self, parent: int, diff: str) -> str | None:
        code = self.trials[parent]
        seed_line = code["train.py"].splitlines().index("SEED = 0  # owned by the harness") + 1
        if seed_line in diffs.changed_lines(code, diff).get("train.py", set()):
            return f"train.py line {seed_line} (SEED) belongs to the harness"
        return None
