"""Scaffolding a task from an existing training script: ``arledger tasks new DIR --from train.py``.

:func:`scaffold` writes a task directory (the templates are :mod:`tasks.scaffold_templates`):

* ``recipe/<file>`` — the script, copied unchanged (the baseline snapshot);
* ``task.toml`` — a valid spec with one surface (the whole script) and, commented, a knob entry
  for each module-level literal of the script (:func:`find_knobs`: ``NAME = literal`` lines the
  heuristic backend can move, with a range around the current value);
* ``evaluator/model.py`` — the script's model classes (``nn.Module`` subclasses and the config
  dataclasses they use, found by :func:`model_classes`), copied with the script's imports, and a
  ``build(config)`` the evaluator calls; the names they read from the script's globals are listed;
* ``evaluator/evaluate.py`` — loads each run's state dict with ``torch.load(weights_only=True)``
  into ``build(config)`` and writes the result contract (its ``score()`` is the part to fill in);
* ``evaluator/prepare.py`` — splits a text corpus kept with the task (pinned by sha256) into the
  train and held-out splits;
* ``README.md`` — what to fill in, in order, and how to check it (``tasks check --dry-run``).

Nothing is written when the script does not parse or the directory is not empty.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tasks import scaffold_templates as tpl
from tasks.knobs import format_value, read_knob
from tasks.spec import NAME_RE, KnobValue, TaskSpecError

_ASSIGN_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*(?::[^=]*)?=(?!=)", re.M)
DEFAULT_DATA = "data/input.txt"


@dataclass(frozen=True)
class KnobProposal:
    name: str
    line: int
    value: KnobValue
    type: str  # float | int | bool | choice
    range: tuple[float, float] | None = None
    scale: str = "linear"

    def toml(self, file: str) -> str:
        """The knob's entry, commented out."""
        lines = ["[[surfaces.recipe.knobs]]", f'name = "{self.name}"',
                 f'file = "{file}"', f'type = "{self.type}"']
        if self.range is not None:
            lo, hi = self.range
            lines.append(f"range = [{format_value(lo, self.type)}, {format_value(hi, self.type)}]")
            if self.scale == "log":
                lines.append('scale = "log"')
        if self.type == "choice":
            lines.append(f"values = [{_toml_str(str(self.value))}]  # add the alternatives (two or more)")
        lines[1] += f"  # {file} line {self.line}: {self.name} = {format_value(self.value)}"
        return "\n".join("# " + ln for ln in lines)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def propose(name: str, line: int, value: KnobValue) -> KnobProposal:
    """A knob for ``NAME = value`` with a range around the value: floats a decade either side
    (log scale) or [0, 1] at zero, ints a factor of 4 either side, bools as they are, strings as a
    choice to complete."""
    if isinstance(value, bool):
        return KnobProposal(name, line, value, "bool")
    if isinstance(value, int):
        if value > 0:
            return KnobProposal(name, line, value, "int", (max(1, value // 4), max(value * 4, 2)))
        return KnobProposal(name, line, value, "int", (2 * value, 0) if value < 0 else (0, 10))
    if isinstance(value, float):
        if value > 0:
            return KnobProposal(name, line, value, "float", (value / 10, value * 10), "log")
        return KnobProposal(name, line, value, "float", (2 * value, 0.0) if value < 0 else (0.0, 1.0))
    return KnobProposal(name, line, value, "choice")


def find_knobs(text: str) -> list[KnobProposal]:
    """The module-level ``NAME = literal`` lines of ``text`` (each assigned exactly once), in order."""
    out, seen = [], set()
    for m in _ASSIGN_RE.finditer(text):
        name = m.group(1)
        if name in seen:
            continue
        seen.add(name)
        try:
            value = read_knob(text, name)
        except KeyError:
            continue  # not a single literal, or assigned more than once
        out.append(propose(name, text.count("\n", 0, m.start()) + 1, value))
    return out


@dataclass(frozen=True)
class ModelCode:
    classes: list[str]  # in the script's order
    source: str  # their definitions, decorators included
    imports: str  # the script's top-level imports
    globals_read: list[str]  # script-level names the classes read (to pass through the config instead)
    builder: str  # the body of build(config)


def _is_module_base(base: ast.expr, known: set[str]) -> bool:
    if isinstance(base, ast.Attribute):
        return base.attr == "Module"
    return isinstance(base, ast.Name) and (base.id == "Module" or base.id in known)


def _is_dataclass(d: ast.expr) -> bool:
    f = d.func if isinstance(d, ast.Call) else d
    return ((isinstance(f, ast.Name) and f.id == "dataclass")
            or (isinstance(f, ast.Attribute) and f.attr == "dataclass"))


def model_classes(text: str) -> ModelCode:
    """The script's ``nn.Module`` classes (and those derived from them), the dataclasses they use
    (or named ``...Config``), its imports, the script-level names they read, and a builder for the root
    model."""
    tree = ast.parse(text)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    modules: set[str] = set()
    for c in classes:
        if any(_is_module_base(b, modules) for b in c.bases):
            modules.add(c.name)
    used = {n.id for c in classes if c.name in modules for n in ast.walk(c) if isinstance(n, ast.Name)}
    configs = {c.name for c in classes if (c.name in used or c.name.endswith("Config"))
               and c.name not in modules and any(_is_dataclass(d) for d in c.decorator_list)}
    keep = [c for c in classes if c.name in modules or c.name in configs]
    lines = text.splitlines()
    parts = []
    for c in keep:
        start = min([c.lineno] + [d.lineno for d in c.decorator_list])
        parts.append("\n".join(lines[start - 1:c.end_lineno]))
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    imported = {(a.asname or a.name).split(".")[0] for n in imports for a in n.names}
    defined_top = {t.id for n in tree.body if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
    defined_top |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    reads = set()
    for c in keep:
        local = {a.arg for n in ast.walk(c) if isinstance(n, ast.arguments)
                 for a in (*n.posonlyargs, *n.args, *n.kwonlyargs)}
        local |= {n.id for n in ast.walk(c) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        reads |= {n.id for n in ast.walk(c) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                  and n.id in defined_top and n.id not in local and n.id not in imported}
    roots = [c.name for c in keep if c.name in modules and not any(
        c.name in {n.id for n in ast.walk(o) if isinstance(n, ast.Name)} for o in keep if o.name != c.name)]
    if len(roots) == 1 and len(configs) == 1:
        builder = f"    return {roots[0]}({next(iter(configs))}(**config))"
    elif len(roots) == 1:
        builder = f"    return {roots[0]}(**config)  # FILL IN if {roots[0]} takes other arguments"
    else:
        found = ", ".join(sorted(modules)) or "none"
        builder = (f"    raise NotImplementedError(\"fill in build(config): construct the model from config "
                   f"(model classes found: {found})\")")
    src = "\n".join(ast.get_source_segment(text, n) or "" for n in imports)
    return ModelCode([c.name for c in keep], "\n\n\n".join(parts), src, sorted(reads - set(dir(builtins))),
                     builder)


@dataclass(frozen=True)
class Scaffolded:
    root: Path
    name: str
    files: list[Path]
    knobs: list[KnobProposal]
    model: ModelCode


def task_name(dest: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", dest.resolve().name.lower()).strip("-")
    return name if name and NAME_RE.match(name) else "my-task"


def scaffold(dest: Path, recipe: Path, *, name: str | None = None, metric: str = "val_loss",
             direction: str = "min", data: Path | None = None) -> Scaffolded:
    """Write the task directory ``dest`` from the script ``recipe`` (see the module doc); ``data``: a
    text corpus to keep with the task (copied to ``data/``, its sha256 pinned in prepare.py).
    TaskSpecError (one line, naming the fix) for a bad request; nothing is written then."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TaskSpecError(dest, "", "exists and is not an empty directory",
                            "choose a new directory for the task")
    try:
        text = Path(recipe).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TaskSpecError(recipe, "", f"cannot be read ({e})",
                            "give --from the path of a Python training script") from None
    try:
        ast.parse(text)
    except SyntaxError as e:
        raise TaskSpecError(recipe, "", f"line {e.lineno}: {e.msg}", "fix the script so it parses") from None
    if data is not None and not Path(data).is_file():
        raise TaskSpecError(data, "", "is not a file", "give --data the path of the text corpus to train on")
    name = name or task_name(dest)
    if not NAME_RE.match(name):
        raise TaskSpecError(dest, "task.name", f"{name!r} is not a valid task name",
                            "use lowercase letters, digits and '-' only (--name)")
    if direction not in ("min", "max"):
        raise TaskSpecError(dest, "task.direction", f"must be min or max, got {direction!r}",
                            "--direction min|max")
    file = Path(recipe).name
    knobs = find_knobs(text)
    model = model_classes(text)
    data_rel = f"data/{Path(data).name}" if data is not None else DEFAULT_DATA
    sha = hashlib.sha256(Path(data).read_bytes()).hexdigest() if data is not None else ""
    fill = {"NAME": name, "SOURCE": str(recipe), "FILE": file, "METRIC": metric, "DIRECTION": direction,
            "ARTIFACT": "model.pt", "DATA": data_rel, "SHA256": sha,
            "KNOBS": "\n\n".join(k.toml(file) for k in knobs) or "# (no module-level literals found)"}
    fill.update(_model_fill(model, file))
    fill["DATA_NOTE"] = (f"The corpus was copied from `{data}`." if data is not None else
                         f"Put your corpus at `{DEFAULT_DATA}` and its sha256 (`sha256sum`) in `SHA256` "
                         "there.")
    written: list[Path] = []

    def put(rel: str, content: str | bytes, wrap: bool = False) -> None:
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            text = _fill(content, fill)
            p.write_text(_wrap_markdown(text) if wrap else text)
        written.append(p)

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "recipe").mkdir()
    shutil.copyfile(recipe, dest / "recipe" / file)
    written.append(dest / "recipe" / file)
    put("task.toml", tpl.TASK_TOML)
    put("evaluator/model.py", tpl.MODEL_PY)
    put("evaluator/evaluate.py", tpl.EVALUATE_PY)
    put("evaluator/prepare.py", tpl.PREPARE_PY)
    put("README.md", tpl.README_MD, wrap=True)
    if data is not None:
        put(data_rel, Path(data).read_bytes())
    return Scaffolded(dest, name, written, knobs, model)


def _model_fill(model: ModelCode, file: str) -> dict[str, str]:
    if not model.classes:
        return {"MOVED": f"No nn.Module class was found in {file}: write the model here.",
                "IMPORTS": "import torch\nimport torch.nn as nn", "CLASSES": "", "BUILD": model.builder,
                "MODEL_NOTE": f"No `nn.Module` class was found in `{file}`: write the model there."}
    reads = (f" They read these names of {file}'s globals, which must come through the config instead: "
             f"{', '.join(model.globals_read)}." if model.globals_read else "")
    return {"MOVED": f"Copied from {file}: {', '.join(model.classes)}.{reads}",
            "IMPORTS": model.imports or "import torch\nimport torch.nn as nn", "CLASSES": model.source,
            "BUILD": model.builder,
            "MODEL_NOTE": f"The scaffold copied `{', '.join(model.classes)}` there, with `{file}`'s imports, "
                          f"and a `build(config)`; check it.{reads}"}


def _wrap_markdown(text: str, width: int = 100) -> str:
    """Paragraphs and list items wrapped at ``width`` (list items indented under their text)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\d+\. |- )", line)
        lead = " " * len(m.group(1)) if m else ""
        out.append(textwrap.fill(line, width, subsequent_indent=lead, break_long_words=False,
                                 break_on_hyphens=False) if len(line) > width else line)
    return "\n".join(out) + "\n"


def _fill(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace(f"@@{k}@@", v)
    return text
