"""Proposals replayed from a recorded file: deterministic, offline, free.

The file is JSON Lines, one proposal per line::

    {"specialist": "opt", "hypothesis": "...", "expected_delta": -0.01, "parent": 3, "diff": "...", "notes": "..."}

A request from specialist S takes the first unused line whose ``specialist`` is S or ``"*"``: so
lines named after specialists are consumed in order per specialist, and ``"*"`` lines in the
file's global order by whichever specialist asks next. ``parent: null`` means the incumbent.

A line may also replay a failure (``{"specialist": "opt", "failure": {"kind": "refused",
"message": "..."}}``), so a campaign's proposals, failures included, re-run as they happened.
:meth:`ReplayBackend.record` writes the format.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agents.base import Proposal, ProposalContext, ProposalFailed

ANY = "*"
_FIELDS = {"specialist", "hypothesis", "expected_delta", "parent", "diff", "notes", "model", "backend",
           "failure"}


class ReplayFileError(ValueError):
    """The replay file cannot be read; the message names the file, the line and the problem."""


class ReplayBackend:
    """Plays a recorded JSON Lines file of proposals back, in order. Thread-safe."""

    name = "replay"

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.entries = _load(self.path)
        self._used = [False] * len(self.entries)
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return self._used.count(False)

    def propose(self, ctx: ProposalContext) -> Proposal:
        specialist = ctx.specialist
        with self._lock:
            index = next((i for i, (_, e) in enumerate(self.entries)
                          if not self._used[i] and e.get("specialist", ANY) in (specialist, ANY)), None)
            if index is None:
                used = sum(1 for i, (_, e) in enumerate(self.entries)
                           if self._used[i] and e.get("specialist", ANY) in (specialist, ANY))
                raise ProposalFailed(
                    "empty",
                    f"the replay file {self.path} has no more proposals for specialist {specialist!r} "
                    f"({used} replayed, {len(self.entries)} lines in all)",
                )
            self._used[index] = True
            line, entry = self.entries[index]
        where = f"replayed from {self.path} line {line}"
        failure = entry.get("failure")
        if failure is not None:
            raise ProposalFailed(
                failure["kind"], failure.get("message") or f"recorded failure ({where})",
                diff=entry.get("diff", ""), hypothesis=entry.get("hypothesis", ""), transcript=where + "\n",
                backend=self.name, model=entry.get("model", ""), expected_delta=entry.get("expected_delta"),
                parent=entry.get("parent"),
            )
        return Proposal(
            hypothesis=entry.get("hypothesis", ""),
            diff=entry["diff"],
            parent=entry.get("parent"),
            expected_delta=entry.get("expected_delta"),
            notes=entry.get("notes", ""),
            backend=self.name,
            model=entry.get("model", ""),
            transcript=where + "\n",
        )

    @staticmethod
    def record(proposals: Iterable[Proposal | ProposalFailed | tuple[str, Proposal | ProposalFailed]],
               path: str | os.PathLike[str], *, specialist: str = ANY) -> int:
        """Write proposals (or failures) in the replay format; returns how many lines were written.
        Items are ``(specialist, proposal)`` pairs, or bare proposals, which get ``specialist``
        (default ``"*"``: global order). The file is replaced atomically."""
        lines = []
        for item in proposals:
            who, p = item if isinstance(item, tuple) else (specialist, item)
            lines.append(json.dumps(_entry(who, p), ensure_ascii=False))
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, target)
        return len(lines)


def _entry(specialist: str, p: Proposal | ProposalFailed) -> dict[str, Any]:
    if isinstance(p, ProposalFailed):
        out: dict[str, Any] = {"specialist": specialist, "failure": {"kind": p.kind, "message": p.message}}
        if p.hypothesis:
            out["hypothesis"] = p.hypothesis
        if p.diff:
            out["diff"] = p.diff
        if p.model:
            out["model"] = p.model
        if p.expected_delta is not None:
            out["expected_delta"] = p.expected_delta
        if p.parent is not None:
            out["parent"] = p.parent
        return out
    return {
        "specialist": specialist,
        "hypothesis": p.hypothesis,
        "expected_delta": p.expected_delta,
        "parent": p.parent,
        "diff": p.diff,
        "notes": p.notes,
        "model": p.model,
    }


def _load(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ReplayFileError(f"cannot read the replay file {path}: {e.strerror or e}") from e
    entries = []
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            entry = json.loads(raw)
        except ValueError as e:
            raise ReplayFileError(f"{where}: not a JSON object: {e}") from e
        if not isinstance(entry, dict):
            raise ReplayFileError(f"{where}: expected a JSON object, got {type(entry).__name__}")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise ReplayFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        _check(entry, where)
        entries.append((n, entry))
    return entries


def _check(entry: dict[str, Any], where: str) -> None:
    def typed(name: str, types: tuple[type, ...], what: str, required: bool = False) -> None:
        if name not in entry or entry[name] is None:
            if required:
                raise ReplayFileError(f"{where}: field {name!r} ({what}) is required")
            return
        value = entry[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ReplayFileError(f"{where}: field {name!r} must be {what}, not {value!r}")

    typed("specialist", (str,), "a specialist name or '*'")
    failure = entry.get("failure")
    if failure is not None:
        if not isinstance(failure, dict) or not isinstance(failure.get("kind"), str):
            raise ReplayFileError(f"{where}: field 'failure' must be an object with a 'kind' string")
        typed("diff", (str,), "a unified diff")
        typed("model", (str,), "a string")
        typed("expected_delta", (int, float), "a number or null")
        typed("parent", (int,), "a trial number or null")
        if isinstance(entry.get("expected_delta"), int):
            entry["expected_delta"] = float(entry["expected_delta"])
        return
    typed("diff", (str,), "a unified diff", required=True)
    typed("hypothesis", (str,), "a string", required=True)
    typed("expected_delta", (int, float), "a number or null")
    typed("parent", (int,), "a trial number or null")
    typed("notes", (str,), "a string")
    typed("model", (str,), "a string")
    if isinstance(entry.get("expected_delta"), int):
        entry["expected_delta"] = float(entry["expected_delta"])
