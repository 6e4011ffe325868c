"""Task specs (``task.toml``): the typed spec, and loading it by path or built-in name.

``load_task`` turns a task directory, a ``task.toml`` path or a built-in task name into a frozen
:class:`TaskSpec`, or raises :class:`TaskSpecError` with one message naming the file, the key path
(``surfaces.opt.knobs[2].range``) and the fix (the reading and checking of every key is
:mod:`tasks.spec_toml`). :mod:`tasks.spec_check` runs the deeper checks of ``arledger tasks check``;
:mod:`tasks.knobs` reads and rewrites knob lines and regions. The format is documented in
``tasks/SPEC.md``.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.objective import Objective
from tasks.data import DataSource

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"

KnobValue = int | float | bool | str


class TaskSpecError(ValueError):
    """A task spec is invalid. ``str(e)`` is the one-line message: file, key path, problem, fix."""

    def __init__(self, file: str | Path, key: str, problem: str, fix: str):
        self.file, self.key, self.problem, self.fix = str(file), key, problem, fix
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(f"{where}{problem}; fix: {fix}")


@dataclass(frozen=True)
class Knob:
    name: str
    file: str  # relative to the recipe dir
    type: str  # float | int | bool | choice
    range: tuple[float, float] | None = None  # float/int
    values: tuple[KnobValue, ...] | None = None  # choice
    scale: str = "linear"  # log | linear
    description: str = ""
    surface: str = ""

    def check_value(self, value: Any) -> str | None:
        """None if ``value`` is a legal setting of this knob, else what is wrong with it."""
        if self.type == "bool":
            return None if isinstance(value, bool) else f"{value!r} is not a bool"
        if self.type == "choice":
            return None if value in (self.values or ()) else f"{value!r} is not one of {list(self.values or ())}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if self.type == "int" and not isinstance(value, int):
            return f"{value!r} is not an int"
        if not math.isfinite(value):
            return f"{value!r} is not finite"
        lo, hi = self.range or (-math.inf, math.inf)
        if not lo <= value <= hi:
            return f"{value!r} is outside the range [{lo}, {hi}]"
        return None


@dataclass(frozen=True)
class Surface:
    name: str
    description: str
    files: tuple[str, ...]  # relative to the recipe dir
    regions: tuple[str, ...] = ()  # empty: the whole of each file
    knobs: tuple[Knob, ...] = ()


@dataclass(frozen=True)
class Specialist:
    name: str
    surface: str
    preamble: str


@dataclass(frozen=True)
class Patch:
    name: str
    surface: str
    file: str  # relative to the recipe dir
    find: str
    replace: str
    hypothesis: str = ""

    def apply(self, text: str) -> str:
        if text.count(self.find) != 1:
            raise ValueError(f"patch {self.name}: its find text occurs {text.count(self.find)} times in {self.file}")
        return text.replace(self.find, self.replace)


@dataclass(frozen=True)
class Commands:
    train: str
    evaluate: str
    prepare: str = ""
    estimate: str = ""  # optional: prints the projected model bytes of a candidate (preflight)


BOUNDS = ("time", "work")
WORK_UNITS = ("steps", "epochs", "tokens")


@dataclass(frozen=True)
class Budgets:
    """The budgets of one trial, and what bounds a run. ``bound = "work"``: the recipe trains the work
    it plans (``metric work_planned=N`` at the start, ``work_done=N`` at the end, in ``work_unit``),
    ``train_s`` is only a safety limit (``train_budget_overrun``), and a run that does less work than
    it planned is ``truncated``, never scored. ``bound = "time"``: ``train_s`` is the rule itself (the
    recipe may stop on the clock, as Parameter Golf's does). ``bound_declared`` is False for a spec
    written before the key existed: it is time-bounded, as before, and ``tasks check`` suggests the key."""

    preflight_s: float
    train_s: float
    eval_s: float
    bound: str = "time"  # time | work
    work_unit: str = ""  # steps | epochs | tokens (bound = "work")
    bound_declared: bool = True

    @property
    def work_bounded(self) -> bool:
        return self.bound == "work"


@dataclass(frozen=True)
class Gates:
    artifact_max_bytes: int | None = None
    accuracy_metric: str | None = None
    accuracy_min: float | None = None


@dataclass(frozen=True)
class NoisePolicy:
    min_delta: float
    seeds_per_trial: int = 1
    confirmation_runs: int = 0
    k: float = 2.0
    sd: float = 0.0
    reruns: tuple[float, ...] = ()
    baseline_reruns: int = 0  # extra runs of the baseline (other seeds) a campaign measures its noise on


@dataclass(frozen=True)
class Resources:
    gpus_per_trial: int = 0
    cpu_threads: int = 1
    memory_mb: int = 0  # per sandboxed process (RLIMIT_DATA) and its /tmp; 0: this machine's memory / slots
    max_procs: int = 1024  # processes and threads at once in one sandbox
    network: bool = False  # the recipe's sandbox shares the host's network (recorded with the trial)


EARLY_STOP_COMPARE = ("incumbent", "baseline")


@dataclass(frozen=True)
class EarlyStop:
    """``[early_stop]``: stop a proposal's run whose logged ``metric`` (a ``metric NAME=VALUE step=N``
    line) at a step >= ``after_step`` is worse than the reference run's at the same step by more than
    ``margin``; the reference is the campaign's incumbent (or its baseline) when the run starts.
    ``direction`` says which way the logged metric is better (a loss: "min")."""

    metric: str
    after_step: int = 0
    margin: float = 0.0
    compare: str = "incumbent"  # incumbent | baseline
    direction: str = "min"  # min | max

    def rule(self) -> str:
        """The rule in words, as trial reasons and the docs say it."""
        worse = "higher" if self.direction == "min" else "lower"
        return (f"stop when {self.metric} at step >= {self.after_step} is {worse} than the {self.compare}'s at "
                f"that step by more than {self.margin:g}")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""
    hint: bool = False  # a suggestion, not a failure (ok stays True)


@dataclass(frozen=True)
class TaskSpec:
    root: Path  # the task directory (absolute)
    name: str
    version: str
    description: str
    metric: str
    direction: str  # min | max
    recipe_dir: str  # as written: a path relative to root, or "{checkout}"
    recipe_root: Path | None  # the resolved recipe directory; None for a checkout not configured
    recipe_files: tuple[str, ...]
    evaluator_files: tuple[str, ...]
    stage_into_workspace: tuple[str, ...]
    artifact: str
    commands: Commands
    budgets: Budgets
    gates: Gates
    noise: NoisePolicy
    resources: Resources
    data: tuple[DataSource, ...]
    surfaces: dict[str, Surface] = field(hash=False)
    specialists: tuple[Specialist, ...] = ()
    patches: tuple[Patch, ...] = ()
    early_stop: EarlyStop | None = None  # [early_stop]: None when the task declares no rule

    @property
    def toml_path(self) -> Path:
        return self.root / "task.toml"

    @property
    def recipe_path(self) -> Path:
        """The baseline recipe directory; TaskSpecError if it is a checkout nobody configured."""
        if self.recipe_root is None:
            raise TaskSpecError(self.toml_path, "task.recipe_dir", f"the recipe is an external checkout and "
                                f"neither {checkout_env_var(self.name)} nor [task] checkout is set",
                                f"export {checkout_env_var(self.name)}=/path/to/checkout, or add "
                                f'checkout = "/path/to/checkout" under [task]')
        return self.recipe_root

    def knobs(self) -> list[Knob]:
        return [k for s in self.surfaces.values() for k in s.knobs]

    def specialist(self, name: str) -> Specialist:
        for s in self.specialists:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def objective(self) -> Objective:
        """The task's objective and keep rule, with its declared noise."""
        n = self.noise
        return Objective(self.direction, n.min_delta, n.k, n.sd, len(n.reruns), "task")

    def recipe_texts(self) -> dict[str, str]:
        """The baseline recipe files, ``{relative path: text}``."""
        return {f: (self.recipe_path / f).read_text() for f in self.recipe_files}

    def code_bytes(self) -> int:
        return sum((self.recipe_path / f).stat().st_size for f in self.recipe_files)

    def content_files(self) -> list[tuple[str, bytes]]:
        """(task-relative posix path, bytes) of the spec, every file in the recipe dir and the
        evaluator files, sorted by path."""
        out = {"task.toml": self.toml_path.read_bytes()}
        base = self.recipe_path
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base).as_posix()
            parts = p.relative_to(base).parts
            if (p.is_file() and not p.is_symlink() and "__pycache__" not in parts and ".git" not in parts
                    and not rel.endswith(".pyc")):
                out[f"{self.recipe_dir}/{rel}"] = p.read_bytes()
        for rel in self.evaluator_files:
            out[rel] = (self.root / rel).read_bytes()
        return sorted(out.items())

    def content_sha(self) -> str:
        """sha256 over the spec, the recipe dir and the evaluator files (paths + bytes). Paths are
        task-relative (a checkout's files are named ``{checkout}/...``), so the hash is the same on
        every machine."""
        return _tree_sha(self.content_files())

    def evaluator_sha(self) -> str:
        """sha256 over the evaluator files only (paths + bytes)."""
        return _tree_sha(sorted((rel, (self.root / rel).read_bytes()) for rel in self.evaluator_files))


def _tree_sha(items: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, data in items:
        name = rel.encode()
        h.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def checkout_env_var(task_name: str) -> str:
    """The environment variable that points a ``recipe_dir = "{checkout}"`` task at its checkout."""
    return "ARLEDGER_CHECKOUT_" + re.sub(r"[^A-Z0-9]", "_", task_name.upper())


def resolve_task_path(path_or_name: str | Path) -> Path:
    """The ``task.toml`` for a task directory, a ``task.toml`` path or a built-in task name."""
    p = Path(path_or_name)
    if p.is_dir():
        if not (p / "task.toml").is_file():
            raise TaskSpecError(p, "", "the directory has no task.toml", "point at a task directory holding task.toml")
        return p / "task.toml"
    if p.is_file():
        return p
    name = str(path_or_name)
    if NAME_RE.match(name):
        cand = BUILTIN_DIR / name.replace("-", "_") / "task.toml"
        if cand.is_file():
            return cand
    known = ", ".join(builtin_tasks()) or "none"
    raise TaskSpecError(name, "", "is neither a task directory, a task.toml file nor a built-in task name",
                        f"give a path to a task directory, or one of the built-in tasks: {known}")


def builtin_tasks() -> list[str]:
    """Names of the built-in tasks (``tasks/builtin/*/task.toml``), as their [task].name would be."""
    return sorted(p.parent.name.replace("_", "-") for p in BUILTIN_DIR.glob("*/task.toml"))


def load_task(path_or_name: str | Path) -> TaskSpec:
    """The validated spec; raises TaskSpecError (one message: file, key path, fix)."""
    toml_path = resolve_task_path(path_or_name).resolve()
    root = toml_path.parent
    try:
        raw = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TaskSpecError(toml_path, "", f"is not valid TOML ({e})", "fix the TOML syntax at that line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaskSpecError(toml_path, "", f"cannot be read ({e})", "check the file exists and is UTF-8") from None
    from tasks.spec_toml import build_spec

    return build_spec(toml_path, root, raw)


