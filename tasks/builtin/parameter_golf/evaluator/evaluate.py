"""parameter-golf evaluator: val_bpb from the official train_gpt.py output, gated on size and time.

    evaluate.py --runs a,b,... --result result.json [--code-bytes N] [--train-wall-s x,y,...]
                [--max-bytes 16000000] [--train-cap-s 600] [--eval-cap-s 600]
                [--train-slack-s 1.0] [--score-label REGEX] [--artifact final_model.ptz]
                [--code train_gpt.py] [--code-size packed|raw]

openai/parameter-golf scores a submission inside train_gpt.py itself (the challenge's evaluation is
part of the script), so this evaluator is a *log classifier*: it reads each run's ``train.log``
(written by ``launch.py run``) and never runs recipe code. Formats accepted (confirmed against the
repository's ``train_gpt.py`` and the records under ``records/track_10min_16mb/``):

score — the last final-evaluation line ``<label> val_loss:<x> val_bpb:<y> [eval_time:<n>ms]``
    (``:`` or ``=``; the ``_exact`` twin of a label wins over its rounded line), e.g.
    ``final_int8_zlib_roundtrip_exact val_loss:2.0727 val_bpb:1.22436570`` (baseline),
    ``quantized_ttt val_loss:2.79180191 val_bpb:1.08079352 eval_time:366525ms`` (2026-04 records),
    ``final_int6_sliding_window_exact ...``, ``legal_ttt_exact ...``, ``quantized_ttt_phased ...``.
    In-training lines (``step:200/20000 val_loss:...``, ``4000/20000 val_loss: ...``) and
    pre-quantization / diagnostic lines never count. ``--score-label REGEX`` pins the label.
size — measured here when the run folder holds the compressed model (``final_model.ptz``, collected
    by launch.py from ``final_model*.ptz``) and the code (``train_gpt.py``, likewise collected):
    model bytes + code bytes, the code counted as the records ship it — an lzma (raw LZMA2,
    preset 9e) + base85 self-extracting ``exec`` wrapper of train_gpt.py (``--code-size raw``
    counts the file as is; without the code file, ``--code-bytes`` from the runner is used raw).
    Without the model file it falls back to the script's own ``Total submission size <tag>: N
    bytes`` line (the last tagged one, e.g. ``int8+zlib`` or ``quantized+brotli``; the baseline's
    untagged line counts the raw fp32 checkpoint and is used only when nothing else exists).
    Over ``--max-bytes`` → ``size_blocked``.
train time — ``stopping_early: wallclock_cap train_time: Nms``, else the last ``train_time:Nms``,
    else the last ``train_time: X.Ym``; over ``--train-cap-s`` + slack → ``train_budget_overrun``
    (the official script stops on the first step past its cap, so it overshoots by one step).
eval time — ``total_eval_time:Xs`` if printed, else the sum of ``eval_time:Nms`` over the
    post-training evaluation lines; over ``--eval-cap-s`` → ``eval_budget_overrun``.

The score is the mean val_bpb over the runs. A run without a score line gives ``score: null``,
label ``crash`` and a reason naming the formats above. The process exits 0 whenever it wrote the
result file.
"""

from __future__ import annotations

import argparse
import base64
import json
import lzma
import math
import re
import sys
from pathlib import Path

MAX_BYTES = 16_000_000  # task.toml's [gates] artifact_max_bytes mirrors it
TRAIN_CAP_S = 600.0
EVAL_CAP_S = 600.0
ARTIFACT = "final_model.ptz"
CODE = "train_gpt.py"
LOG_NAMES = ("train.log", "stdout.log", "output.log", "log.txt")

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_RANK = re.compile(r"^(?:\[(?:rank|default)?\d+\]:\s?)+")
_SCORE = re.compile(
    r"^(?P<label>[A-Za-z][\w+\-. ]*?)\s+val_loss\s*[:=]\s*(?P<loss>" + _NUM + r")\s+"
    r"val_bpb\s*[:=]\s*(?P<bpb>" + _NUM + r")(?P<rest>.*)$", re.I)
_NOT_FINAL = re.compile(r"pre[-_ ]?quant|diagnostic|post[-_ ]ema|^step\b|^\d", re.I)
_EVAL_MS = re.compile(r"\beval_time\s*[:=]\s*(\d+(?:\.\d+)?)\s*ms")
_TOTAL_EVAL = re.compile(r"\btotal_eval_time\s*[:=]\s*(\d+(?:\.\d+)?)\s*s\b")
_SIZE = re.compile(r"Total submission size(?P<tag>[^:]*):\s*(?P<bytes>[\d,]+)\s*bytes")
_STOP = re.compile(r"stopping_early:.*?train_time\s*[:=]\s*(\d+(?:\.\d+)?)\s*ms")
_TRAIN_MS = re.compile(r"\btrain_time\s*[:=]\s*(\d+(?:\.\d+)?)\s*ms")
_TRAIN_MIN = re.compile(r"\btrain_time\s*[:=]\s*(\d+(?:\.\d+)?)\s*m\b")

FORMATS = ("'<label> val_loss:<x> val_bpb:<y>' final-evaluation lines such as "
           "'final_int8_zlib_roundtrip_exact val_loss:... val_bpb:...' or 'quantized_ttt val_loss:... val_bpb:...'")


class RunFailed(Exception):
    """This run cannot be scored; ``label`` and the message say why."""

    def __init__(self, label: str, reason: str):
        super().__init__(reason)
        self.label = label


def find_log(run: Path) -> Path:
    for name in LOG_NAMES:
        if (run / name).is_file():
            return run / name
    logs = sorted(run.glob("*.log"))
    if logs:
        return logs[0]
    raise RunFailed("crash", f"no log in {run} (expected {LOG_NAMES[0]}, written by launch.py run)")


def read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return [_RANK.sub("", ln).strip() for ln in text.replace("\r", "\n").split("\n")]


def parse_log(lines: list[str], score_label: re.Pattern[str] | None) -> dict:
    finals: list[tuple[str, float, float, str]] = []
    for line in lines:
        m = _SCORE.match(line)
        if not m:
            continue
        label = m.group("label").strip()
        if score_label is not None:
            if not score_label.search(label):
                continue
        elif _NOT_FINAL.search(label):
            continue
        finals.append((label, float(m.group("loss")), float(m.group("bpb")), m.group("rest")))
    out: dict = {"finals": finals}
    if finals:
        label, loss, bpb, _ = finals[-1]
        base = label[:-len("_exact")] if label.endswith("_exact") else label
        # the _exact twin carries more digits; prefer it for the same evaluation
        for lab, lo, bp, _ in reversed(finals):
            if lab == base + "_exact":
                label, loss, bpb = lab, lo, bp
                break
        out.update(label=label, val_loss=loss, val_bpb=bpb)
    tagged, untagged = [], []
    for line in lines:
        for m in _SIZE.finditer(line):
            (tagged if m.group("tag").strip() else untagged).append(int(m.group("bytes").replace(",", "")))
    if tagged or untagged:
        out["logged_bytes"] = (tagged or untagged)[-1]
    text = "\n".join(lines)
    stop = _STOP.findall(text)
    if stop:
        out["train_time_s"] = float(stop[-1]) / 1000.0
    else:
        ms = _TRAIN_MS.findall(text)
        if ms:
            out["train_time_s"] = float(ms[-1]) / 1000.0
        else:
            mins = _TRAIN_MIN.findall(text)
            if mins:
                out["train_time_s"] = float(mins[-1]) * 60.0
    total = _TOTAL_EVAL.findall(text)
    if total:
        out["eval_time_s"] = float(total[-1])
    else:
        spent = [float(t) for (_, _, _, rest) in finals for t in _EVAL_MS.findall(rest)]
        for line in lines:  # pre-quantization / diagnostic evaluations also run in the eval phase
            m = _SCORE.match(line)
            if m and _NOT_FINAL.search(m.group("label").strip()) and not re.match(r"^(step\b|\d)", line):
                spent += [float(t) for t in _EVAL_MS.findall(m.group("rest"))]
        if spent:
            out["eval_time_s"] = sum(spent) / 1000.0
    return out


def packed_code(source: bytes) -> bytes:
    """train_gpt.py as the records ship it: a two-line self-extracting lzma + base85 wrapper."""
    raw = lzma.compress(source, format=lzma.FORMAT_RAW,
                        filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
    encoded = base64.b85encode(raw).decode("ascii")
    return ('import lzma as L,base64 as B\n'
            f'exec(L.decompress(B.b85decode("{encoded}"),'
            'format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))').encode()


def evaluate_run(run: Path, args: argparse.Namespace, score_label: re.Pattern[str] | None) -> dict:
    log = find_log(run)
    info = parse_log(read_lines(log), score_label)
    if "val_bpb" not in info:
        raise RunFailed("crash", f"{log}: no final evaluation line; accepted: {FORMATS}")
    if not math.isfinite(info["val_bpb"]):
        raise RunFailed("diverged", f"{log}: the final evaluation gave val_bpb {info['val_bpb']} ({info['label']})")
    model, code = run / args.artifact, run / args.code
    code_bytes, how = None, ""
    if code.is_file():
        source = code.read_bytes()
        if args.code_size == "packed":
            code_bytes, how = len(packed_code(source)), f"lzma-packed {args.code}"
        else:
            code_bytes, how = len(source), args.code
    elif args.code_bytes is not None:
        code_bytes, how = args.code_bytes, "recipe files as given by the runner"
    if model.is_file() and code_bytes is not None:
        model_bytes = model.stat().st_size
        info["artifact_bytes"] = model_bytes + code_bytes
        info["code_bytes"] = code_bytes
        info["size_detail"] = f"model {model_bytes:,} + code {code_bytes:,} ({how})"
        if "logged_bytes" in info:
            info["size_detail"] += f"; the script logged {info['logged_bytes']:,}"
    elif "logged_bytes" in info:
        info["artifact_bytes"] = info["logged_bytes"]
        info["size_detail"] = "as logged by the script ('Total submission size')"
    else:
        raise RunFailed("crash", f"{run}: no artifact size: no {args.artifact} (with {args.code} or --code-bytes) "
                                 "and no 'Total submission size ...: N bytes' line in the log")
    return info


def evaluate(runs: list[Path], args: argparse.Namespace) -> dict:
    metrics: dict[str, float] = {}
    gates: list[dict] = []
    result = {"score": None, "metrics": metrics, "gates": gates, "label": None, "reason": ""}
    score_label = re.compile(args.score_label) if args.score_label else None
    infos = []
    for i, run in enumerate(runs):
        try:
            infos.append(evaluate_run(run, args, score_label))
        except RunFailed as e:
            where = f"run {i + 1} of {len(runs)}: " if len(runs) > 1 else ""
            result["label"], result["reason"] = e.label, where + str(e)
            return result
    bpbs = [inf["val_bpb"] for inf in infos]
    metrics["val_bpb"] = sum(bpbs) / len(bpbs)
    metrics["val_loss"] = sum(inf["val_loss"] for inf in infos) / len(infos)
    if len(bpbs) > 1:
        mean = metrics["val_bpb"]
        metrics["val_bpb_sd"] = math.sqrt(sum((b - mean) ** 2 for b in bpbs) / (len(bpbs) - 1))
    result["score"] = metrics["val_bpb"]

    worst_size = max(inf["artifact_bytes"] for inf in infos)
    metrics["artifact_bytes"] = float(worst_size)
    detail = max(infos, key=lambda inf: inf["artifact_bytes"])["size_detail"]
    if "code_bytes" in infos[-1]:
        metrics["code_bytes"] = float(infos[-1]["code_bytes"])
    if "logged_bytes" in infos[-1]:
        metrics["logged_submission_bytes"] = float(infos[-1]["logged_bytes"])
    gates.append({"name": "artifact_bytes", "passed": worst_size <= args.max_bytes, "value": worst_size,
                  "limit": args.max_bytes, "detail": detail})
    failures: list[tuple[str, str]] = []
    if worst_size > args.max_bytes:
        failures.append(("size_blocked", f"submission is {worst_size:,} bytes, over the {args.max_bytes:,}-byte "
                                         f"cap ({detail})"))
    train_times = [inf["train_time_s"] for inf in infos if "train_time_s" in inf]
    if train_times:
        worst = max(train_times)
        limit = args.train_cap_s + args.train_slack_s
        metrics["train_time_s"] = worst
        gates.append({"name": "train_time_s", "passed": worst <= limit, "value": worst, "limit": limit})
        if worst > limit:
            failures.append(("train_budget_overrun", f"training took {worst:.1f} s by the script's own timer, "
                                                     f"over the {args.train_cap_s:g} s limit"))
    eval_times = [inf["eval_time_s"] for inf in infos if "eval_time_s" in inf]
    if eval_times:
        worst = max(eval_times)
        metrics["eval_time_s"] = worst
        gates.append({"name": "eval_time_s", "passed": worst <= args.eval_cap_s, "value": worst,
                      "limit": args.eval_cap_s})
        if worst > args.eval_cap_s:
            failures.append(("eval_budget_overrun", f"evaluation took {worst:.1f} s, over the "
                                                    f"{args.eval_cap_s:g} s limit"))
    if failures:
        result["label"] = failures[0][0]
        result["reason"] = "; ".join(r for _, r in failures)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated run output dirs")
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--code-bytes", type=int, default=None)
    ap.add_argument("--train-wall-s", default="")
    ap.add_argument("--heldout", default="", help="accepted and ignored: the score comes from the log")
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    ap.add_argument("--train-cap-s", type=float, default=TRAIN_CAP_S)
    ap.add_argument("--train-slack-s", type=float, default=1.0)
    ap.add_argument("--eval-cap-s", type=float, default=EVAL_CAP_S)
    ap.add_argument("--score-label", default="", help="regex: only final lines whose label matches count")
    ap.add_argument("--artifact", default=ARTIFACT)
    ap.add_argument("--code", default=CODE, help="the recipe's code file in the run folder")
    ap.add_argument("--code-size", choices=("packed", "raw"), default="packed")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"evaluate.py: ignoring unknown arguments {unknown}", file=sys.stderr)
    runs = [Path(r) for r in args.runs.split(",") if r]
    if not runs:
        ap.error("--runs names no run directory")
    result = evaluate(runs, args)
    wall = [float(w) for w in args.train_wall_s.split(",") if w]
    if wall:
        result["metrics"]["train_wall_s"] = sum(wall) / len(wall)
    # in place: the sandbox lets the evaluator write this one file and nothing beside it
    args.result.write_text(json.dumps(result, indent=1))
    print(f"score={result['score']} label={result['label']} {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
