"""Import a task's evaluator-owned modules in tests without clashes between tasks.

Every task's evaluator has modules named ``evaluate``, ``model``...; importing them by name through
``sys.path`` would hand one task's module to another's tests. This loads them fresh from the given
directory and takes them out of ``sys.modules`` again, restoring whatever was there."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def load(eval_dir: Path | str, name: str) -> ModuleType:
    eval_dir = Path(eval_dir)
    local = {p.stem for p in eval_dir.glob("*.py")}
    saved = {n: sys.modules.pop(n) for n in local if n in sys.modules}
    sys.path.insert(0, str(eval_dir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(eval_dir))
        for n in local:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
