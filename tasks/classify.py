"""Turning a finished run into evidence and an outcome label.

Pure functions over the run's exit facts and its log text; no process handling (the runner owns the
processes). Three things a user sees come from here:

* :func:`crash_excerpt` — one line that says what broke and where in the recipe:
  ``RuntimeError: shape mismatch (train_gpt.py:1401 in step_fn)``. It digs the *child's* exception
  out of torchrun / ``torch.distributed.elastic`` ``ChildFailedError`` wrappers (printed before the
  wrapper with ``[rankN]:`` prefixes, or embedded in the wrapper's "Root Cause" block), so the
  excerpt is never just ``ChildFailedError: ====...``.
* :func:`classify_run` — the failure label (``oom``, ``diverged``, ``train_budget_overrun``,
  ``eval_budget_overrun``, ``crash``) or ``None`` when the run is fine, with a reason and excerpt.
* :func:`parse_metric_lines` — the recipe's informational ``metric name=value step=N`` lines.
* :func:`work_shortfall` — why a work-bounded run that exited cleanly is ``truncated`` (it did less
  work than it planned, or did not say), or ``None`` when it did all of it.

Scores never come from here: only evaluators produce scores.
"""

from __future__ import annotations

import math
import re
import signal as _signal
from dataclasses import dataclass, field
from pathlib import Path

EXCERPT_MAX = 300
CLASSIFY_TAIL = 4 << 20
"""How much of a log the classifiers read: its first eighth and its tail."""
"""Upper bound on the length of an excerpt, in characters."""

_RANK_PREFIX = re.compile(r"^(?:\[(?:rank|default|local_rank)?\d+\]:\s?)+")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_TB_HEADER = re.compile(r"Traceback \(most recent call last\):\s*$")
_FRAME = re.compile(r'^(?P<indent>\s*)File "(?P<path>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.+?))?\s*$')
# an exception line: a (dotted) class name, then ":" and a message, or a bare well-known name
_EXC = re.compile(
    r"^(?P<indent>\s*)(?P<name>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)"
    r"(?::(?P<msg>.*)|(?P<bare>))$"
)
_EXC_SUFFIXES = ("Error", "Exception", "Interrupt", "Exit", "Failure", "Failed", "Warning", "Iteration",
                 "Unsupported", "Fault")
_WRAPPERS = ("ChildFailedError",)
# exceptions that are usually a consequence of another rank's failure, not the cause
_SECONDARY = ("DistBackendError", "DistNetworkError", "DistStoreError", "KeyboardInterrupt",
              "SignalException", "CalledProcessError", "BrokenPipeError", "ChildFailedError")
_SECONDARY_MSG = re.compile(r"NCCL|Watchdog|ProcessGroup|Connection (?:reset|closed)|SIGTERM", re.I)
_CHAIN = re.compile(r"^\s*(During handling of the above exception|The above exception was the direct cause)")

# torch.distributed.elastic noise lines: "W0427 12:00:01.123000 1234 torch/.../api.py:897] ..."
_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+\S+:\d+\]")
_CHILD_EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")
_CHILD_SIGNAL = re.compile(r"Signal (\d+) \((SIG[A-Z0-9]+)\) received by PID")

_OOM_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CUDA out of memory|torch(?:\.cuda)?\.OutOfMemoryError|CUDA error: out of memory"
                r"|HIP out of memory|CUBLAS_STATUS_ALLOC_FAILED|cudaErrorMemoryAllocation"),
     "GPU out of memory"),
    (re.compile(r"DefaultCPUAllocator: (?:can't|not enough memory)|std::bad_alloc"
                r"|^\s*(?:\[\w+\]:\s*)*MemoryError\b", re.M),
     "host out of memory"),
)
_OOM_KILLER_HINT = re.compile(r"oom[-_ ]kill|Out of memory: Kill(?:ed)? process|invoked oom-killer"
                              r"|^\s*Killed\s*$", re.M | re.I)

_NONFINITE = r"[-+]?(?:nan|inf(?:inity)?)"
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|" + _NONFINITE
_LOSS_TOKEN = re.compile(r"(?<![\w.])(?P<name>[A-Za-z_]*loss)\s*[:=]\s*(?P<value>" + _NUM + r")(?![\w.])",
                         re.I)
_DIVERGED_MSG = re.compile(r"(?<!not )(?<!never )\b(?:loss )?diverged\b|\bdivergence detected\b", re.I)
_NAN_EXC = re.compile(r"\bnan\b|\bnon-?finite\b|\bnot finite\b|\binf(?:inite)?\b", re.I)

_STEP_IN_LINE = re.compile(r"\bstep[: ]\s*(\d+)|^\s*(\d+)/\d+\s|\bstep=(\d+)", re.I)
_METRIC_LINE = re.compile(r"^metric\s+(?P<body>.+)$")
_KV = re.compile(r"(?P<key>[A-Za-z_][\w./-]*)=(?P<value>\S+)")


# ---------------------------------------------------------------------------------------------
# traceback parsing


@dataclass
class Frame:
    path: str
    line: int
    func: str


@dataclass
class Traceback:
    frames: list[Frame] = field(default_factory=list)
    exc_name: str = ""
    exc_msg: str = ""
    position: int = 0  # line index of the header, for ordering

    @property
    def short_name(self) -> str:
        return self.exc_name.rsplit(".", 1)[-1]

    @property
    def exception_line(self) -> str:
        name = self.exc_name
        # keep "torch.OutOfMemoryError" and "torch._C._LinAlgError", drop long module paths
        if len(name) > 40:
            name = self.short_name
        return f"{name}: {self.exc_msg}" if self.exc_msg else name


def _split(text: str) -> list[tuple[str, str]]:
    """(stream, line) pairs: ANSI codes removed and ``[rank3]:``-style prefixes split off into the
    stream key, so the interleaved output of several ranks can be read rank by rank."""
    out = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _ANSI.sub("", raw)
        m = _RANK_PREFIX.match(line)
        key = ""
        if m:
            key = m.group(0).strip()
            line = line[m.end():]
        out.append((key, line.rstrip()))
    return out


def _clean_lines(text: str) -> list[str]:
    return [line for _, line in _split(text)]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _looks_like_exception(name: str, msg: str | None) -> bool:
    short = name.rsplit(".", 1)[-1].lstrip("_")
    if not short or not short[0].isupper():
        return False
    if short.endswith(_EXC_SUFFIXES):
        return True
    # "torch._dynamo.exc.Unsupported: ..." and other dotted names with a message
    return msg is not None and "." in name


def _parse_tracebacks_in(lines: list[str], positions: list[int]) -> list[Traceback]:
    tbs: list[Traceback] = []
    i = 0
    n = len(lines)
    while i < n:
        m = _TB_HEADER.search(lines[i])
        if not m:
            i += 1
            continue
        tb = Traceback(position=positions[i])
        header_col = m.start()
        # the exception line sits at the header's own indentation (or at the embedding's indentation
        # for tracebacks embedded after "traceback : "), never deeper than the frame lines
        frame_indent: int | None = None
        j = i + 1
        skipped = 0
        while j < n:
            line = lines[j]
            if _TB_HEADER.search(line):
                break
            fm = _FRAME.match(line)
            if fm:
                frame_indent = len(fm.group("indent"))
                tb.frames.append(Frame(fm.group("path"), int(fm.group("line")), (fm.group("func") or "?").strip()))
                j += 1
                skipped = 0
                continue
            if not line.strip():
                j += 1
                continue
            if frame_indent is not None and _indent(line) > frame_indent:
                j += 1  # source line or ^^^^ markers under a frame
                continue
            em = _EXC.match(line)
            limit = frame_indent if frame_indent is not None else header_col
            if em and _indent(line) <= limit and _looks_like_exception(
                em.group("name"), em.group("msg")
            ):
                tb.exc_name = em.group("name")
                msg = (em.group("msg") or "").strip()
                k = j + 1
                if not msg:
                    # a message starting on the next line (ChildFailedError: \n=====\n ...)
                    while k < n and k < j + 4:
                        nxt = lines[k].strip()
                        if nxt and not set(nxt) <= set("=-"):
                            msg = nxt
                            break
                        k += 1
                tb.exc_msg = msg
                j += 1
                break
            # interleaved output from another rank or process: tolerate a few lines
            skipped += 1
            if skipped > 40:
                break
            j += 1
        if tb.exc_name or tb.frames:
            tbs.append(tb)
        i = j
    return tbs


def _parse_tracebacks(text: str) -> list[Traceback]:
    """Every traceback in the log, each rank's output parsed on its own, in order of appearance."""
    streams: dict[str, tuple[list[str], list[int]]] = {}
    for pos, (key, line) in enumerate(_split(text)):
        lines, positions = streams.setdefault(key, ([], []))
        lines.append(line)
        positions.append(pos)
    tbs: list[Traceback] = []
    for lines, positions in streams.values():
        tbs.extend(_parse_tracebacks_in(lines, positions))
    tbs.sort(key=lambda tb: tb.position)
    return tbs


def _recipe_match(path: str, recipe_files: list[str]) -> str | None:
    norm = path.replace("\\", "/")
    best: str | None = None
    for rf in recipe_files:
        r = rf.replace("\\", "/").lstrip("./")
        if norm == r or norm.endswith("/" + r):
            if best is None or len(r) > len(best):
                best = r
    return best


def _deepest_recipe_frame(tb: Traceback, recipe_files: list[str]) -> str | None:
    for fr in reversed(tb.frames):
        name = _recipe_match(fr.path, recipe_files)
        if name:
            return f"{name}:{fr.line} in {fr.func}"
    return None


def _is_secondary(tb: Traceback) -> bool:
    return tb.short_name in _SECONDARY or bool(_SECONDARY_MSG.search(tb.exc_msg))


def _pick(tbs: list[Traceback], recipe_files: list[str]) -> Traceback | None:
    """The traceback that best explains the failure: a real (non-wrapper) exception, preferably one
    raised through a recipe file and not a knock-on effect of another rank dying; the last such."""
    best: tuple[int, int, int, int] | None = None
    chosen: Traceback | None = None
    for tb in tbs:
        if not tb.exc_name:
            continue
        key = (
            0 if tb.short_name in _WRAPPERS else 1,
            1 if _deepest_recipe_frame(tb, recipe_files) else 0,
            0 if _is_secondary(tb) else 1,
            tb.position,
        )
        if best is None or key >= best:
            best, chosen = key, tb
    return chosen


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def _tail(lines: list[str], count: int = 3, limit: int = EXCERPT_MAX) -> str:
    """The last non-empty lines (at most ``count``, fewer if they would not fit), joined by " | "."""
    keep = [" ".join(ln.split()) for ln in lines if ln.strip() and not set(ln.strip()) <= set("=-_*#~")]
    picked: list[str] = []
    for line in reversed(keep[-count:]):
        if picked and len(" | ".join([line, *picked])) > limit:
            break
        picked.insert(0, line)
    text = " | ".join(picked)
    if len(text) > limit:
        text = "…" + text[-(limit - 1):]
    return text


_FATAL = re.compile(r"^Fatal Python error: (?P<what>.+)$")
_FAULT_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def _fatal_excerpt(lines: list[str], recipe_files: list[str]) -> str | None:
    """faulthandler output (segfaults, aborts): "Fatal Python error: ..." and its frame list, which
    is printed most recent call first."""
    for i, line in enumerate(lines):
        m = _FATAL.match(line.strip())
        if not m:
            continue
        where = None
        for later in lines[i + 1: i + 200]:
            fm = _FAULT_FRAME.match(later)
            if fm:
                name = _recipe_match(fm.group("path"), recipe_files)
                if name:
                    where = f"{name}:{fm.group('line')} in {fm.group('func')}"
                    break
        suffix = f" ({where})" if where else ""
        return _truncate(f"Fatal Python error: {m.group('what')}", EXCERPT_MAX - len(suffix)) + suffix
    return None


def _child_failure_note(lines: list[str]) -> str:
    """For a ChildFailedError without an embedded traceback: the child's exit code / signal."""
    text = "\n".join(lines)
    sm = _CHILD_SIGNAL.search(text)
    if sm:
        return f"child killed by signal {sm.group(1)} ({sm.group(2)})"
    codes = [int(c) for c in _CHILD_EXITCODE.findall(text)]
    if codes:
        code = codes[0]
        if code < 0:
            return f"child killed by signal {-code} ({_signal_name(-code)})"
        return f"child exited with status {code}"
    return ""


def crash_excerpt(log_text: str, recipe_files: list[str]) -> str:
    """One line, at most :data:`EXCERPT_MAX` characters: the deepest exception and the deepest frame
    in a recipe file, e.g. ``RuntimeError: shape mismatch (train_gpt.py:1401 in step_fn)``.

    Without any traceback it is the last few non-empty lines of the log, joined by `` | ``.
    """
    lines = _clean_lines(log_text or "")
    tbs = _parse_tracebacks(log_text or "")
    tb = _pick(tbs, recipe_files)
    if tb is None:
        fatal = _fatal_excerpt(lines, recipe_files)
        if fatal:
            return fatal
        meaningful = [ln for ln in lines if not _GLOG.match(ln)] or lines
        return _tail(meaningful)
    where = _deepest_recipe_frame(tb, recipe_files)
    if where is None:
        # the wrapper (or a frameless exception) named no recipe frame: borrow the deepest recipe
        # frame of any traceback of the same run
        for other in reversed(tbs):
            where = _deepest_recipe_frame(other, recipe_files)
            if where:
                break
    head = tb.exception_line
    if tb.short_name in _WRAPPERS:
        note = _child_failure_note(lines[tb.position:])
        head = f"{tb.short_name}: {note}" if note else tb.short_name
    suffix = f" ({_truncate(where, 120)})" if where else ""
    return _truncate(head, EXCERPT_MAX - len(suffix)) + suffix


# ---------------------------------------------------------------------------------------------
# metric lines


def parse_metric_lines(text: str) -> list[tuple[int, str, float]]:
    """``metric name=value [name2=value2] step=N`` lines → ``[(step, name, value), ...]`` in order.

    Values may be ``nan``/``inf``. A line without ``step=`` takes the step of the previous metric
    line (0 before any). Pairs whose value is not a number are skipped; so is a malformed line.
    """
    out: list[tuple[int, str, float]] = []
    last_step = 0
    for line in _clean_lines(text or ""):
        m = _METRIC_LINE.match(line.strip())
        if not m:
            continue
        pairs = [(kv.group("key"), kv.group("value")) for kv in _KV.finditer(m.group("body"))]
        step = last_step
        for key, value in pairs:
            if key == "step":
                try:
                    step = int(float(value))
                except ValueError:
                    pass
        for key, value in pairs:
            if key == "step":
                continue
            try:
                out.append((step, key, float(value)))
            except ValueError:
                continue
        last_step = step
    return out


# ---------------------------------------------------------------------------------------------
# labels


def _signal_name(num: int) -> str:
    try:
        return _signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _killed_by(exit_status: int | None, signal: int | None) -> int | None:
    if signal:
        return signal
    if exit_status is not None and exit_status < 0:
        return -exit_status
    if exit_status is not None and 128 < exit_status < 128 + 65:
        return exit_status - 128  # a shell reporting a signal death
    return None


def _find_oom(text: str) -> str | None:
    for pattern, what in _OOM_PATTERNS:
        if pattern.search(text):
            return what
    return None


def _find_divergence(lines: list[str]) -> tuple[str, str] | None:
    """(reason, evidence line) when the log shows the loss became NaN/inf or says it diverged."""
    text = "\n".join(lines)
    for step, name, value in parse_metric_lines(text):
        if "loss" in name.lower() and not math.isfinite(value):
            return f"{name} became {value} at step {step}", f"metric {name}={value} step={step}"
    # the loss values printed in free-form log lines ("train_loss:nan", "loss: nan", "val_loss=inf"):
    # diverged when the last one is non-finite; the evidence is where the non-finite streak began
    tokens: list[tuple[str, float, str]] = []
    for line in lines:
        if _GLOG.match(line):
            continue
        for m in _LOSS_TOKEN.finditer(line):
            try:
                tokens.append((m.group("name"), float(m.group("value")), line))
            except ValueError:
                continue
    if tokens and not math.isfinite(tokens[-1][1]):
        start = len(tokens) - 1
        while start > 0 and not math.isfinite(tokens[start - 1][1]):
            start -= 1
        name, value, line = tokens[start]
        step = _STEP_IN_LINE.search(line)
        at = f" at step {step.group(1) or step.group(2) or step.group(3)}" if step else ""
        final = tokens[-1]
        tail = f" (final {final[0]} is {final[1]})" if start != len(tokens) - 1 else ""
        return f"{name} became {value}{at} and never recovered{tail}", line
    for line in lines:
        if _DIVERGED_MSG.search(line) and not _FRAME.match(line):
            return "the recipe reported divergence", line
    return None


def classify_run(
    exit_status: int | None,
    signal: int | None,
    timed_out: bool,
    log_text: str,
    recipe_files: list[str],
    budget_kind: str = "train",
    *,
    artifact_present: bool = True,
) -> tuple[str | None, str, str]:
    """The outcome of one finished run: ``(label or None, reason, excerpt)``.

    * ``<budget_kind>_budget_overrun`` — the runner stopped it at the budget (``timed_out``);
    * ``oom`` — Python ``MemoryError``, ``CUDA out of memory`` / ``torch.OutOfMemoryError``, the CPU
      allocator failing, or a SIGKILL that was not our timeout (the kernel OOM killer's signature);
    * ``diverged`` — the loss became NaN/inf (``metric loss=nan`` lines, ``nan`` in the final loss)
      or the recipe said it diverged;
    * ``crash`` — any other non-zero exit or signal, or a clean exit without the artifact;
    * ``None`` — the run is fine (the evaluator decides the rest).
    """
    if budget_kind not in ("train", "eval"):
        raise ValueError(f"budget_kind must be 'train' or 'eval', not {budget_kind!r}")
    lines = _clean_lines(log_text or "")
    text = "\n".join(lines)
    killed = _killed_by(exit_status, signal)
    failed = killed is not None or (exit_status not in (None, 0))
    if exit_status is None and signal is None and not timed_out:
        failed = True  # no exit status at all: the process vanished

    if timed_out:
        return (
            f"{budget_kind}_budget_overrun",
            f"ran past the {budget_kind} budget and was stopped",
            crash_excerpt(log_text, recipe_files),
        )

    oom = _find_oom(text)
    if oom and (failed or not artifact_present):
        return "oom", oom, crash_excerpt(log_text, recipe_files)
    child_sig = _CHILD_SIGNAL.search(text)
    child_codes = [int(c) for c in _CHILD_EXITCODE.findall(text)]
    sigkill = killed == _signal.SIGKILL or (failed and (
        (child_sig is not None and int(child_sig.group(1)) == _signal.SIGKILL) or -9 in child_codes))
    if sigkill:
        hint = _OOM_KILLER_HINT.search(text)
        why = (f"the log shows {hint.group(0).strip()!r}" if hint
               else "nothing else kills a run this way; check `dmesg` for oom-kill")
        return (
            "oom",
            f"killed by SIGKILL without a timeout: most likely the kernel OOM killer ({why})",
            crash_excerpt(log_text, recipe_files),
        )

    div = _find_divergence(lines)
    if div is None and failed:
        tb = _pick(_parse_tracebacks(log_text or ""), recipe_files)
        if tb is not None and _NAN_EXC.search(tb.exc_msg) and "loss" in tb.exc_msg.lower():
            div = (f"the loss became non-finite ({tb.short_name})", tb.exception_line)
    if div is not None:
        reason, evidence = div
        excerpt = crash_excerpt(log_text, recipe_files) if failed else _truncate(evidence, EXCERPT_MAX)
        return "diverged", reason, excerpt

    if failed:
        if killed is not None:
            reason = f"killed by signal {killed} ({_signal_name(killed)})"
        elif exit_status is None:
            reason = "the process ended without an exit status"
        else:
            reason = f"exited with status {exit_status}"
        return "crash", reason, crash_excerpt(log_text, recipe_files)

    if not artifact_present:
        return (
            "crash",
            "exited cleanly but did not write the artifact",
            crash_excerpt(log_text, recipe_files),
        )
    return None, "", ""


WORK_PLANNED, WORK_DONE = "work_planned", "work_done"
"""The ``metric`` names a work-bounded recipe reports its planned work (at the start) and its done work
(at the end) under."""


def work_shortfall(planned: float | None, done: float | None, unit: str) -> str | None:
    """The reason a work-bounded run is ``truncated``, or None when it did the work it planned. A run
    that never reports both figures cannot show it is complete, so it is truncated too."""
    if planned is None or done is None:
        missing = " and ".join(n for n, v in ((WORK_PLANNED, planned), (WORK_DONE, done)) if v is None)
        return (f"the run reported no {missing} (a work-bounded task's recipe prints `metric {WORK_PLANNED}=N` "
                f"at the start and `metric {WORK_DONE}=N` at the end): it cannot show it trained all its {unit}")
    if done < planned:
        return (f"the run did {done:g} of the {planned:g} {unit} it planned ({100 * done / planned:.0f}%): a "
                "work-bounded run is scored only when complete")
    return None


def log_tail(path: Path, limit: int = CLASSIFY_TAIL) -> str:
    """A log's text for the classifiers: all of it, or its head and tail when it is over ``limit``."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size > limit:
                head = f.read(limit // 8)
                f.seek(size - (limit - len(head)))
                data = head + b"\n[...]\n" + f.read()
            else:
                data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")
