"""Unified diffs between recipe trees: make, parse, check, apply — strictly.

Shared by the runner side (workspaces, preflight), the agents and the projections (the audit's
diff analysis), so it lives in the lowest layer.

A trial's code is its parent's code plus one unified diff. Files are ``{relative path: text}``.
``apply`` never fuzzes: every context and removed line must match exactly, or the diff is
rejected with a message naming the file and line. ``check_paths`` rejects any path that could
leave the workspace (absolute, ``..``, backslashes, NUL, or through a symlink in the tree).
"""

from __future__ import annotations

import difflib
import hashlib
import posixpath
import re
from dataclasses import dataclass, field


class DiffError(ValueError):
    """The text is not a valid unified diff for these files; the message says where and why."""


class PathEscape(DiffError):
    """A diff path leaves the workspace."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[str] = field(default_factory=list)  # each starts with ' ', '-' or '+'
    header: str = ""  # the text after the second '@@' (git writes the enclosing def/class there)


@dataclass
class FilePatch:
    old_path: str | None  # None: file created
    new_path: str | None  # None: file deleted
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


NO_NEWLINE = "\\ No newline at end of file\n"
_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)")


def make_diff(old: dict[str, str], new: dict[str, str]) -> str:
    """A unified diff (``a/``, ``b/`` prefixes, 3 lines of context) from ``old`` to ``new``."""
    out: list[str] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        a_lines = _split(a) if a is not None else []
        b_lines = _split(b) if b is not None else []
        fromfile = f"a/{path}" if a is not None else "/dev/null"
        tofile = f"b/{path}" if b is not None else "/dev/null"
        for line in difflib.unified_diff(a_lines, b_lines, fromfile, tofile, n=3, lineterm=""):
            if line.startswith(("---", "+++", "@@")):
                out.append(line.rstrip("\n") + "\n")
            elif line.endswith("\n"):
                out.append(line)
            else:  # last line of a file without a final newline
                out.append(line + "\n" + NO_NEWLINE)
    return "".join(out)


def _split(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def diff_sha(diff: str) -> str:
    return hashlib.sha256(diff.encode()).hexdigest()


def normalise(diff: str) -> str:
    """A canonical form for duplicate detection: hunks' +/- lines only, whitespace-trimmed."""
    keep = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            keep.append(line.split("\t")[0].strip())
        elif line.startswith(("+", "-")):
            body = line[1:].strip()
            if body:
                keep.append(line[0] + " ".join(body.split()))
    return "\n".join(keep)


def duplicate_key(parent_tree_sha: str, diff: str) -> str:
    """The duplicate key of a change: the same normalised diff on the same parent code. (The same
    change on another parent is a different trial: that is how keeps are combined.)"""
    return hashlib.sha256(f"{parent_tree_sha}\n{normalise(diff)}".encode()).hexdigest()


def tree_key(tree_sha: str) -> str:
    """The duplicate key of a resulting code tree: the exact code was already tried."""
    return f"tree:{tree_sha}"


def parse(diff: str) -> list[FilePatch]:
    """Parse a unified diff; raises DiffError with the line number of the first problem."""
    if not diff.strip():
        raise DiffError("the diff is empty: it changes nothing")
    lines = diff.splitlines(keepends=True)
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- "):
            if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
                raise DiffError(f"diff line {i + 1}: '---' header not followed by '+++'")
            old_path = _header_path(line[4:], "a/")
            new_path = _header_path(lines[i + 1][4:], "b/")
            patch = FilePatch(old_path, new_path)
            patches.append(patch)
            i += 2
            while i < len(lines) and lines[i].startswith("@@"):
                m = _HUNK_RE.match(lines[i])
                if not m:
                    raise DiffError(f"diff line {i + 1}: malformed hunk header {lines[i].strip()!r}")
                hunk = Hunk(int(m[1]), int(m[2]) if m[2] is not None else 1,
                            int(m[3]), int(m[4]) if m[4] is not None else 1, header=m[5].rstrip("\r\n"))
                i += 1
                old_seen = new_seen = 0
                while i < len(lines) and (old_seen < hunk.old_len or new_seen < hunk.new_len):
                    body = lines[i]
                    tag = body[:1]
                    if body.startswith("\\"):
                        if hunk.lines:
                            hunk.lines[-1] = hunk.lines[-1].rstrip("\n")
                        i += 1
                        continue
                    if tag == "\n" or body == "":
                        tag, body = " ", " \n"
                    if tag not in " +-":
                        raise DiffError(
                            f"diff line {i + 1}: hunk for {patch.path} ends early "
                            f"(expected {hunk.old_len} old / {hunk.new_len} new lines)"
                        )
                    if tag in " -":
                        old_seen += 1
                    if tag in " +":
                        new_seen += 1
                    hunk.lines.append(body)
                    i += 1
                if old_seen != hunk.old_len or new_seen != hunk.new_len:
                    raise DiffError(
                        f"diff for {patch.path}: hunk @@ -{hunk.old_start},{hunk.old_len} "
                        f"+{hunk.new_start},{hunk.new_len} @@ has {old_seen} old / {new_seen} new lines"
                    )
                while i < len(lines) and lines[i].startswith("\\"):
                    if hunk.lines:
                        hunk.lines[-1] = hunk.lines[-1].rstrip("\n")
                    i += 1
                patch.hunks.append(hunk)
            if not patch.hunks and not (patch.old_path is None or patch.new_path is None):
                raise DiffError(f"diff for {patch.path}: no hunks")
            continue
        if line.startswith(("diff ", "index ", "new file", "deleted file", "similarity", "rename ",
                            "old mode", "new mode")):
            if line.startswith(("old mode", "new mode")) and "120000" in line:
                raise PathEscape("the diff creates a symlink; recipes may not contain symlinks")
            i += 1
            continue
        if line.strip() == "":
            i += 1
            continue
        if not patches:
            raise DiffError(f"diff line {i + 1}: expected a '--- a/FILE' header, got {line.strip()[:60]!r}")
        raise DiffError(f"diff line {i + 1}: unexpected text outside a hunk: {line.strip()[:60]!r}")
    if not patches:
        raise DiffError("no file headers ('--- a/FILE', '+++ b/FILE') found: not a unified diff")
    for p in patches:
        for path in (p.old_path, p.new_path):
            if path is not None:
                check_path(path)
    return patches


def _header_path(raw: str, prefix: str) -> str | None:
    path = raw.split("\t")[0].strip()
    if path == "/dev/null":
        return None
    if path.startswith(prefix):
        path = path[len(prefix):]
    return path


def check_path(path: str) -> str:
    """Return the normalised relative path, or raise PathEscape naming the problem."""
    if not path or "\x00" in path or "\\" in path:
        raise PathEscape(f"illegal path {path!r} in diff")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise PathEscape(f"absolute path {path!r} in diff: edits must stay inside the workspace")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or "/../" in f"/{path}/":
        raise PathEscape(f"path {path!r} leaves the workspace ('..')")
    return norm


def touched(diff: str) -> list[str]:
    """Paths a diff touches (created, changed or deleted)."""
    return sorted({p.path for p in parse(diff)})


def apply(files: dict[str, str], diff: str) -> dict[str, str]:
    """Apply ``diff`` to ``files`` exactly; returns a new dict. Raises DiffError on any mismatch."""
    return apply_patches(files, parse(diff))


def apply_patches(files: dict[str, str], patches: list[FilePatch]) -> dict[str, str]:
    """Apply parsed file patches exactly (as ``apply``)."""
    out = dict(files)
    for patch in patches:
        if patch.old_path is None:
            if patch.new_path in out:
                raise DiffError(f"diff creates {patch.new_path}, which already exists")
            src: list[str] = []
        else:
            if patch.old_path not in out:
                raise DiffError(f"diff changes {patch.old_path}, which does not exist in the parent's code")
            src = _split(out[patch.old_path])
        result: list[str] = []
        pos = 0  # index into src
        for h in patch.hunks:
            start = max(h.old_start - 1, 0) if h.old_len else h.old_start
            if start < pos:
                raise DiffError(f"diff for {patch.path}: overlapping hunks at line {h.old_start}")
            result.extend(src[pos:start])
            pos = start
            for body in h.lines:
                tag, text = body[0], body[1:]
                if tag in " -":
                    got = src[pos] if pos < len(src) else None
                    if got is None or _strip_nl(got) != _strip_nl(text):
                        raise DiffError(
                            f"diff does not apply to {patch.path} at line {pos + 1}: expected "
                            f"{_strip_nl(text)[:70]!r}, found {(_strip_nl(got) if got is not None else '<end of file>')[:70]!r}"
                        )
                    if tag == " ":
                        result.append(got)
                    pos += 1
                else:
                    result.append(text)
        result.extend(src[pos:])
        if patch.new_path is None:
            out.pop(patch.old_path or "", None)
        else:
            if patch.old_path and patch.old_path != patch.new_path:
                out.pop(patch.old_path, None)
            out[patch.new_path] = "".join(result)
    return out


def _strip_nl(s: str) -> str:
    return s.rstrip("\n").rstrip("\r")


def changed_lines(files: dict[str, str], diff: str) -> dict[str, set[int]]:
    """For each touched file, the 1-based line numbers in the *old* file that the diff changes
    (removed lines, and the line an insertion lands before). Used for region/surface checks."""
    out: dict[str, set[int]] = {}
    for patch in parse(diff):
        lines: set[int] = out.setdefault(patch.path, set())
        for h in patch.hunks:
            old_no = h.old_start if h.old_len else h.old_start + 1
            for body in h.lines:
                tag = body[0]
                if tag == " ":
                    old_no += 1
                elif tag == "-":
                    lines.add(old_no)
                    old_no += 1
                else:
                    lines.add(max(old_no - 1, 1) if old_no > 1 else 1)
    return out
