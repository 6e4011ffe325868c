"""Preflight: the cheap checks a proposal must pass before any compute is spent on it.

Each check is a ``ledger.events.Check(name, ok, detail)``; the first failed check decides the
outcome label. In order:

=================  ==============================================================  ================
check              what                                                            label on failure
=================  ==============================================================  ================
``parses``         the diff is a unified diff (an empty diff only for reruns)       preflight_crash
``paths_inside``   every path stays inside the workspace (no absolute, ``..``,     illegal_edit
                   symlinks)
``evaluator``      no evaluator-owned file is touched                              illegal_edit
``surface``        only files of the specialist's surface (or the task's           illegal_edit
                   ``recipe_files``), and, where the surface names ``regions``,
                   only lines inside ``# region: NAME`` .. ``# endregion`` of the
                   parent's file
``size_limit``     the diff and the resulting code stay under the workspace        illegal_edit
                   limits (``workspace.MAX_DIFF_BYTES`` ...)
``applies``        the diff applies exactly to the parent's code                   preflight_crash
``not_duplicate``  neither the same normalised diff on the same parent nor the       duplicate
                   same resulting code was seen in this campaign
``compiles``       every changed ``.py`` file compiles                             preflight_crash
``artifact_fits``  the projected artifact fits ``gates.artifact_max_bytes``        size_blocked
=================  ==============================================================  ================

About ``artifact_fits``: the code bytes (UTF-8 bytes of the ``recipe_files`` after the diff) are
known exactly and always checked against the cap. The model's bytes are only known after
training; a task may declare an estimate command (``[commands] estimate``, same placeholders as
``train``, run in a scratch copy of the new code within ``budgets.preflight_s``) whose last output
line is the projected model size in bytes; without one, only the code part is checked here and the
evaluator's size gate decides after training.

:func:`check` returns a :class:`Preflight` with the new files and their tree hash; :func:`preflight`
returns the ``(passed, checks, label)`` triple.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import diffs
from ledger.events import Check
from tasks import workspace as wsp

LABELS = ("illegal_edit", "duplicate", "preflight_crash", "size_blocked")


@dataclass
class Preflight:
    passed: bool
    checks: list[Check]
    label: str | None
    files: dict[str, str] | None = None  # the trial's code, when the diff applied
    tree_sha: str | None = None
    code_bytes: int = 0
    normalised_sha: str = ""
    reason: str = ""  # the first failed check's detail
    touched: list[str] = field(default_factory=list)

    def as_tuple(self) -> tuple[bool, list[Check], str | None]:
        return self.passed, self.checks, self.label


def duplicate_key(parent_tree_sha: str, diff: str) -> str:
    """The duplicate key of a proposal: the same normalised diff on the same parent code. (The same
    change on another parent is a different trial: that is how keeps are combined.)"""
    return hashlib.sha256(f"{parent_tree_sha}\n{diffs.normalise(diff)}".encode()).hexdigest()


def tree_key(tree_sha: str) -> str:
    """The duplicate key of a resulting code tree: the exact code was already tried."""
    return f"tree:{tree_sha}"


_REGION = re.compile(r"^\s*#\s*region:\s*([\w.-]+)\s*$")
_ENDREGION = re.compile(r"^\s*#\s*endregion\b")


def regions_of(text: str) -> dict[str, list[tuple[int, int]]]:
    """``# region: NAME`` .. ``# endregion`` line ranges (1-based, inclusive of the markers).
    Uses ``tasks.spec.regions_of`` when it exists, so both agree."""
    try:
        from tasks.spec import regions_of as spec_regions
    except ImportError:
        spec_regions = None
    if spec_regions is not None:
        got = spec_regions(text)
        out: dict[str, list[tuple[int, int]]] = {}
        for name, rng in dict(got).items():
            if rng and isinstance(rng[0], (tuple, list)):
                out[name] = [(int(a), int(b)) for a, b in rng]
            else:
                out[name] = [(int(rng[0]), int(rng[1]))]
        return out
    out = {}
    open_: list[tuple[str, int]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        m = _REGION.match(line)
        if m:
            open_.append((m.group(1), i))
        elif _ENDREGION.match(line) and open_:
            name, start = open_.pop()
            out.setdefault(name, []).append((start, i))
    return out


def _surface(spec: Any, name: str | None) -> tuple[list[str], list[str]]:
    """(files, regions) a surface may touch; no surface: the task's recipe files, anywhere."""
    if not name:
        return list(spec.recipe_files), []
    surfaces = getattr(spec, "surfaces", {}) or {}
    s = surfaces.get(name) if isinstance(surfaces, dict) else None
    if s is None:
        raise KeyError(name)
    files = list(getattr(s, "files", None) or (s.get("files") if isinstance(s, dict) else None) or spec.recipe_files)
    regions = list(getattr(s, "regions", None) or (s.get("regions", []) if isinstance(s, dict) else []) or [])
    return files, regions


def _budget(spec: Any, name: str, default: float) -> float:
    b = getattr(spec, "budgets", None)
    if b is None:
        return default
    v = b.get(name) if isinstance(b, dict) else getattr(b, name, None)
    return float(v) if v is not None else default


def _gate(spec: Any, name: str) -> Any:
    g = getattr(spec, "gates", None)
    if g is None:
        return None
    return g.get(name) if isinstance(g, dict) else getattr(g, name, None)


def _command(spec: Any, name: str) -> str | None:
    c = getattr(spec, "commands", None)
    if c is None:
        return None
    return c.get(name) if isinstance(c, dict) else getattr(c, name, None)


def check(spec: Any, parent_files: dict[str, str], diff: str | None, *, surface: str | None = None,
          seen: set[str] | frozenset[str] = frozenset(), allow_empty: bool = False,
          python: str | None = None) -> Preflight:
    """Run every check; see the module docstring. ``seen`` holds the normalised-diff shas of this
    campaign's earlier trials; ``allow_empty`` admits an empty diff (baseline, rerun)."""
    checks: list[Check] = []
    diff = diff or ""
    result = Preflight(passed=False, checks=checks, label=None)

    def fail(name: str, label: str, detail: str) -> Preflight:
        checks.append(Check(name=name, ok=False, detail=detail))
        result.label, result.reason = label, f"{name}: {detail}"
        return result

    def ok(name: str, detail: str = "") -> None:
        checks.append(Check(name=name, ok=True, detail=detail))

    if len(diff.encode()) > wsp.MAX_DIFF_BYTES:
        return fail("size_limit", "illegal_edit", f"the diff is {len(diff.encode())} bytes "
                    f"(limit {wsp.MAX_DIFF_BYTES})")
    empty = not diff.strip()
    patches: list[diffs.FilePatch] = []
    if empty:
        if not allow_empty:
            return fail("parses", "preflight_crash", "the diff is empty: it changes nothing")
        ok("parses", "empty diff: the parent's code as is")
    else:
        try:
            patches = diffs.parse(diff)
        except diffs.PathEscape as e:
            ok("parses")
            return fail("paths_inside", "illegal_edit", str(e))
        except diffs.DiffError as e:
            return fail("parses", "preflight_crash", str(e))
        ok("parses", f"{len(patches)} file(s)")
    touched = sorted({p for fp in patches for p in (fp.old_path, fp.new_path) if p is not None})
    result.touched = touched
    for p in touched:
        try:
            diffs.check_path(p)
        except diffs.PathEscape as e:
            return fail("paths_inside", "illegal_edit", str(e))
    ok("paths_inside")
    owned = wsp.evaluator_owned(spec)
    owned_dirs = {o.rsplit("/", 1)[0] for o in owned if "/" in o}
    bad = [p for p in touched if p in owned or p in owned_dirs or any(o.startswith(p + "/") for o in owned)]
    if bad:
        return fail("evaluator", "illegal_edit", f"touches evaluator-owned {', '.join(bad)}")
    ok("evaluator")
    try:
        files_allowed, regions = _surface(spec, surface)
    except KeyError:
        return fail("surface", "illegal_edit", f"unknown surface {surface!r}; the task has "
                    f"{', '.join(sorted(getattr(spec, 'surfaces', {}) or {})) or 'none'}")
    outside = [p for p in touched if p not in files_allowed]
    if outside:
        who = f"surface {surface!r}" if surface else "the task's recipe_files"
        return fail("surface", "illegal_edit", f"touches {', '.join(outside)}, outside {who} "
                    f"({', '.join(files_allowed)})")
    marker_check: list[tuple[str, dict[str, int]]] = []
    if regions and not empty:
        try:
            lines = diffs.changed_lines(parent_files, diff)
        except diffs.DiffError as e:
            return fail("parses", "preflight_crash", str(e))
        for path, changed in sorted(lines.items()):
            text = parent_files.get(path)
            if text is None:
                return fail("surface", "illegal_edit", f"creates {path}; surface {surface!r} may edit only "
                            f"inside regions {', '.join(regions)} of existing files")
            try:
                spans = regions_of(text)
            except ValueError as e:
                return fail("surface", "illegal_edit", f"{path}: the parent's region markers are broken: {e}")
            allowed = [(a, b) for r in regions for (a, b) in spans.get(r, [])]
            # changed_lines names removed lines and, for an insertion, the line it follows: inside a
            # region means between its markers, or right after the opening marker
            stray = sorted(n for n in changed if not any(a <= n <= b - 1 for a, b in allowed))
            if stray:
                return fail("surface", "illegal_edit",
                            f"{path}: lines {_ranges(stray)} are outside region(s) {', '.join(regions)} "
                            f"of surface {surface!r}")
            marker_check.append((path, {k: len(v) for k, v in spans.items()}))
    ok("surface", surface or "recipe_files")
    if empty:
        new_files = dict(parent_files)
    else:
        try:
            new_files = diffs.apply(parent_files, diff)
        except diffs.PathEscape as e:
            return fail("paths_inside", "illegal_edit", str(e))
        except diffs.DiffError as e:
            return fail("applies", "preflight_crash", str(e))
    for path, counts in marker_check:  # the region markers themselves must survive the edit
        try:
            after = {k: len(v) for k, v in regions_of(new_files.get(path, "")).items()}
        except ValueError as e:
            return fail("regions", "illegal_edit", f"{path}: the edit breaks the region markers: {e}")
        if after != counts:
            return fail("regions", "illegal_edit", f"{path}: the edit moves or removes '# region:' / "
                        "'# endregion' markers")
    try:
        wsp.check_tree(spec, new_files)
    except wsp.WorkspaceError as e:
        return fail("size_limit", e.label if e.label in LABELS else "illegal_edit", str(e))
    ok("size_limit")
    ok("applies", "" if empty else f"{len(touched)} file(s) changed")
    result.files = new_files
    result.tree_sha = wsp.tree_sha(new_files)
    result.code_bytes = wsp.code_bytes(spec, new_files)
    if not empty:
        result.normalised_sha = duplicate_key(wsp.tree_sha(parent_files), diff)
        if result.normalised_sha in seen:
            return fail("not_duplicate", "duplicate", f"the same change on the same parent (normalised diff "
                        f"{result.normalised_sha[:12]}) was already tried in this campaign")
        if tree_key(result.tree_sha) in seen:
            return fail("not_duplicate", "duplicate", f"this exact code (tree {result.tree_sha[:12]}) was "
                        "already tried in this campaign")
        ok("not_duplicate")
    for path in sorted(p for p in touched if p.endswith(".py") and p in new_files):
        try:
            compile(new_files[path], path, "exec", dont_inherit=True)
        except SyntaxError as e:
            where = f"{path}:{e.lineno}" if e.lineno else path
            return fail("compiles", "preflight_crash", f"SyntaxError: {e.msg} ({where})")
        except (ValueError, RecursionError, MemoryError) as e:
            return fail("compiles", "preflight_crash", f"{type(e).__name__}: {e} ({path})")
    ok("compiles")
    cap = _gate(spec, "artifact_max_bytes")
    if cap:
        model = _estimate(spec, new_files, python)
        projected = result.code_bytes + (model or 0)
        what = f"code {result.code_bytes} B" + (f" + model estimate {model} B" if model is not None else
                                                  " (model bytes known only after training)")
        if projected > int(cap):
            return fail("artifact_fits", "size_blocked", f"{what} = {projected} B > cap {int(cap)} B")
        ok("artifact_fits", f"{what} <= cap {int(cap)} B")
    else:
        ok("artifact_fits", "no size cap")
    result.passed = True
    return result


def preflight(spec: Any, parent_files: dict[str, str], diff: str | None, *, surface: str | None = None,
              seen: set[str] | frozenset[str] = frozenset(), allow_empty: bool = False
              ) -> tuple[bool, list[Check], str | None]:
    """``(passed, checks, label)``; label is None when passed."""
    return check(spec, parent_files, diff, surface=surface, seen=seen, allow_empty=allow_empty).as_tuple()


def _ranges(nums: list[int]) -> str:
    out: list[str] = []
    start = prev = nums[0]
    for n in nums[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


def _estimate(spec: Any, files: dict[str, str], python: str | None) -> int | None:
    """The task's model-size estimate for this code, or None when it declares none."""
    cmd = _command(spec, "estimate")
    if not cmd:
        return None
    import sys

    from tasks import bwrap, sandbox
    from tasks import sandbox_plan as splan

    try:
        bwrap.probe()
    except bwrap.SandboxUnavailable:
        return None  # recipe code never runs unsandboxed, not even an estimate
    with tempfile.TemporaryDirectory(prefix="arledger-preflight-") as tmp:
        ws = Path(tmp) / "ws"
        out = Path(tmp) / "out"
        wsp.build_workspace(spec, files, ws)
        out.mkdir()
        plan = splan.estimate_plan(ws=ws, out=out, staged=wsp.staged_paths(spec),
                                   limits=splan.limits_for(spec.resources.memory_mb, spec.resources.max_procs, 1))
        argv = sandbox.Placeholders({"python": python or sys.executable, "ws": str(ws), "out": str(out)}).argv(cmd)
        lines: list[str] = []
        res = sandbox.run(argv, cwd=ws, env=sandbox.trial_env(home=out, out=out, threads=1),
                          log_path=Path(tmp) / "log", timeout_s=_budget(spec, "preflight_s", 30.0),
                          on_line=lines.append, plan=plan, sweep_roots=[ws, out])
        if res.exit_status != 0 or not lines:
            return None
        try:
            return int(float(lines[-1].strip().split()[-1]))
        except (ValueError, IndexError):
            return None
