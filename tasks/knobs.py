"""Knobs and regions of recipe text: the edits the heuristic makes and the surfaces preflight checks.

Knobs are module-level ``NAME = literal`` lines; ``read_knob`` / ``set_knob`` read and rewrite exactly
that line. Regions are ``# region: NAME`` ... ``# endregion`` blocks; ``regions_of`` finds them.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from dataclasses import dataclass

from tasks.spec import Knob, KnobValue

_REGION_RE = re.compile(r"^\s*#\s*region:\s*(?P<name>\S+)\s*$")
_ENDREGION_RE = re.compile(r"^\s*#\s*endregion\b")


def regions_of(text: str) -> dict[str, tuple[int, int]]:
    """``{name: (start_line, end_line)}``, 1-based, the marker lines included.

    Raises ValueError (with the line number) for a nested, duplicate, unclosed or unopened region."""
    out: dict[str, tuple[int, int]] = {}
    open_name, open_line = None, 0
    for no, line in enumerate(text.splitlines(), 1):
        m = _REGION_RE.match(line)
        if m:
            if open_name is not None:
                raise ValueError(f"line {no}: region {m['name']!r} opens inside region {open_name!r} "
                                 f"(opened at line {open_line}); regions do not nest")
            if m["name"] in out:
                raise ValueError(f"line {no}: region {m['name']!r} is defined twice")
            open_name, open_line = m["name"], no
        elif _ENDREGION_RE.match(line):
            if open_name is None:
                raise ValueError(f"line {no}: '# endregion' without an open region")
            out[open_name] = (open_line, no)
            open_name = None
    if open_name is not None:
        raise ValueError(f"line {open_line}: region {open_name!r} is never closed with '# endregion'")
    return out


@dataclass(frozen=True)
class _KnobLine:
    index: int  # 0-based line index
    line: str
    start: int  # column span of the value expression
    end: int
    value: KnobValue


def _knob_name(knob: Knob | str) -> str:
    return knob.name if isinstance(knob, Knob) else knob


def _find_knob(text: str, name: str) -> _KnobLine:
    pat = re.compile(rf"^{re.escape(name)}\s*(?::[^=]*)?=(?!=)")
    lines = text.splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if pat.match(ln)]
    if not hits:
        raise KeyError(f"no module-level assignment '{name} = <literal>' found")
    if len(hits) > 1:
        raise KeyError(f"'{name}' is assigned {len(hits)} times at module level (lines "
                       f"{', '.join(str(i + 1) for i in hits)}); a knob must be assigned exactly once")
    i = hits[0]
    line = lines[i]
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.rstrip("\r\n") + "\n").readline))
    except (tokenize.TokenError, SyntaxError) as e:
        raise KeyError(f"line {i + 1} ('{line.strip()}') does not tokenize: {e}") from None
    eq = next(t for t in toks if t.type == tokenize.OP and t.string == "=")
    value_toks = [t for t in toks if t.start[1] >= eq.end[1]
                  and t.type not in (tokenize.COMMENT, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)]
    if not value_toks:
        raise KeyError(f"line {i + 1}: '{name} =' has no value")
    start, end = value_toks[0].start[1], value_toks[-1].end[1]
    src = line[start:end]
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError):
        raise KeyError(f"line {i + 1}: the value of {name} ({src}) is not a single literal") from None
    if not isinstance(value, int | float | str | bool):
        raise KeyError(f"line {i + 1}: the value of {name} ({src}) is not a number, bool or string")
    return _KnobLine(i, line, start, end, value)


def knob_line(text: str, knob: Knob | str) -> int:
    """The 1-based line number of the knob's assignment."""
    return _find_knob(text, _knob_name(knob)).index + 1


def read_knob(text: str, knob: Knob | str) -> KnobValue:
    """The current value of a module-level ``NAME = literal`` knob. KeyError if there is none."""
    return _find_knob(text, _knob_name(knob)).value


def format_value(value: KnobValue, type_: str | None = None) -> str:
    """A compact Python literal: floats in the shortest exact form (at most 6 significant digits
    when an exact short form does not exist), big ints with ``_`` separators."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int) and type_ != "float":
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"cannot write a non-finite knob value {v!r}")
    s = next((f"{v:.{p}g}" for p in range(1, 7) if float(f"{v:.{p}g}") == v), f"{v:.6g}")
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    elif "." not in s and "inf" not in s and "nan" not in s:
        s += ".0"
    return s


def set_knob(text: str, knob: Knob | str, value: KnobValue) -> str:
    """``text`` with only the knob's value rewritten (its trailing comment and spacing kept).

    With a :class:`Knob`, the value is checked against its type/range (ValueError if illegal) and
    ints given to float knobs are written as floats."""
    name = _knob_name(knob)
    type_ = None
    if isinstance(knob, Knob):
        type_ = knob.type
        if type_ == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = knob.check_value(value)
        if problem:
            raise ValueError(f"knob {name}: {problem}")
    kl = _find_knob(text, name)
    lines = text.splitlines(keepends=True)
    lines[kl.index] = kl.line[: kl.start] + format_value(value, type_) + kl.line[kl.end:]
    return "".join(lines)


