"""What a unified diff actually touched: files, enclosing functions and classes, knobs.

``analyse(diff, parent_files)`` parses the diff's hunks. With the parent's code (``{path: text}``)
it applies the diff (strictly; on any mismatch it falls back), parses old and new code with
``ast`` and maps every removed line (old numbering) and added line (new numbering) to its
innermost enclosing ``def``/``class`` (``Class.method``); knobs are module-level ``NAME = literal``
assignments whose literal changed; the edit is a **hyperparameter edit** when the two modules are
identical once knob literals are blanked out, else a **program-level edit**. Without the parent's
code it falls back to the hunk headers (the text after the second ``@@``, as ``git diff`` writes
it) and the ``def``/``class`` lines seen in the hunk before a change, and judges knob and edit kind
from the changed lines themselves.

Also here: region markers (``# region: NAME`` … ``# endregion``), used by the audit to check that
changed lines stay inside a surface's regions.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from ledger import diffs

_DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+([A-Za-z_][A-Za-z0-9_]*)")
_KNOB_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*[^=]+)?=\s*(.+?)\s*(?:#.*)?$")
_REGION = re.compile(r"^\s*#\s*region:?\s*([A-Za-z0-9_.\-]+)")
_ENDREGION = re.compile(r"^\s*#\s*endregion\b")

# parsing and applying is ledger.diffs's (one strict implementation for the runner, the agents and
# the audit); a diff it rejects is reported by analyse() with the parser's message


def changed_lines(fp: diffs.FilePatch) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(removed lines with old numbers, added lines with new numbers), without line endings."""
    removed: list[tuple[int, str]] = []
    added: list[tuple[int, str]] = []
    for h in fp.hunks:
        o, n = h.old_start, h.new_start
        for line in h.lines:
            tag, text = line[:1], line[1:].rstrip("\r\n")
            if tag == " ":
                o += 1
                n += 1
            elif tag == "-":
                removed.append((o, text))
                o += 1
            elif tag == "+":
                added.append((n, text))
                n += 1
    return removed, added


def apply_diff(files: dict[str, str], diff: str) -> dict[str, str] | None:
    """The files after a diff, or None if it does not parse or does not apply."""
    try:
        return diffs.apply(files, diff)
    except diffs.DiffError:
        return None


# ---------------------------------------------------------------------------------------------
# code structure


def scopes(source: str) -> list[tuple[int, int, str]] | None:
    """(first line, last line, qualified name) of every def/class, or None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    out: list[tuple[int, int, str]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *[d.lineno for d in child.decorator_list]])
                out.append((first, child.end_lineno or child.lineno, name))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree, "")
    return out


def enclosing(sc: list[tuple[int, int, str]], line: int) -> str | None:
    best: tuple[int, int, str] | None = None
    for s in sc:
        if s[0] <= line <= s[1] and (best is None or s[0] >= best[0]):
            best = s
    return best[2] if best else None


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


def module_knobs(source: str) -> dict[str, str] | None:
    """Module-level ``NAME = literal`` assignments as {name: repr(value)}; None if unparsable."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    out: dict[str, str] = {}
    for node in tree.body:
        target, value = _knob_target(node)
        if target is not None and value is not None:
            v = _literal(value)
            if v is not _NOT_LITERAL:
                out[target] = repr(v)
    return out


def _knob_target(node: ast.AST) -> tuple[str | None, ast.AST | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def knob_lines(source: str) -> dict[int, str]:
    """Line number -> knob name, for every line of a module-level literal assignment."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    out: dict[int, str] = {}
    for node in tree.body:
        target, value = _knob_target(node)
        if target is not None and value is not None and _literal(value) is not _NOT_LITERAL:
            for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                out[ln] = target
    return out


class _BlankKnobs(ast.NodeTransformer):
    def visit_Module(self, node: ast.Module) -> ast.Module:
        for stmt in node.body:
            target, value = _knob_target(stmt)
            if target is not None and value is not None and _literal(value) is not _NOT_LITERAL:
                if isinstance(stmt, ast.Assign | ast.AnnAssign):
                    stmt.value = ast.Constant(value="<knob>")
        return node


def same_program(old: str, new: str) -> bool | None:
    """Whether two modules differ only in knob literals (None if either does not parse)."""
    try:
        a, b = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError):
        return None
    return ast.dump(_BlankKnobs().visit(a)) == ast.dump(_BlankKnobs().visit(b))


def regions(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of every ``# region: NAME`` … ``# endregion`` block."""
    out: list[tuple[int, int, str]] = []
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(source.splitlines(), start=1):
        m = _REGION.match(line)
        if m:
            stack.append((i, m.group(1)))
        elif _ENDREGION.match(line) and stack:
            start, name = stack.pop()
            out.append((start, i, name))
    return out


# ---------------------------------------------------------------------------------------------


@dataclass
class Analysis:
    files: list[str]
    functions: list[str]
    knobs: dict[str, list[str | None]]  # name -> [old, new]
    edit_kind: str  # hyperparameter | program | empty | unknown
    basis: str  # "parent code" | "hunk headers"
    added: dict[str, list[int]] = field(default_factory=dict)  # new line numbers per file
    removed: dict[str, list[int]] = field(default_factory=dict)  # old line numbers per file
    new_files: dict[str, str] | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "functions": self.functions, "knobs": self.knobs,
                "edit_kind": self.edit_kind, "basis": self.basis, "error": self.error}


def _meaningful(text: str) -> bool:
    s = text.strip()
    return bool(s) and not s.startswith("#")


def analyse(diff: str, parent_files: dict[str, str] | None = None) -> Analysis:
    try:
        patches = diffs.parse(diff)
    except diffs.DiffError as e:
        return Analysis([], [], {}, "unknown", "hunk headers", error=str(e))
    files = sorted({fp.path for fp in patches})
    per_file = {fp.path: changed_lines(fp) for fp in patches}
    removed = {p: [n for n, _ in r] for p, (r, _a) in per_file.items()}
    added = {p: [n for n, _ in a] for p, (_r, a) in per_file.items()}
    if not any(removed[p] or added[p] for p in per_file):
        return Analysis(files, [], {}, "empty", "hunk headers", added, removed)

    new_files = None
    if parent_files is not None:
        try:
            new_files = diffs.apply_patches(parent_files, patches)
        except diffs.DiffError:
            pass
    if new_files is not None and parent_files is not None:
        functions: set[str] = set()
        knobs: dict[str, list[str | None]] = {}
        kinds: list[bool | None] = []
        for fp in patches:
            old_src = parent_files.get(fp.old_path or "", "") if fp.old_path else ""
            new_src = new_files.get(fp.new_path or "", "") if fp.new_path else ""
            r, a = per_file[fp.path]
            so, sn = scopes(old_src), scopes(new_src)
            for ln, _ in r:
                name = enclosing(so, ln) if so else None
                if name:
                    functions.add(name)
            for ln, _ in a:
                name = enclosing(sn, ln) if sn else None
                if name:
                    functions.add(name)
            ko, kn = module_knobs(old_src) or {}, module_knobs(new_src) or {}
            for k in sorted(set(ko) | set(kn)):
                if ko.get(k) != kn.get(k):
                    knobs[k] = [ko.get(k), kn.get(k)]
            if fp.path.endswith(".py") and fp.old_path and fp.new_path:
                kinds.append(same_program(old_src, new_src))
            else:
                kinds.append(False)
        if all(k is True for k in kinds) and knobs:
            kind = "hyperparameter"
        elif all(k is True for k in kinds):
            kind = "empty"  # only comments or formatting changed
        else:
            kind = "program"
        return Analysis(files, sorted(functions), knobs, kind, "parent code", added, removed, new_files)

    # hunk headers only
    functions = set()
    knobs = {}
    only_knobs = True
    for fp in patches:
        for h in fp.hunks:
            ctx = _DEF.match(h.header)
            current = ctx.group(3) if ctx else None
            for line in h.lines:
                tag, text = line[:1], line[1:].rstrip("\r\n")
                m = _DEF.match(text)
                if m:
                    current = m.group(3)
                if tag in "+-" and _meaningful(text):
                    if current:
                        functions.add(current)
                    k = _KNOB_LINE.match(text)
                    is_knob = False
                    if k and not text[:1].isspace():
                        v = _literal_text(k.group(2))
                        if v is not _NOT_LITERAL:
                            is_knob = True
                            slot = knobs.setdefault(k.group(1), [None, None])
                            slot[0 if tag == "-" else 1] = repr(v)
                    if not is_knob:
                        only_knobs = False
        if not fp.path.endswith(".py") or fp.old_path is None or fp.new_path is None:
            only_knobs = False
    knobs = {k: v for k, v in knobs.items() if v[0] != v[1]}
    if only_knobs and knobs:
        kind = "hyperparameter"
    elif only_knobs:
        kind = "empty"
    else:
        kind = "program"
    return Analysis(files, sorted(functions), knobs, kind, "hunk headers", added, removed,
                    error="" if parent_files is None else "diff does not apply to the parent's code")


def _literal_text(src: str) -> Any:
    try:
        return ast.literal_eval(src)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL
