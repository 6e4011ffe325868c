"""A task's whole content as one artifact of the ledger, so a runner on any host can serve it.

When a campaign opens, :func:`record` stores the task's **bundle** — ``task.toml``, every file of
the recipe dir, the evaluator files and the prepare module when the task has one in its dir
(``prepare.py``) — as a single deterministic JSON object in the artifact store::

    {"format": "arledger-task-bundle/1", "task": NAME, "version": V, "task_sha": CONTENT_SHA,
     "files": {task-relative path: base64 of its bytes}}

(keys sorted, no spaces: the same bytes on every machine). Its address is the **bundle hash**,
recorded as ``CampaignOpened.task_bundle_sha``; ``task_sha`` inside it is
``TaskSpec.content_sha()``, recorded as ``CampaignOpened.task_sha``. A recipe that is an external
checkout (``recipe_dir = "{checkout}"``) is not bundled: each host keeps its own checkout, and the
content hash still checks it.

:func:`materialise` writes a bundle into a runner's cache (``<work root>/tasks/<bundle hash>/``),
loads it and checks its content hash against the campaign's. :func:`resolve` is the runner's one
rule for which copy of a campaign's task it runs (see its docstring).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ledger.aggregates import Campaign
from ledger.app import Ledger
from ledger.artifacts import sha256
from tasks.spec import TaskSpec, load_task

FORMAT = "arledger-task-bundle/1"


class TaskRefused(RuntimeError):
    """This runner will not serve a campaign's task; ``str(e)`` names the cause and the fix."""


@dataclass(frozen=True)
class Bundle:
    task: str
    version: str
    task_sha: str  # TaskSpec.content_sha()
    files: dict[str, bytes]
    data: bytes  # the canonical JSON
    sha: str  # its address: the bundle hash


def files_of(spec: TaskSpec) -> dict[str, bytes]:
    """What a bundle holds: the content-hashed files (no checkout files) and the prepare module."""
    out = {rel: data for rel, data in spec.content_files() if not rel.startswith("{checkout}/")}
    prep = spec.root / "prepare.py"
    if prep.is_file() and "prepare.py" not in out:
        out["prepare.py"] = prep.read_bytes()
    return out


def build(spec: TaskSpec) -> Bundle:
    files = files_of(spec)
    task_sha = spec.content_sha()
    doc = {"format": FORMAT, "task": spec.name, "version": spec.version, "task_sha": task_sha,
           "files": {p: base64.b64encode(b).decode("ascii") for p, b in sorted(files.items())}}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return Bundle(spec.name, spec.version, task_sha, files, data, sha256(data))


def record(ledger: Ledger, spec: TaskSpec) -> str:
    """Store the spec's bundle in the ledger's artifact store; its bundle hash."""
    b = build(spec)
    got = ledger.artifacts.put(b.data)
    assert got == b.sha, (got, b.sha)
    return b.sha


def parse(sha: str, data: bytes) -> Bundle:
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
        files = {str(p): base64.b64decode(v, validate=True) for p, v in doc["files"].items()}
        task, version, task_sha = str(doc["task"]), str(doc["version"]), str(doc["task_sha"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TaskRefused(f"task bundle {sha[:12]} in the ledger is not a task bundle ({e}); run "
                          "`arledger audit verify`") from None
    for p in files:
        pp = PurePosixPath(p)
        if pp.is_absolute() or ".." in pp.parts or not pp.parts or p.startswith("{"):
            raise TaskRefused(f"task bundle {sha[:12]} names the path {p!r}, outside a task directory; "
                              "run `arledger audit verify`")
    return Bundle(task, version, task_sha, files, data, sha)


def cache_root(work_root: Path) -> Path:
    return work_root / "tasks"


def materialise(ledger: Ledger, bundle_sha: str, root: Path, *, want_task_sha: str) -> TaskSpec:
    """The task of bundle ``bundle_sha``, written under ``root/<bundle hash>/`` (once; later calls
    reuse it), loaded and checked: its content hash must be ``want_task_sha``."""
    target = root / bundle_sha
    if not (target / ".arledger-bundle").is_file():
        try:
            data = ledger.artifacts.get(bundle_sha)  # checks the bytes against their address
        except Exception as e:  # noqa: BLE001 — missing or altered in the store
            raise TaskRefused(f"the campaign's task bundle {bundle_sha[:12]} cannot be read from the ledger "
                              f"({e}); run `arledger audit verify`, or serve the task with `--task PATH`") from None
        b = parse(bundle_sha, data)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        try:
            for rel, blob in b.files.items():
                p = tmp / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(blob)
                os.chmod(p, 0o644)
            for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
                os.chmod(d, 0o755)
            (tmp / ".arledger-bundle").write_text(f"{b.task} {b.version} {bundle_sha}\n")
            try:
                os.rename(tmp, target)
            except OSError:  # another runner of this host wrote it first
                if not (target / ".arledger-bundle").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    spec = load_task(target)
    got = spec.content_sha()
    if got != want_task_sha:
        raise TaskRefused(f"task {spec.name} materialised from bundle {bundle_sha[:12]} has content hash "
                          f"{got[:12]}, not the campaign's {want_task_sha[:12]} (an external checkout that "
                          "differs, or an altered ledger); fix: check out the campaign's recipe, or run "
                          "`arledger audit verify`")
    return spec


def identity(spec: TaskSpec) -> tuple[str, str]:
    """(content hash, bundle hash) of a local copy."""
    return spec.content_sha(), build(spec).sha


def resolve(ledger: Ledger, camp: Campaign, *, local: Sequence[TaskSpec], builtin: TaskSpec | None,
            root: Path, log: Callable[[str], None] = lambda _m: None) -> TaskSpec:
    """The copy of campaign ``camp``'s task a runner runs. The campaign's task is its content hash
    and bundle as opened (or as last resumed with).

    1. ``local`` (the runner's ``--task PATH`` copies of that name): the one whose content hash is
       the campaign's — and, where the campaign recorded a bundle, whose bundle hash is its bundle
       hash. None matches: :class:`TaskRefused`, naming both hashes and the fix.
    2. else the built-in copy, when its hashes are the campaign's;
    3. else the ledger's copy (``materialise``): a runner without the task, or whose built-in copy
       is another version (another arledger release), serves the campaign's own. A campaign opened
       before bundles were recorded is served by the built-in copy as before, or refused.
    """
    assert camp.opened is not None
    name, want_sha, want_bundle = camp.opened.task, camp.task_sha, camp.task_bundle_sha

    def matches(spec: TaskSpec) -> bool:
        content, bundle = identity(spec)
        return content == want_sha and (want_bundle is None or bundle == want_bundle)

    if local:
        for spec in local:
            if matches(spec):
                return spec
        spec = local[0]
        content, bundle = identity(spec)
        which = (f"content hash {content[:12]}, the campaign's is {want_sha[:12]}" if content != want_sha
                 else f"bundle hash {bundle[:12]} (its prepare module differs), the campaign's is "
                      f"{str(want_bundle)[:12]}")
        fix = ("drop --task for it: the runner then serves the campaign's copy from the ledger"
               if want_bundle else "point --task at the copy the campaign opened with")
        raise TaskRefused(f"--task {spec.root} is not the task campaign {camp.name} runs: its {which}; fix: "
                          f"{fix}, or point --task at the same version of {name}")
    if builtin is not None and (matches(builtin) or want_bundle is None):
        if not matches(builtin):
            log(f"campaign {camp.name}: the built-in {name} (content {builtin.content_sha()[:12]}) is not the "
                f"copy it opened with ({want_sha[:12]}) and it recorded no task bundle; serving the built-in copy")
        return builtin
    if want_bundle is None:
        raise TaskRefused(f"cannot serve task {name!r} of campaign {camp.name}: it is not on this host and the "
                          "campaign recorded no task bundle (opened before bundles); fix: `--task PATH` to a "
                          "copy of it")
    if builtin is not None:
        log(f"campaign {camp.name}: the built-in {name} is another version (bundle {identity(builtin)[1][:12]}, "
            f"the campaign's {want_bundle[:12]}); serving the campaign's copy from the ledger")
    spec = materialise(ledger, want_bundle, root, want_task_sha=want_sha)
    with contextlib.suppress(Exception):
        log(f"campaign {camp.name}: serving task {name} from the ledger (bundle {want_bundle[:12]}, "
            f"in {spec.root})")
    return spec
