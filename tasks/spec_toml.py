"""Reading ``task.toml``: every key typed and checked, every error one message naming the file, the
key path (``surfaces.opt.knobs[2].range``) and the fix. :func:`build_spec` is what
:func:`tasks.spec.load_task` calls after parsing the TOML.
"""

from __future__ import annotations

import difflib
import math
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from tasks.data import DataSource
from tasks.knobs import knob_line, regions_of
from tasks.spec import (
    BOUNDS,
    EARLY_STOP_COMPARE,
    NAME_RE,
    WORK_UNITS,
    Budgets,
    Commands,
    EarlyStop,
    Gates,
    Knob,
    NoisePolicy,
    Patch,
    Resources,
    Specialist,
    Surface,
    TaskSpec,
    TaskSpecError,
    checkout_env_var,
)

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

KEYS: dict[str, tuple[str, ...]] = {
    "": ("task", "commands", "budgets", "gates", "noise", "resources", "data", "surfaces", "specialists",
         "patches", "early_stop"),
    "task": ("name", "version", "description", "metric", "direction", "recipe_dir", "checkout",
             "recipe_files", "evaluator_files", "stage_into_workspace", "artifact"),
    "commands": ("train", "evaluate", "prepare", "estimate"),
    "budgets": ("preflight_s", "train_s", "eval_s", "bound", "work_unit"),
    "gates": ("artifact_max_bytes", "accuracy_metric", "accuracy_min"),
    "noise": ("min_delta", "seeds_per_trial", "confirmation_runs", "k", "sd", "reruns", "baseline_reruns"),
    "resources": ("gpus_per_trial", "cpu_threads", "memory_mb", "max_procs", "network"),
    "data": ("name", "package", "version", "filename", "sha256"),
    "surface": ("description", "files", "regions", "knobs"),
    "knob": ("name", "file", "type", "range", "values", "scale", "description"),
    "specialist": ("name", "surface", "preamble"),
    "patch": ("name", "surface", "file", "find", "replace", "hypothesis"),
    "early_stop": ("metric", "after_step", "margin", "compare", "direction"),
}
"""The keys each kind of table may hold: a key outside them is named before anything is missing."""


class _Reader:
    """Typed access to one TOML table that reports errors with the file and key path. ``known``
    names the keys the table may hold (a KEYS entry): an unknown one is reported at once, naming
    the known ones (so ``train_sec`` reads as unknown, not as ``train_s`` missing)."""

    def __init__(self, file: Path, table: Any, path: str, known: tuple[str, ...] = ()):
        self.file, self.path = file, path
        if not isinstance(table, dict):
            self.fail("", f"must be a table, got {type(table).__name__}", f"write it as [{path}]")
        self.table: dict = table
        self.used: set[str] = set()
        unknown = [k for k in table if k not in known] if known else []
        if unknown:
            k = unknown[0]
            near = difflib.get_close_matches(k, known, n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]}?)" if near else ""
            where = f"[{path}]" if path else "the top level"
            self.fail(k, f"is not a known key{hint}",
                      f"{'rename' if near else 'remove'} it; the keys of {where} are: {', '.join(known)}")

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


def build_spec(f: Path, root: Path, raw: dict) -> TaskSpec:
    top = _Reader(f, raw, "", KEYS[""])
    t = _Reader(f, top.get("task", "table"), "task", KEYS["task"])
    name = t.get("name", "string")
    if not NAME_RE.match(name):
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

    c = _Reader(f, top.get("commands", "table"), "commands", KEYS["commands"])
    commands = Commands(train=c.get("train", "string"), evaluate=c.get("evaluate", "string"),
                        prepare=c.get("prepare", "string", required=False, default=""),
                        estimate=c.get("estimate", "string", required=False, default=""))
    c.done()

    b = _Reader(f, top.get("budgets", "table"), "budgets", KEYS["budgets"])
    budgets = _budgets(b)
    b.done()

    g = _Reader(f, top.get("gates", "table", required=False, default={}), "gates", KEYS["gates"])
    gates = Gates(artifact_max_bytes=g.positive("artifact_max_bytes", "int", required=False),
                  accuracy_metric=g.get("accuracy_metric", "string", required=False),
                  accuracy_min=g.get("accuracy_min", "number", required=False))
    if (gates.accuracy_metric is None) != (gates.accuracy_min is None):
        g.fail("accuracy_min" if gates.accuracy_min is None else "accuracy_metric",
               "is missing: the accuracy gate needs both accuracy_metric and accuracy_min",
               "give both keys, or neither")
    g.done()

    n = _Reader(f, top.get("noise", "table"), "noise", KEYS["noise"])
    noise = NoisePolicy(
        min_delta=float(n.positive("min_delta", allow_zero=True)),
        seeds_per_trial=n.positive("seeds_per_trial", "int", required=False, default=1),
        confirmation_runs=n.positive("confirmation_runs", "int", required=False, default=0, allow_zero=True),
        k=float(n.positive("k", required=False, default=2.0, allow_zero=True)),
        sd=float(n.positive("sd", required=False, default=0.0, allow_zero=True)),
        reruns=tuple(float(x) for x in n.get("reruns", "list of numbers", required=False, default=[])),
        baseline_reruns=n.positive("baseline_reruns", "int", required=False, default=0, allow_zero=True),
    )
    n.done()

    rs = _Reader(f, top.get("resources", "table", required=False, default={}), "resources", KEYS["resources"])
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

    early_stop = _early_stop(f, top.get("early_stop", "table", required=False))

    data = []
    for i, d in enumerate(top.get("data", "array of tables", required=False, default=[])):
        dr = _Reader(f, d, f"data[{i}]", KEYS["data"])
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
        s = _Reader(f, sraw, sp, KEYS["surface"])
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
        r = _Reader(f, sp, f"specialists[{i}]", KEYS["specialist"])
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
        r = _Reader(f, pr, f"patches[{i}]", KEYS["patch"])
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
                    data=tuple(data), surfaces=surfaces, specialists=tuple(specialists), patches=tuple(patches),
                    early_stop=early_stop)


def _budgets(b: _Reader) -> Budgets:
    """``[budgets]``: the three budgets, and what bounds a run (see :class:`tasks.spec.Budgets`)."""
    declared = "bound" in b.table
    bound = b.get("bound", "string", required=False, default="time")
    if bound not in BOUNDS:
        b.fail("bound", f"must be \"work\" or \"time\", got {bound!r}",
               'write bound = "work" (the recipe trains a planned number of steps, epochs or tokens; train_s '
               'is a safety limit) or bound = "time" (train_s is the rule)')
    unit = b.get("work_unit", "string", required=False, default="steps" if bound == "work" else "")
    if bound == "time" and unit:
        b.fail("work_unit", "is given but the run is bounded by time", 'remove work_unit, or set bound = "work"')
    if bound == "work" and unit not in WORK_UNITS:
        b.fail("work_unit", f"unknown unit {unit!r}", f"use one of: {', '.join(WORK_UNITS)}")
    return Budgets(preflight_s=float(b.positive("preflight_s")), train_s=float(b.positive("train_s")),
                   eval_s=float(b.positive("eval_s")), bound=bound, work_unit=unit, bound_declared=declared)


_METRIC_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def _early_stop(f: Path, raw: Any) -> EarlyStop | None:
    """The optional ``[early_stop]`` table (see :class:`tasks.spec.EarlyStop`)."""
    if raw is None:
        return None
    r = _Reader(f, raw, "early_stop", KEYS["early_stop"])
    metric = r.get("metric", "string", fix='add `metric = "train_loss"` (a name the recipe prints in its '
                   "`metric NAME=VALUE step=N` lines) under [early_stop]")
    if not _METRIC_NAME_RE.match(metric) or metric == "step":
        r.fail("metric", f"{metric!r} is not a metric name a `metric NAME=VALUE step=N` line can carry",
               "use the NAME the recipe prints, e.g. train_loss")
    after = r.positive("after_step", "int", required=False, default=0, allow_zero=True)
    margin = float(r.positive("margin", required=False, default=0.0, allow_zero=True))
    compare = r.get("compare", "string", required=False, default="incumbent")
    if compare not in EARLY_STOP_COMPARE:
        r.fail("compare", f"unknown reference {compare!r}", f"use one of: {', '.join(EARLY_STOP_COMPARE)}")
    direction = r.get("direction", "string", required=False, default="min")
    if direction not in ("min", "max"):
        r.fail("direction", f"must be \"min\" or \"max\", got {direction!r}",
               'write "min" for a loss (lower is better) or "max"')
    r.done()
    return EarlyStop(metric=metric, after_step=after, margin=margin, compare=compare, direction=direction)


_KNOB_TYPES = ("float", "int", "bool", "choice")


def _knob(f: Path, kraw: Any, path: str, surface: str, files: tuple[str, ...], region_names: tuple[str, ...],
          recipe_text, regions, recipe_dir: str, knob_names: dict[tuple[str, str], str]) -> Knob:
    r = _Reader(f, kraw, path, KEYS["knob"])
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


