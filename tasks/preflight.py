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

:func:`check` returns a :class:`Preflight` with the new files, their tree hash and the duplicate key
of the change. It runs once per trial, at submission (``tasks.submit``); the runner later rebuilds
the code from the ledger and checks it against the tree hash recorded here.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path

from ledger import diffs
from ledger.events import Check
from tasks import workspace as wsp
from tasks.knobs import regions_of
from tasks.spec import TaskSpec

LABELS = ("illegal_edit", "duplicate", "preflight_crash", "size_blocked")


@dataclass
class Preflight:
    passed: bool
    checks: list[Check]
    label: str | None
    files: dict[str, str] | None = None  # the trial's code, when the diff applied
    tree_sha: str | None = None
    code_bytes: int = 0
    diff_key: str | None = None  # diffs.duplicate_key of the change on its parent (None: an empty diff)
    reason: str = ""  # the first failed check's detail
    touched: list[str] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        """The duplicate keys this trial adds to its campaign's (see ``seen`` of :func:`check`)."""
        out = {diffs.tree_key(self.tree_sha)} if self.tree_sha else set()
        return out | ({self.diff_key} if self.diff_key else set())


def surface_scope(spec: TaskSpec, name: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(files, regions) a surface may touch; no surface: the task's recipe files, anywhere.
    KeyError for a surface the task does not have."""
    if not name:
        return spec.recipe_files, ()
    s = spec.surfaces[name]
    return s.files or spec.recipe_files, s.regions


def check_edit(spec: TaskSpec, parent_files: dict[str, str], diff: str, *, surface: str | None) -> str | None:
    """The checks a specialist's tool runs on an edit before it submits (``parses`` .. ``applies``
    of :func:`check`): None when the diff applies and stays inside the surface, else the first
    failure as ``check: detail``. Not a preflight of record: that runs once, at submission."""
    res = check(spec, parent_files, diff, surface=surface, structure_only=True)
    return None if res.passed else res.reason


def check(spec: TaskSpec, parent_files: dict[str, str], diff: str | None, *, surface: str | None = None,
          seen: Set[str] = frozenset(), allow_empty: bool = False, python: str | None = None,
          structure_only: bool = False) -> Preflight:
    """Run every check; see the module docstring. ``seen`` holds the duplicate keys of this
    campaign's earlier trials (their ``Preflight.keys``); ``allow_empty`` admits an empty diff
    (baseline, rerun); ``structure_only`` stops after ``applies`` (see :func:`check_edit`)."""
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
        files_allowed, regions = surface_scope(spec, surface)
    except KeyError:
        return fail("surface", "illegal_edit", f"unknown surface {surface!r}; the task has "
                    f"{', '.join(sorted(spec.surfaces)) or 'none'}")
    outside = [p for p in touched if p not in files_allowed]
    if outside:
        who = f"surface {surface!r}" if surface else "the task's recipe_files"
        return fail("surface", "illegal_edit", f"touches {', '.join(outside)}, outside {who} "
                    f"({', '.join(files_allowed)})")
    marker_check: list[tuple[str, set[str]]] = []
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
            allowed = [spans[r] for r in regions if r in spans]
            # changed_lines names removed lines and, for an insertion, the line it follows: inside a
            # region means between its markers, or right after the opening marker
            stray = sorted(n for n in changed if not any(a <= n <= b - 1 for a, b in allowed))
            if stray:
                return fail("surface", "illegal_edit",
                            f"{path}: lines {_ranges(stray)} are outside region(s) {', '.join(regions)} "
                            f"of surface {surface!r}")
            marker_check.append((path, set(spans)))
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
    for path, names in marker_check:  # the region markers themselves must survive the edit
        try:
            after = set(regions_of(new_files.get(path, "")))
        except ValueError as e:
            return fail("regions", "illegal_edit", f"{path}: the edit breaks the region markers: {e}")
        if after != names:
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
    if structure_only:
        result.passed = True
        return result
    if not empty:
        result.diff_key = diffs.duplicate_key(wsp.tree_sha(parent_files), diff)
        if result.diff_key in seen:
            return fail("not_duplicate", "duplicate", f"the same change on the same parent (normalised diff "
                        f"{result.diff_key[:12]}) was already tried in this campaign")
        if diffs.tree_key(result.tree_sha) in seen:
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
    cap = spec.gates.artifact_max_bytes
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


def _estimate(spec: TaskSpec, files: dict[str, str], python: str | None) -> int | None:
    """The task's model-size estimate for this code, or None when it declares none."""
    cmd = spec.commands.estimate
    if not cmd:
        return None
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
                          log_path=Path(tmp) / "log", timeout_s=spec.budgets.preflight_s,
                          on_line=lines.append, plan=plan, sweep_roots=[ws, out])
        if res.exit_status != 0 or not lines:
            return None
        try:
            return int(float(lines[-1].strip().split()[-1]))
        except (ValueError, IndexError):
            return None
