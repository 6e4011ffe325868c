"""Task specs (``task.toml``): load, validate, check, hash; and the knob/region helpers.

``load_task`` turns a task directory, a ``task.toml`` path or a built-in task name into a frozen
:class:`TaskSpec`, or raises :class:`TaskSpecError` with one message naming the file, the key path
(``surfaces.opt.knobs[2].range``) and the fix. ``check_task`` runs the deeper checks a user runs
before a campaign (files exist, knob values in range, recipe compiles, patches apply, size cap) and
returns one :class:`CheckResult` per check. The format is documented in ``tasks/SPEC.md``.

Knobs are module-level ``NAME = literal`` lines; ``read_knob`` / ``set_knob`` read and rewrite exactly
that line. Regions are ``# region: NAME`` ... ``# endregion`` blocks; ``regions_of`` finds them.
"""

from __future__ import annotations

import ast
import hashlib
import io
import math
import os
import posixpath
import re
import tokenize
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Budgets:
    preflight_s: float
    train_s: float
    eval_s: float


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

    def threshold(self) -> float:
        """The improvement a keep must exceed: max(min_delta, k * sd)."""
        return max(self.min_delta, self.k * self.sd)


@dataclass(frozen=True)
class Resources:
    gpus_per_trial: int = 0
    cpu_threads: int = 1
    memory_mb: int = 0  # per sandboxed process (RLIMIT_DATA) and its /tmp; 0: this machine's memory / slots
    max_procs: int = 1024  # processes and threads at once in one sandbox
    network: bool = False  # the recipe's sandbox shares the host's network (recorded with the trial)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


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

    def better(self, a: float, b: float) -> bool:
        """True if score ``a`` is better than ``b`` in this task's direction."""
        return a < b if self.direction == "min" else a > b

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


# -------------------------------------------------------------------------------------------------
# knobs and regions

_REGION_RE = re.compile(r"^\s*#\s*region:\s*(?P<name>\S+)\s*$")
_ENDREGION_RE = re.compile(r"^\s*#\s*endregion\b")


def regions_of(text: str) -> dict[str, tuple[int, int]]:
    """``{name: (start_line, end_line)}``, 1-based, the marker lines included.

    Raises ValueError (with the line number) for a nested, duplicate, unclosed or unopened region."""
    out: dict[str, tuple[int, int]] = {}
    open_name, open_line = None, 0
    for no, line in enumerate(text.splitlines(), 1):
        m = _REGION_RE.match(line)
        if m:
            if open_name is not None:
                raise ValueError(f"line {no}: region {m['name']!r} opens inside region {open_name!r} "
                                 f"(opened at line {open_line}); regions do not nest")
            if m["name"] in out:
                raise ValueError(f"line {no}: region {m['name']!r} is defined twice")
            open_name, open_line = m["name"], no
        elif _ENDREGION_RE.match(line):
            if open_name is None:
                raise ValueError(f"line {no}: '# endregion' without an open region")
            out[open_name] = (open_line, no)
            open_name = None
    if open_name is not None:
        raise ValueError(f"line {open_line}: region {open_name!r} is never closed with '# endregion'")
    return out


@dataclass(frozen=True)
class _KnobLine:
    index: int  # 0-based line index
    line: str
    start: int  # column span of the value expression
    end: int
    value: KnobValue


def _knob_name(knob: Knob | str) -> str:
    return knob.name if isinstance(knob, Knob) else knob


def _find_knob(text: str, name: str) -> _KnobLine:
    pat = re.compile(rf"^{re.escape(name)}\s*(?::[^=]*)?=(?!=)")
    lines = text.splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if pat.match(ln)]
    if not hits:
        raise KeyError(f"no module-level assignment '{name} = <literal>' found")
    if len(hits) > 1:
        raise KeyError(f"'{name}' is assigned {len(hits)} times at module level (lines "
                       f"{', '.join(str(i + 1) for i in hits)}); a knob must be assigned exactly once")
    i = hits[0]
    line = lines[i]
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.rstrip("\r\n") + "\n").readline))
    except (tokenize.TokenError, SyntaxError) as e:
        raise KeyError(f"line {i + 1} ('{line.strip()}') does not tokenize: {e}") from None
    eq = next(t for t in toks if t.type == tokenize.OP and t.string == "=")
    value_toks = [t for t in toks if t.start[1] >= eq.end[1]
                  and t.type not in (tokenize.COMMENT, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)]
    if not value_toks:
        raise KeyError(f"line {i + 1}: '{name} =' has no value")
    start, end = value_toks[0].start[1], value_toks[-1].end[1]
    src = line[start:end]
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError):
        raise KeyError(f"line {i + 1}: the value of {name} ({src}) is not a single literal") from None
    if not isinstance(value, int | float | str | bool):
        raise KeyError(f"line {i + 1}: the value of {name} ({src}) is not a number, bool or string")
    return _KnobLine(i, line, start, end, value)


def knob_line(text: str, knob: Knob | str) -> int:
    """The 1-based line number of the knob's assignment."""
    return _find_knob(text, _knob_name(knob)).index + 1


def read_knob(text: str, knob: Knob | str) -> KnobValue:
    """The current value of a module-level ``NAME = literal`` knob. KeyError if there is none."""
    return _find_knob(text, _knob_name(knob)).value


def format_value(value: KnobValue, type_: str | None = None) -> str:
    """A compact Python literal: floats in the shortest exact form (at most 6 significant digits
    when an exact short form does not exist), big ints with ``_`` separators."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int) and type_ != "float":
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"cannot write a non-finite knob value {v!r}")
    s = next((f"{v:.{p}g}" for p in range(1, 7) if float(f"{v:.{p}g}") == v), f"{v:.6g}")
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    elif "." not in s and "inf" not in s and "nan" not in s:
        s += ".0"
    return s


def set_knob(text: str, knob: Knob | str, value: KnobValue) -> str:
    """``text`` with only the knob's value rewritten (its trailing comment and spacing kept).

    With a :class:`Knob`, the value is checked against its type/range (ValueError if illegal) and
    ints given to float knobs are written as floats."""
    name = _knob_name(knob)
    type_ = None
    if isinstance(knob, Knob):
        type_ = knob.type
        if type_ == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = knob.check_value(value)
        if problem:
            raise ValueError(f"knob {name}: {problem}")
    kl = _find_knob(text, name)
    lines = text.splitlines(keepends=True)
    lines[kl.index] = kl.line[: kl.start] + format_value(value, type_) + kl.line[kl.end:]
    return "".join(lines)


# -------------------------------------------------------------------------------------------------
# loading

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class _Reader:
    """Typed access to one TOML table that reports errors with the file and key path."""

    def __init__(self, file: Path, table: Any, path: str):
        self.file, self.path = file, path
        if not isinstance(table, dict):
            self.fail("", f"must be a table, got {type(table).__name__}", f"write it as [{path}]")
        self.table: dict = table
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def fail(self, k: str, problem: str, fix: str):
        raise TaskSpecError(self.file, self.key(k) if k else self.path, problem, fix)

    def get(self, k: str, kind: str, *, required: bool = True, default: Any = None, fix: str = "") -> Any:
        self.used.add(k)
        if k not in self.table:
            if required:
                if not fix:
                    fix = (f"add a [{self.key(k)}] table" if kind == "table"
                           else f"add `{k} = <{kind}>` under [{self.path}]" if self.path else f"add `{k} = <{kind}>`")
                self.fail(k, "is missing", fix)
            return default
        v = self.table[k]
        ok = {
            "string": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "number": isinstance(v, int | float) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "list of strings": isinstance(v, list) and all(isinstance(x, str) for x in v),
            "list of numbers": isinstance(v, list)
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v),
            "list": isinstance(v, list),
            "table": isinstance(v, dict),
            "array of tables": isinstance(v, list) and all(isinstance(x, dict) for x in v),
        }[kind]
        if not ok:
            art = "an" if kind[0] in "aeiou" else "a"
            self.fail(k, f"must be {art} {kind}, got {_show(v)}", fix or f"write {k} as {art} {kind}")
        if kind == "number" and not math.isfinite(v):
            self.fail(k, f"must be a finite number, got {v}", "write a finite number")
        return v

    def positive(self, k: str, kind: str = "number", *, required: bool = True, default: Any = None,
                 allow_zero: bool = False) -> Any:
        v = self.get(k, kind, required=required, default=default)
        if v is not None and (v < 0 or (v == 0 and not allow_zero)):
            what = "zero or positive" if allow_zero else "positive"
            self.fail(k, f"must be {what}, got {v}", f"set {k} to a {what} {kind}")
        return v

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            allowed = ", ".join(sorted(self.used))
            self.fail(unknown[0], "is not a known key", f"remove it or use one of: {allowed}")


def _show(v: Any) -> str:
    s = repr(v)
    return f"{type(v).__name__} {s if len(s) < 40 else s[:37] + '...'}"


def _relpath(r: _Reader, k: str, value: str, what: str) -> str:
    p = value.replace("\\", "/")
    if not p or p.startswith("/") or re.match(r"^[A-Za-z]:", p) or ".." in p.split("/") or "\0" in p:
        r.fail(k, f"{what} {value!r} must be a relative path inside the task directory",
               "write a path relative to the task directory, without '..'")
    return posixpath.normpath(p)


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
    if _NAME_RE.match(name):
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
    return _build(toml_path, root, raw)


def _build(f: Path, root: Path, raw: dict) -> TaskSpec:
    top = _Reader(f, raw, "")
    t = _Reader(f, top.get("task", "table"), "task")
    name = t.get("name", "string")
    if not _NAME_RE.match(name):
        t.fail("name", f"{name!r} is not a valid task name", "use lowercase letters, digits and '-' only")
    version = t.get("version", "string", fix='add `version = "1"` under [task]')
    description = t.get("description", "string", required=False, default="")
    metric = t.get("metric", "string")
    direction = t.get("direction", "string")
    if direction not in ("min", "max"):
        t.fail("direction", f"must be \"min\" or \"max\", got {direction!r}",
               'write direction = "min" (lower is better) or "max"')
    recipe_dir = t.get("recipe_dir", "string")
    checkout = t.get("checkout", "string", required=False, default="")
    recipe_root: Path | None
    if recipe_dir == "{checkout}":
        env = checkout_env_var(name)
        where = os.environ.get(env) or checkout
        recipe_root = None
        if where:
            src = f"${env}" if os.environ.get(env) else "[task] checkout"
            p = Path(where).expanduser()
            recipe_root = (p if p.is_absolute() else root / p).resolve()
            if not recipe_root.is_dir():
                t.fail("checkout" if src.startswith("[") else "recipe_dir",
                       f"the checkout {recipe_root} (from {src}) is not a directory",
                       f"point {src} at a clone of the recipe's repository")
    else:
        if "{" in recipe_dir or "}" in recipe_dir:
            t.fail("recipe_dir", f"{recipe_dir!r} has an unknown placeholder", 'use a relative path or "{checkout}"')
        if checkout:
            t.fail("checkout", 'is set but recipe_dir is not "{checkout}"', 'write recipe_dir = "{checkout}" or remove checkout')
        recipe_dir = _relpath(t, "recipe_dir", recipe_dir, "recipe_dir")
        recipe_root = root / recipe_dir
    recipe_files = tuple(_relpath(t, "recipe_files", x, "file") for x in t.get("recipe_files", "list of strings"))
    if not recipe_files:
        t.fail("recipe_files", "is empty", "list the files specialists may edit, e.g. [\"train.py\"]")
    evaluator_files = tuple(_relpath(t, "evaluator_files", x, "file")
                            for x in t.get("evaluator_files", "list of strings"))
    if not evaluator_files:
        t.fail("evaluator_files", "is empty", "list the evaluator-owned files, e.g. [\"evaluator/evaluate.py\"]")
    stage = tuple(_relpath(t, "stage_into_workspace", x, "file")
                  for x in t.get("stage_into_workspace", "list of strings", required=False, default=[]))
    artifact = t.get("artifact", "string")
    t.done()
    for i, ef in enumerate(evaluator_files if recipe_dir != "{checkout}" else ()):
        rdir = recipe_dir.rstrip("/") + "/"
        if ef == recipe_dir or ef.startswith(rdir) or recipe_dir in (".", ""):
            t.fail(f"evaluator_files[{i}]", f"{ef!r} lies inside the recipe dir {recipe_dir!r}, so specialists "
                   "could edit it", "move evaluator-owned files out of the recipe dir (e.g. to evaluator/)")
    for i, sf in enumerate(stage):
        if sf not in evaluator_files:
            t.fail(f"stage_into_workspace[{i}]", f"{sf!r} is not one of evaluator_files",
                   "only evaluator-owned files can be staged; add it to evaluator_files or remove it")
        if posixpath.relpath(sf, ".").split("/")[0] in {rf.split("/")[0] for rf in recipe_files}:
            t.fail(f"stage_into_workspace[{i}]", f"{sf!r} would land on a recipe file in the workspace",
                   "stage evaluator files under a directory no recipe file uses (e.g. evaluator/)")

    c = _Reader(f, top.get("commands", "table"), "commands")
    commands = Commands(train=c.get("train", "string"), evaluate=c.get("evaluate", "string"),
                        prepare=c.get("prepare", "string", required=False, default=""))
    c.done()

    b = _Reader(f, top.get("budgets", "table"), "budgets")
    budgets = Budgets(preflight_s=float(b.positive("preflight_s")), train_s=float(b.positive("train_s")),
                      eval_s=float(b.positive("eval_s")))
    b.done()

    g = _Reader(f, top.get("gates", "table", required=False, default={}), "gates")
    gates = Gates(artifact_max_bytes=g.positive("artifact_max_bytes", "int", required=False),
                  accuracy_metric=g.get("accuracy_metric", "string", required=False),
                  accuracy_min=g.get("accuracy_min", "number", required=False))
    if (gates.accuracy_metric is None) != (gates.accuracy_min is None):
        g.fail("accuracy_min" if gates.accuracy_min is None else "accuracy_metric",
               "is missing: the accuracy gate needs both accuracy_metric and accuracy_min",
               "give both keys, or neither")
    g.done()

    n = _Reader(f, top.get("noise", "table"), "noise")
    noise = NoisePolicy(
        min_delta=float(n.positive("min_delta", allow_zero=True)),
        seeds_per_trial=n.positive("seeds_per_trial", "int", required=False, default=1),
        confirmation_runs=n.positive("confirmation_runs", "int", required=False, default=0, allow_zero=True),
        k=float(n.positive("k", required=False, default=2.0, allow_zero=True)),
        sd=float(n.positive("sd", required=False, default=0.0, allow_zero=True)),
        reruns=tuple(float(x) for x in n.get("reruns", "list of numbers", required=False, default=[])),
    )
    n.done()

    rs = _Reader(f, top.get("resources", "table", required=False, default={}), "resources")
    resources = Resources(gpus_per_trial=rs.positive("gpus_per_trial", "int", required=False, default=0,
                                                     allow_zero=True),
                          cpu_threads=rs.positive("cpu_threads", "int", required=False, default=1),
                          memory_mb=rs.positive("memory_mb", "int", required=False, default=0, allow_zero=True),
                          max_procs=rs.positive("max_procs", "int", required=False, default=1024),
                          network=rs.get("network", "bool", required=False, default=False))
    if 0 < resources.memory_mb < 256:
        rs.fail("memory_mb", f"must be 0 (automatic) or at least 256, got {resources.memory_mb}",
                "set memory_mb = 0 for this machine's share, or a limit of 256 MiB or more")
    if resources.max_procs < 8:
        rs.fail("max_procs", f"must be at least 8, got {resources.max_procs}", "set max_procs to 8 or more")
    rs.done()

    data = []
    for i, d in enumerate(top.get("data", "array of tables", required=False, default=[])):
        dr = _Reader(f, d, f"data[{i}]")
        data.append(DataSource(**{k: dr.get(k, "string") for k in ("name", "package", "version", "filename",
                                                                   "sha256")}))
        dr.done()

    texts: dict[str, str] = {}

    def recipe_text(r: _Reader, k: str, rel: str) -> str | None:
        if recipe_root is None:
            return None  # an unconfigured checkout: file-level checks wait until it is configured
        if rel not in texts:
            p = recipe_root / rel
            if not p.is_file():
                r.fail(k, f"recipe file {p} does not exist", f"create it, or fix the path (relative to {recipe_dir}/)")
            texts[rel] = p.read_text()
        return texts[rel]

    region_cache: dict[str, dict[str, tuple[int, int]]] = {}

    def regions(r: _Reader, k: str, rel: str) -> dict[str, tuple[int, int]]:
        if recipe_root is None:
            return {}
        if rel not in region_cache:
            try:
                region_cache[rel] = regions_of(recipe_text(r, k, rel) or "")
            except ValueError as e:
                r.fail(k, f"{recipe_dir}/{rel}: {e}", "balance the '# region: NAME' / '# endregion' markers")
        return region_cache[rel]

    for rel in recipe_files:
        recipe_text(t, "recipe_files", rel)

    surfaces: dict[str, Surface] = {}
    knob_names: dict[tuple[str, str], str] = {}
    for sname, sraw in top.get("surfaces", "table").items():
        sp = f"surfaces.{sname}"
        s = _Reader(f, sraw, sp)
        if not _IDENT_RE.match(sname):
            s.fail("", f"surface name {sname!r} is not an identifier", "use letters, digits and '_'")
        files = tuple(_relpath(s, "files", x, "file") for x in s.get("files", "list of strings"))
        if not files:
            s.fail("files", "is empty", f"list the recipe files this surface may touch, e.g. {list(recipe_files)}")
        for i, rel in enumerate(files):
            if rel not in recipe_files:
                s.fail(f"files[{i}]", f"{rel!r} is not one of the recipe files {list(recipe_files)}",
                       "list only files named in [task] recipe_files")
        region_names = tuple(s.get("regions", "list of strings", required=False, default=[]))
        for i, reg in enumerate(region_names):
            if recipe_root is not None and not any(reg in regions(s, f"regions[{i}]", rel) for rel in files):
                s.fail(f"regions[{i}]", f"region {reg!r} has no '# region: {reg}' ... '# endregion' block in "
                       f"{', '.join(f'{recipe_dir}/{x}' for x in files)}",
                       f"add the markers around the code the surface owns, or remove {reg!r}")
        knobs = []
        for i, kraw in enumerate(s.get("knobs", "array of tables", required=False, default=[])):
            knobs.append(_knob(f, kraw, f"{sp}.knobs[{i}]", sname, files, region_names, recipe_text, regions,
                               recipe_dir, knob_names))
        s.get("description", "string", required=False, default="")
        surfaces[sname] = Surface(name=sname, description=sraw.get("description", ""), files=files,
                                  regions=region_names, knobs=tuple(knobs))
        s.done()
    if not surfaces:
        top.fail("surfaces", "defines no surface", "add at least one [surfaces.NAME] table")

    specialists = []
    seen: set[str] = set()
    for i, sp in enumerate(top.get("specialists", "array of tables", required=False, default=[])):
        r = _Reader(f, sp, f"specialists[{i}]")
        spec = Specialist(name=r.get("name", "string"), surface=r.get("surface", "string"),
                          preamble=r.get("preamble", "string"))
        r.done()
        if spec.name in seen:
            r.fail("name", f"specialist {spec.name!r} is defined twice", "give each specialist a unique name")
        seen.add(spec.name)
        if spec.surface not in surfaces:
            r.fail("surface", f"names unknown surface {spec.surface!r}",
                   f"use one of the defined surfaces: {', '.join(sorted(surfaces))}")
        specialists.append(spec)

    patches = []
    seen = set()
    for i, pr in enumerate(top.get("patches", "array of tables", required=False, default=[])):
        r = _Reader(f, pr, f"patches[{i}]")
        p = Patch(name=r.get("name", "string"), surface=r.get("surface", "string"),
                  file=_relpath(r, "file", r.get("file", "string"), "file"), find=r.get("find", "string"),
                  replace=r.get("replace", "string"), hypothesis=r.get("hypothesis", "string", required=False,
                                                                       default=""))
        r.done()
        if p.name in seen:
            r.fail("name", f"patch {p.name!r} is defined twice", "give each patch a unique name")
        seen.add(p.name)
        if p.surface not in surfaces:
            r.fail("surface", f"names unknown surface {p.surface!r}",
                   f"use one of the defined surfaces: {', '.join(sorted(surfaces))}")
        if p.file not in surfaces[p.surface].files:
            r.fail("file", f"{p.file!r} is not one of the files of surface {p.surface!r} "
                   f"{list(surfaces[p.surface].files)}", "patch a file the surface owns")
        if not p.find:
            r.fail("find", "is empty", "give the exact baseline text the patch replaces")
        patches.append(p)
    top.done()

    return TaskSpec(root=root, name=name, version=version, description=description, metric=metric,
                    direction=direction, recipe_dir=recipe_dir, recipe_root=recipe_root, recipe_files=recipe_files,
                    evaluator_files=evaluator_files, stage_into_workspace=stage, artifact=artifact,
                    commands=commands, budgets=budgets, gates=gates, noise=noise, resources=resources,
                    data=tuple(data), surfaces=surfaces, specialists=tuple(specialists), patches=tuple(patches))


_KNOB_TYPES = ("float", "int", "bool", "choice")


def _knob(f: Path, kraw: Any, path: str, surface: str, files: tuple[str, ...], region_names: tuple[str, ...],
          recipe_text, regions, recipe_dir: str, knob_names: dict[tuple[str, str], str]) -> Knob:
    r = _Reader(f, kraw, path)
    name = r.get("name", "string")
    if not _IDENT_RE.match(name):
        r.fail("name", f"{name!r} is not a Python identifier", "use the module-level variable's name, e.g. LR")
    file = _relpath(r, "file", r.get("file", "string"), "file")
    if file not in files:
        r.fail("file", f"{file!r} is not one of the files of surface {surface!r} {list(files)}",
               f"add {file!r} to surfaces.{surface}.files or fix the path")
    if (file, name) in knob_names:
        r.fail("name", f"knob {name} in {file} is already declared at {knob_names[(file, name)]}",
               "declare each knob once")
    knob_names[(file, name)] = path
    type_ = r.get("type", "string")
    if type_ not in _KNOB_TYPES:
        r.fail("type", f"unknown knob type {type_!r}", f"use one of: {', '.join(_KNOB_TYPES)}")
    rng = values = None
    scale = r.get("scale", "string", required=False, default="linear")
    if scale not in ("log", "linear"):
        r.fail("scale", f"unknown scale {scale!r}", 'use "log" or "linear"')
    if type_ in ("float", "int"):
        rng_raw = r.get("range", "list of numbers", fix=f"add range = [low, high] to {path}")
        if len(rng_raw) != 2:
            r.fail("range", f"must have exactly two numbers [low, high], got {len(rng_raw)}",
                   "write range = [low, high]")
        lo, hi = rng_raw
        if type_ == "int" and not all(isinstance(x, int) for x in rng_raw):
            r.fail("range", f"an int knob needs int bounds, got {rng_raw}", "write the bounds without a decimal point")
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            r.fail("range", f"lower bound {lo} is not below upper bound {hi}", "write range = [low, high] with low < high")
        if scale == "log" and lo <= 0:
            r.fail("range", f"a log-scale knob needs a positive lower bound, got {lo}",
                   'raise the lower bound above 0 or use scale = "linear"')
        rng = (lo, hi)
        if "values" in r.table:
            r.fail("values", f"only choice knobs take values (this one is {type_})", "remove values, or use type = \"choice\"")
    elif type_ == "choice":
        values_raw = r.get("values", "list", fix=f"add values = [...] to {path}")
        if len(values_raw) < 2 or not all(isinstance(v, str | int | float | bool) for v in values_raw):
            r.fail("values", f"must list at least two literal values, got {values_raw!r}",
                   'write values = ["a", "b", ...]')
        if len(set(map(repr, values_raw))) != len(values_raw):
            r.fail("values", f"has duplicates: {values_raw!r}", "list each value once")
        values = tuple(values_raw)
    if type_ in ("bool", "choice") and "range" in r.table:
        r.fail("range", f"a {type_} knob takes no range", "remove range" + (" (use values)" if type_ == "choice" else ""))
    if type_ in ("bool", "choice") and "scale" in r.table:
        r.fail("scale", f"a {type_} knob takes no scale", "remove scale")
    description = r.get("description", "string", required=False, default="")
    r.done()
    text = recipe_text(r, "file", file)
    if text is None:  # an unconfigured checkout
        return Knob(name=name, file=file, type=type_, range=rng, values=values,
                    scale=scale if type_ in ("float", "int") else "linear", description=description, surface=surface)
    try:
        line = knob_line(text, name)
    except KeyError as e:
        r.fail("name", f"{recipe_dir}/{file}: {e.args[0]}",
               f"add a module-level line `{name} = <value>` to {recipe_dir}/{file}, or fix the knob name")
    if region_names:
        spans = regions(r, "file", file)
        if not any(reg in spans and spans[reg][0] <= line <= spans[reg][1] for reg in region_names):
            r.fail("name", f"{recipe_dir}/{file} line {line}: knob {name} lies outside the surface's regions "
                   f"{list(region_names)}", f"move the line inside one of those regions, or add its region to "
                   f"surfaces.{surface}.regions")
    return Knob(name=name, file=file, type=type_, range=rng, values=values,
                scale=scale if type_ in ("float", "int") else "linear", description=description, surface=surface)


# -------------------------------------------------------------------------------------------------
# checks


def check_task(spec_or_path: TaskSpec | str | Path) -> list[CheckResult]:
    """Every check, one result each; loading errors come back as a failed ``spec`` check."""
    if isinstance(spec_or_path, TaskSpec):
        spec = spec_or_path
    else:
        try:
            spec = load_task(spec_or_path)
        except TaskSpecError as e:
            return [CheckResult("spec", False, str(e))]
    out = [CheckResult("spec", True, f"{spec.toml_path} loads ({len(spec.surfaces)} surfaces, "
                       f"{len(spec.knobs())} knobs, {len(spec.specialists)} specialists, {len(spec.patches)} patches)")]
    missing = [f for f in spec.evaluator_files if not (spec.root / f).is_file()]
    out.append(CheckResult("evaluator files exist", not missing,
                           f"missing under {spec.root}: {', '.join(missing)}; create them or fix evaluator_files"
                           if missing else ", ".join(spec.evaluator_files)))
    bad = [f"{d.name}: {d.sha256!r}" for d in spec.data if not _SHA_RE.match(d.sha256)]
    out.append(CheckResult("data sha256", not bad, "not 64 lowercase hex digits: " + "; ".join(bad) if bad
                           else f"{len(spec.data)} source(s)"))
    if spec.recipe_root is None:
        try:
            spec.recipe_path  # noqa: B018  (raises the configured message)
        except TaskSpecError as e:
            out.append(CheckResult("recipe checkout", False, str(e)))
        return out

    missing = [f for f in spec.recipe_files if not (spec.recipe_path / f).is_file()]
    out.append(CheckResult("recipe files exist", not missing,
                           f"missing: {', '.join(missing)}" if missing else ", ".join(spec.recipe_files)))
    texts = {f: (spec.recipe_path / f).read_text() for f in spec.recipe_files if (spec.recipe_path / f).is_file()}

    for knob in spec.knobs():
        label = f"knob {knob.surface}.{knob.name}"
        try:
            value = read_knob(texts[knob.file], knob)
        except (KeyError, ValueError) as e:
            out.append(CheckResult(label, False, str(e)))
            continue
        problem = knob.check_value(value)
        out.append(CheckResult(label, problem is None,
                               f"{knob.file}: {problem}; fix the value or the declared range" if problem
                               else f"= {value!r}"))

    bad = []
    for rel, text in texts.items():
        if rel.endswith(".py"):
            try:
                compile(text, f"{spec.recipe_dir}/{rel}", "exec")
            except SyntaxError as e:
                bad.append(f"{spec.recipe_dir}/{rel} line {e.lineno}: {e.msg}")
    out.append(CheckResult("recipe compiles", not bad, "; ".join(bad) or "ok"))

    for p in spec.patches:
        out.append(_check_patch(spec, p, texts))

    if spec.gates.artifact_max_bytes is not None and not missing:
        code = spec.code_bytes()
        cap = spec.gates.artifact_max_bytes
        out.append(CheckResult("code bytes under the artifact cap", code < cap,
                               f"baseline code is {code:,} bytes, cap {cap:,}"))
    return out


def _check_patch(spec: TaskSpec, p: Patch, texts: dict[str, str]) -> CheckResult:
    label = f"patch {p.name}"
    text = texts.get(p.file)
    if text is None:
        return CheckResult(label, False, f"{p.file} is missing")
    count = text.count(p.find)
    if count != 1:
        return CheckResult(label, False, f"its find text occurs {count} times in {spec.recipe_dir}/{p.file} "
                           "(must be exactly once); copy the exact baseline text")
    new = p.apply(text)
    if p.file.endswith(".py") and _compiles(text):
        try:
            compile(new, f"{spec.recipe_dir}/{p.file}", "exec")
        except SyntaxError as e:
            return CheckResult(label, False, f"the patched file does not compile: line {e.lineno}: {e.msg}")
    surface = spec.surfaces[p.surface]
    if surface.regions:
        start = text.index(p.find)
        first = text.count("\n", 0, start) + 1
        last = first + p.find.count("\n") - (1 if p.find.endswith("\n") else 0)
        spans = regions_of(text)
        if not any(r in spans and spans[r][0] <= first and last <= spans[r][1] for r in surface.regions):
            return CheckResult(label, False, f"lines {first}-{last} of {p.file} lie outside surface "
                               f"{p.surface!r}'s regions {list(surface.regions)}")
    return CheckResult(label, True, "applies cleanly")


def _compiles(text: str) -> bool:
    try:
        compile(text, "<recipe>", "exec")
    except SyntaxError:
        return False
    return True
