"""Workspaces: a trial's code, rebuilt from the ledger, written to disk, and checked.

A trial's code is the task's baseline snapshot (its ``recipe_dir``; recorded in the campaign as
an artifact when the campaign was opened by :func:`tasks.submit.open_campaign`) plus the chain of
diffs from the root of its lineage down to it (each ``TrialProposed`` names its ``parent_id`` and
the ``diff_sha`` of its diff against the parent's code in the artifact store).

* :func:`trial_files` — ``{relative path: text}`` of a trial (memoised per ledger and trial: a
  proposal is immutable).
* :func:`tree_sha` — sha256 over the sorted ``(path, sha256(content))`` pairs.
* :func:`build_workspace` — writes the files into a fresh directory (refusing paths that leave it,
  symlinks anywhere on the way, evaluator-owned paths, oversize trees: :class:`WorkspaceError` with
  label ``illegal_edit``), re-reads and checks the tree hash, then stages the evaluator-owned files
  of ``stage_into_workspace`` fresh from the task directory, read-only (0444, root-owned when the
  runner is root), at their task-relative paths.
* :func:`hash_evaluator_files` — after the run: a staged file that was changed, replaced,
  removed or turned into a symlink is an ``illegal_edit`` (:func:`evaluator_changes`).
* :func:`stage_evaluator` — the evaluator's own fresh read-only copy, in a separate directory,
  from which the evaluator runs (never from the workspace).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ledger import diffs
from ledger import events as ev
from ledger.aggregates import Campaign
from ledger.app import Ledger
from tasks.spec import TaskSpec

MAX_FILE_BYTES = 4 << 20
"""The largest single file a workspace may hold (recipe code, not data)."""
MAX_TREE_BYTES = 16 << 20
"""The largest total size of a trial's code."""
MAX_FILES = 2000
MAX_DIFF_BYTES = 2 << 20
"""The largest diff a trial may carry."""

_SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}


class WorkspaceError(RuntimeError):
    """The trial's code cannot be built as asked; ``label`` is the outcome it earns."""

    def __init__(self, message: str, label: str = "illegal_edit"):
        super().__init__(message)
        self.label = label


# -------------------------------------------------------------------------------------------------
# what a task owns


def evaluator_owned(spec: TaskSpec) -> list[str]:
    """Evaluator-owned paths (task-relative; staged ones appear at the same path in a workspace)."""
    return sorted({diffs.check_path(p) for p in list(spec.evaluator_files) + list(spec.stage_into_workspace)})


def staged_paths(spec: TaskSpec) -> list[str]:
    return sorted({diffs.check_path(p) for p in spec.stage_into_workspace})


# -------------------------------------------------------------------------------------------------
# trees


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def tree_sha(files: dict[str, str] | dict[str, bytes]) -> str:
    """sha256 over the sorted (path, sha256(content)) pairs, one ``path\\0sha\\n`` line each."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path}\0{sha256_text(files[path])}\n".encode())
    return h.hexdigest()


def code_bytes(spec: TaskSpec, files: dict[str, str]) -> int:
    """The recipe's code bytes: UTF-8 bytes of its ``recipe_files`` (what the size gate counts)."""
    return sum(len(files[p].encode()) for p in spec.recipe_files if p in files)


def read_tree(root: Path, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """All regular files under ``root`` as text (caches skipped), without following symlinks;
    a symlink or a non-regular file is an error."""
    out: dict[str, str] = {}
    root = Path(root)
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for d in dirs:
            if os.path.islink(os.path.join(dirpath, d)):
                raise WorkspaceError(f"{os.path.join(dirpath, d)} is a symlink; recipes may not contain symlinks")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in exclude:
                continue
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise WorkspaceError(f"{rel} is not a regular file (symlink or device); recipes may not contain it")
            out[rel] = Path(full).read_bytes().decode("utf-8", errors="surrogateescape")
    return out


def baseline_files(spec: TaskSpec) -> dict[str, str]:
    """The task's baseline snapshot: every file of its recipe_dir."""
    return read_tree(spec.recipe_path)


def after_tree_sha(root: Path, exclude: set[str] | frozenset[str] = frozenset(), limit: int = 64 << 20) -> str:
    """Hash of what a run left in its workspace (regular files, caches skipped, symlinks named):
    compare with the tree hash it started from."""
    h = hashlib.sha256()
    seen = 0
    entries: list[tuple[str, str]] = []
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in exclude or name.endswith((".pyc", ".pyo")):
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                entries.append((rel, "symlink:" + sha256_text(os.readlink(full))))
            elif stat.S_ISREG(st.st_mode):
                if seen + st.st_size > limit:
                    entries.append((rel, f"size:{st.st_size}"))
                    continue
                seen += st.st_size
                entries.append((rel, _file_sha(Path(full))))
    for rel, s in sorted(entries):
        h.update(f"{rel}\0{s}\n".encode())
    return h.hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -------------------------------------------------------------------------------------------------
# from the ledger


_CACHE: OrderedDict[tuple[str, uuid.UUID], dict[str, str]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 256


def _cache_get(key: tuple[str, uuid.UUID]) -> dict[str, str] | None:
    with _CACHE_LOCK:
        v = _CACHE.get(key)
        if v is not None:
            _CACHE.move_to_end(key)
        return v


def _cache_put(key: tuple[str, uuid.UUID], files: dict[str, str]) -> None:
    with _CACHE_LOCK:
        _CACHE[key] = files
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)


def _ledger_key(ledger: Ledger) -> str:
    """A key unique to one ledger (its id: the hash of its first event, which holds its own public
    key), so that two ledgers with the same trial ids never share cached code."""
    return ledger.ledger_id()


def baseline_for_campaign(ledger: Ledger, campaign_id: uuid.UUID) -> dict[str, str]:
    """The baseline snapshot a campaign recorded when it was opened (``CampaignOpened.baseline_sha``;
    older ledgers kept it in ``config.baseline_tree_sha``)."""
    camp = ledger.load(Campaign, campaign_id)
    if camp.opened is None:
        raise WorkspaceError(f"campaign {campaign_id} was never opened; no baseline to start from", "crash")
    sha = camp.opened.baseline_sha or (camp.opened.config or {}).get("baseline_tree_sha")
    if not sha:
        raise WorkspaceError(f"campaign {camp.name} recorded no baseline snapshot; its trials cannot be rebuilt",
                             "crash")
    return json.loads(ledger.artifacts.get(sha))


def trial_files(ledger: Ledger, trial_id: uuid.UUID) -> dict[str, str]:
    """A trial's code: the campaign's baseline plus every diff from the lineage root down to it.
    Raises WorkspaceError (label ``illegal_edit`` for a path escape, ``crash`` otherwise)."""
    key = (_ledger_key(ledger), trial_id)
    hit = _cache_get(key)
    if hit is not None:
        return dict(hit)
    chain: list[ev.TrialProposed] = []
    seen: set[uuid.UUID] = set()
    tid: uuid.UUID | None = trial_id
    base: dict[str, str] | None = None
    while tid is not None:
        if tid in seen:
            raise WorkspaceError(f"trial {tid} is its own ancestor (a cycle in parent_id)", "crash")
        seen.add(tid)
        cached = _cache_get((key[0], tid)) if tid != trial_id else None
        if cached is not None:
            base = dict(cached)
            break
        stream = ledger.stream(tid)
        if not stream or not isinstance(stream[0], ev.TrialProposed):
            raise WorkspaceError(f"trial {tid} has no proposal in the ledger", "crash")
        prop = stream[0]
        chain.append(prop)
        tid = prop.parent_id
    if base is None:
        base = baseline_for_campaign(ledger, chain[-1].campaign_id)
    files = base
    for prop in reversed(chain):
        if prop.diff_sha:
            diff = ledger.artifacts.get_text(prop.diff_sha)
            if diff.strip():
                try:
                    files = diffs.apply(files, diff)
                except diffs.PathEscape as e:
                    raise WorkspaceError(f"trial {prop.number}: {e}", "illegal_edit") from None
                except diffs.DiffError as e:
                    raise WorkspaceError(f"trial {prop.number}: its diff does not apply: {e}", "crash") from None
        _cache_put((key[0], prop.originator_id), dict(files))
    return dict(files)


# -------------------------------------------------------------------------------------------------
# on disk


def check_dest(dest: Path) -> Path:
    """``dest`` as an absolute path with no symlink in any of its components."""
    dest = Path(os.path.abspath(dest))
    p = Path("/")
    for part in dest.parts[1:]:
        p = p / part
        if os.path.islink(p):
            raise WorkspaceError(f"workspace path {dest} goes through the symlink {p}; refusing to build there",
                                 "crash")
    return dest


def check_tree(spec: TaskSpec, files: dict[str, str]) -> None:
    """Everything that makes a tree illegal to write: escaping paths, evaluator-owned paths (or a
    path that would shadow one's directory), too many or too large files."""
    owned = evaluator_owned(spec)
    owned_dirs = {posixpath.dirname(p) for p in owned} - {""}
    total = 0
    if len(files) > MAX_FILES:
        raise WorkspaceError(f"the trial's code has {len(files)} files (limit {MAX_FILES})")
    for path, text in files.items():
        try:
            norm = diffs.check_path(path)
        except diffs.PathEscape as e:
            raise WorkspaceError(str(e)) from None
        if norm != path:
            raise WorkspaceError(f"path {path!r} is not in normal form ({norm!r})")
        if norm in owned:
            raise WorkspaceError(f"{norm} is evaluator-owned; a trial may not provide or change it")
        if norm in owned_dirs or any(o.startswith(norm + "/") for o in owned):
            raise WorkspaceError(f"{norm} would replace the directory of evaluator-owned files")
        size = len(text.encode("utf-8", errors="surrogateescape"))
        if size > MAX_FILE_BYTES:
            raise WorkspaceError(f"{norm} is {size} bytes (limit {MAX_FILE_BYTES} per file)")
        total += size
    if total > MAX_TREE_BYTES:
        raise WorkspaceError(f"the trial's code is {total} bytes (limit {MAX_TREE_BYTES})")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode, follow_symlinks=False)


def _mkdirs(root: Path, rel_dir: str) -> None:
    p = root
    for part in [x for x in rel_dir.split("/") if x]:
        p = p / part
        try:
            os.mkdir(p, 0o755)
        except FileExistsError:
            if os.path.islink(p) or not p.is_dir():
                raise WorkspaceError(f"{p} is not a directory (symlink?)") from None


def build_workspace(spec: TaskSpec, files: dict[str, str], dest: Path) -> str:
    """Write ``files`` into the fresh directory ``dest``, check the tree hash, stage the evaluator
    files read-only. Returns the tree hash."""
    check_tree(spec, files)
    dest = check_dest(dest)
    if dest.exists():
        if os.path.islink(dest) or not dest.is_dir() or any(dest.iterdir()):
            raise WorkspaceError(f"workspace {dest} already exists and is not empty", "crash")
    else:
        dest.mkdir(parents=True, mode=0o755)
    want = tree_sha(files)
    for path in sorted(files):
        _mkdirs(dest, posixpath.dirname(path))
        _write_new(dest / path, files[path].encode("utf-8", errors="surrogateescape"), 0o644)
    got = tree_sha(read_tree(dest))
    if got != want:
        raise WorkspaceError(f"workspace {dest} does not hold the trial's code (tree {got[:12]} != {want[:12]})",
                             "crash")
    stage_files(spec, staged_paths(spec), dest)
    return want


def stage_files(spec: TaskSpec, paths: list[str], dest: Path) -> None:
    """Copy evaluator-owned ``paths`` fresh from the task directory into ``dest`` (same relative
    paths), read-only 0444, owned by root when we are root; directories created for them are
    root's too (0755), so an unprivileged recipe cannot swap them."""
    src_root = spec.root
    is_root = os.geteuid() == 0
    for rel in paths:
        rel = diffs.check_path(rel)
        src = src_root / rel
        if not src.is_file() or src.is_symlink():
            raise WorkspaceError(f"evaluator file {rel} is missing from the task directory {src_root}", "crash")
        parent = posixpath.dirname(rel)
        if parent:
            _mkdirs(dest, parent)
            if is_root:
                p = dest
                for part in parent.split("/"):
                    p = p / part
                    os.chown(p, 0, 0, follow_symlinks=False)
                    os.chmod(p, 0o755)
        target = dest / rel
        if os.path.lexists(target):
            raise WorkspaceError(f"{rel} already exists in {dest}; evaluator files are staged fresh", "illegal_edit")
        _write_new(target, src.read_bytes(), 0o444)
        if is_root:
            os.chown(target, 0, 0, follow_symlinks=False)


def hash_evaluator_files(dest: Path, paths: list[str]) -> dict[str, str]:
    """sha256 of each staged evaluator file under ``dest``, or what it became instead
    (``<missing>``, ``<symlink>``, ``<not a file>``, ``<writable>``)."""
    out = {}
    for rel in paths:
        p = Path(dest) / rel
        try:
            st = os.lstat(p)
        except OSError:
            out[rel] = "<missing>"
            continue
        if stat.S_ISLNK(st.st_mode):
            out[rel] = "<symlink>"
        elif not stat.S_ISREG(st.st_mode):
            out[rel] = "<not a file>"
        elif st.st_mode & 0o222:
            out[rel] = "<writable>"
        else:
            out[rel] = _file_sha(p)
    return out


def expected_evaluator_hashes(spec: TaskSpec, paths: list[str]) -> dict[str, str]:
    return {rel: _file_sha(spec.root / rel) for rel in paths}


def evaluator_changes(spec: TaskSpec, dest: Path, expected: dict[str, str] | None = None) -> list[str]:
    """The staged evaluator files in ``dest`` that no longer match the task's (empty: untouched)."""
    paths = staged_paths(spec)
    want = expected or expected_evaluator_hashes(spec, paths)
    got = hash_evaluator_files(dest, paths)
    return [f"{p} ({got[p] if got[p].startswith('<') else 'changed'})" for p in paths if got[p] != want[p]]


def stage_evaluator(spec: TaskSpec, dest: Path) -> Path:
    """A fresh read-only copy of every evaluator-owned file under ``dest``; returns ``{eval_dir}``:
    the directory that holds them (their common parent, e.g. ``dest/evaluator``)."""
    dest = check_dest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = sorted({diffs.check_path(p) for p in spec.evaluator_files})
    stage_files(spec, paths, dest)
    parents = [posixpath.dirname(p) for p in paths]
    common = posixpath.commonpath(parents) if parents and all(parents) else ""
    return dest / common if common else dest


def remove_tree(path: Path) -> None:
    """Remove a trial directory even where the recipe left read-only bits behind."""

    def _onerror(func: Any, p: str, exc: Any) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700, follow_symlinks=False)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=_onerror)
