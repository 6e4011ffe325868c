"""``arledger tasks check``: the deeper checks a user runs before a campaign (files exist, knob values
in range, the recipe compiles, patches apply inside their surfaces, data hashes, the size cap). One
:class:`~tasks.spec.CheckResult` per check.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasks.knobs import read_knob, regions_of
from tasks.spec import CheckResult, Patch, TaskSpec, TaskSpecError, load_task

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


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
    if not spec.budgets.bound_declared:
        out.append(CheckResult("run bound", True, 'budgets.bound is not declared: runs are bounded by time (train_s), '
                               'as before; add bound = "work" and work_unit = "steps" (or epochs, tokens) under '
                               '[budgets] if the recipe trains a fixed amount of work and prints `metric '
                               'work_planned=N` / `metric work_done=N`, or bound = "time" to keep the clock as the rule',
                               hint=True))
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
