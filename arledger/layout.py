"""Terminal layout for the reading commands: fit the screen, never cut a word.

* :func:`width` — the columns to lay out for: ``$COLUMNS``, else the terminal's, else 200 (a file
  or a pipe);
* :func:`fit_columns` — which table columns fit the width, by priority (``--wide``: all of them),
  each at the width of its widest cell, so no cell is cut;
* :func:`tree` — a tree drawn with ``├─`` / ``└─`` and ``│`` continuations, each node's text wrapped
  under it, not clipped;
* :func:`wrap` — a labelled paragraph wrapped with a hanging indent;
* :func:`plural` — ``1 trial``, ``2 trials``.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PIPE_WIDTH = 200
"""The width of output that goes to a file or a pipe (no terminal to fit)."""
MIN_TEXT = 24
"""The narrowest a wrapped text may get, however deep its tree: beyond that the line runs long."""


def width() -> int:
    env = os.environ.get("COLUMNS", "")
    if env.strip().isdigit() and int(env) >= 20:
        return int(env)
    if sys.stdout.isatty():
        return max(20, shutil.get_terminal_size((80, 24)).columns)
    return PIPE_WIDTH


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


@dataclass(frozen=True)
class Column:
    name: str
    priority: int  # 0 = always shown; higher numbers are hidden first
    right: bool = False  # numbers are right-aligned


def fit_columns(cols: Sequence[Column], rows: Sequence[Sequence[str]], avail: int, *, wide: bool = False,
                gap: int = 2) -> tuple[list[int], list[str]]:
    """The indices of the columns to show, in their order, and the names of those hidden: the most
    important columns whose widest cells (and headers), with ``gap`` spaces between, fit ``avail``."""
    w = [max([len(c.name)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    keep = list(range(len(cols)))
    if not wide:
        for i in sorted(range(len(cols)), key=lambda i: (-cols[i].priority, -i)):
            if sum(w[j] for j in keep) + gap * (len(keep) - 1) <= avail:
                break
            if cols[i].priority > 0:
                keep.remove(i)
    return keep, [cols[i].name for i in range(len(cols)) if i not in keep]


def table(cols: Sequence[Column], rows: Sequence[Sequence[str]], avail: int, *, wide: bool = False,
          gap: int = 2) -> tuple[list[str], list[str]]:
    """The lines of a plain table (a header, a rule, the rows) of the columns that fit, and the
    names of the hidden ones. Cells are never cut; a table of essential columns wider than the
    screen runs long."""
    keep, hidden = fit_columns(cols, rows, avail, wide=wide, gap=gap)
    w = {i: max([len(cols[i].name)] + [len(r[i]) for r in rows]) for i in keep}

    def line(cells: Sequence[str]) -> str:
        out = [(cells[i].rjust(w[i]) if cols[i].right else cells[i].ljust(w[i])) for i in keep]
        return (" " * gap).join(out).rstrip()

    lines = [line([c.name for c in cols]), (" " * gap).join("─" * w[i] for i in keep)]
    lines += [line(r) for r in rows]
    return lines, hidden


def wrap(text: str, avail: int, *, label: str = "", indent: int | None = None) -> list[str]:
    """``label`` + ``text`` wrapped at ``avail`` columns, later lines indented under the text (or by
    ``indent``). Words are kept whole unless one alone is wider than a line."""
    lead = " " * (len(label) if indent is None else indent)
    body = max(MIN_TEXT, avail)
    w = textwrap.TextWrapper(width=body, initial_indent=label, subsequent_indent=lead, break_on_hyphens=False,
                             break_long_words=True, replace_whitespace=True)
    return w.wrap(text) or [label.rstrip()]


def tree(roots: Sequence[T], children: Callable[[T], Sequence[T]], text: Callable[[T], str],
         avail: int) -> list[str]:
    """Each node's ``text`` under the glyph that joins it to its parent (``├─`` for all but the last
    child, ``└─`` for the last), wrapped under it with ``│`` where the tree goes on below."""
    lines: list[str] = []
    # (node, prefix of its ancestors' continuations, is it the last of its siblings, is it a root)
    stack: list[tuple[T, str, bool, bool]] = [(r, "", i == len(roots) - 1, True)
                                              for i, r in reversed(list(enumerate(roots)))]
    while stack:
        node, prefix, last, root = stack.pop()
        kids = list(children(node))
        first = prefix if root else prefix + ("└─ " if last else "├─ ")
        cont = prefix if root else prefix + ("   " if last else "│  ")
        bar = "│ " if kids else "  "
        room = max(MIN_TEXT, avail - len(cont) - len(bar))
        wrapper = textwrap.TextWrapper(width=room, break_on_hyphens=False, break_long_words=True)
        parts = wrapper.wrap(text(node)) or [""]
        lines.append(first + parts[0])
        lines += [(cont + bar + p).rstrip() if p else (cont + bar).rstrip() for p in parts[1:]]
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], cont, i == len(kids) - 1, False))
    return lines
