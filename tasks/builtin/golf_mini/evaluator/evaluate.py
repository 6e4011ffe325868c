"""golf-mini evaluator: val_bpb of each run's artifact on held-out Shakespeare, gated on size.

    evaluate.py --runs a,b,... --heldout DATA/heldout --result result.json
                [--train-wall-s x,y,...] [--code-bytes N] [--max-bytes 1000000]

For every run directory it reads ``artifact.bin`` with the evaluator-owned format (``artifact.py``
beside this file), rebuilds the evaluator-owned model (``model.py``) from the stored config, loads
the dequantized weights, tokenizes the held-out text with the stored merges (``tokenizer.py``) and
scores it in non-overlapping windows of ``block_size`` tokens. No recipe code runs here.

    val_bpb = total cross-entropy (nats) / (ln 2 * UTF-8 bytes of the scored tokens)

Every token but the first of the held-out text is scored, so the score does not depend on the
tokenizer. The score is the mean val_bpb over the runs. Size gate: recipe code bytes + artifact
bytes must be <= --max-bytes for every run, else the result is labelled ``size_blocked`` and
nothing is scored. A missing or malformed artifact gives ``score: null`` and a ``reason``.
The process exits 0 whenever it wrote the result file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from artifact import ArtifactError, unpack  # noqa: E402
from model import GPT, ConfigError, check_config  # noqa: E402
from tokenizer import TokenizerError, check_merges, encode, token_bytes  # noqa: E402

MAX_BYTES = 1_000_000  # the size gate; task.toml's [gates] artifact_max_bytes mirrors it
ARTIFACT = "artifact.bin"
HELDOUT = "heldout.txt"
EVAL_BATCH = 32


class RunRejected(Exception):
    """This run's artifact cannot be scored; the message is the reason."""


def load_model(path: Path, device: str) -> tuple[GPT, list]:
    try:
        raw_cfg, raw_merges, tensors = unpack(path.read_bytes())
        cfg = check_config(raw_cfg)
        merges = check_merges(raw_merges)
    except (ArtifactError, ConfigError, TokenizerError) as e:
        raise RunRejected(f"{path}: malformed artifact: {e}") from None
    if cfg.vocab_size < 256 + len(merges):
        raise RunRejected(f"{path}: vocab_size {cfg.vocab_size} is smaller than 256 + {len(merges)} merges")
    model = GPT(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise RunRejected(f"{path}: tensors do not match the config: missing {missing[:5]}, unexpected {extra[:5]}")
    for k in want:
        if want[k] != got[k]:
            raise RunRejected(f"{path}: tensor {k} has shape {list(got[k])}, the config needs {list(want[k])}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()})
    return model.to(device).eval(), merges


@torch.inference_mode()
def score_text(model: GPT, merges: list, text: bytes, device: str) -> dict:
    ids = encode(text, merges)
    if len(ids) < 2:
        raise RunRejected("held-out text is too short to score")
    scored_bytes = int(len(text) - token_bytes(merges)[ids[0]])
    tok = torch.from_numpy(ids.astype(np.int64))
    T = model.cfg.block_size
    n_targets = len(ids) - 1
    n_full = n_targets // T
    nats = 0.0
    if n_full:
        x = tok[: n_full * T].view(n_full, T)
        y = tok[1: n_full * T + 1].view(n_full, T)
        for i in range(0, n_full, EVAL_BATCH):
            _, loss = model(x[i: i + EVAL_BATCH].to(device), y[i: i + EVAL_BATCH].to(device), reduction="sum")
            nats += float(loss)
    rest = n_targets - n_full * T
    if rest:
        x = tok[n_full * T: n_full * T + rest].view(1, rest)
        y = tok[n_full * T + 1:].view(1, rest)
        _, loss = model(x.to(device), y.to(device), reduction="sum")
        nats += float(loss)
    if not math.isfinite(nats):
        raise RunRejected("the model's held-out loss is not finite")
    return {"val_bpb": nats / (math.log(2) * scored_bytes), "nats": nats, "tokens": n_targets,
            "scored_bytes": scored_bytes}


def evaluate(runs: list[Path], heldout: Path, code_bytes: int, max_bytes: int, wall_s: list[float],
             device: str) -> dict:
    t0 = time.time()
    gates, metrics = [], {"code_bytes": code_bytes}
    if wall_s:
        metrics["train_wall_s"] = sum(wall_s) / len(wall_s)
    result = {"score": None, "metrics": metrics, "gates": gates, "label": None, "reason": ""}
    paths = [run / ARTIFACT for run in runs]
    for p in paths:
        if not p.is_file():
            result["reason"] = f"run {p.parent} wrote no {ARTIFACT}"
            return result
    sizes = [code_bytes + p.stat().st_size for p in paths]
    worst = max(sizes)
    passed = worst <= max_bytes
    gates.append({"name": "artifact_bytes", "passed": passed, "value": worst, "limit": max_bytes})
    metrics["artifact_bytes"] = worst
    if not passed:
        result["label"] = "size_blocked"
        result["reason"] = (f"artifact is {worst:,} bytes (code {code_bytes:,} + model {worst - code_bytes:,}), "
                            f"over the {max_bytes:,}-byte cap")
        return result
    text = (heldout / HELDOUT).read_bytes()
    bpbs = []
    try:
        for p in paths:
            model, merges = load_model(p, device)
            s = score_text(model, merges, text, device)
            bpbs.append(s["val_bpb"])
            metrics.update(tokens=s["tokens"], scored_bytes=s["scored_bytes"],
                           params=sum(v.numel() for v in model.parameters()), merges=len(merges))
    except RunRejected as e:
        gates.append({"name": "artifact_loads", "passed": False, "value": str(e)[:200], "limit": None})
        result["reason"] = str(e)
        return result
    metrics["val_bpb"] = sum(bpbs) / len(bpbs)
    metrics["val_bpb_runs"] = bpbs
    metrics["eval_s"] = round(time.time() - t0, 3)
    result["score"] = metrics["val_bpb"]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated run output dirs")
    ap.add_argument("--heldout", required=True, type=Path)
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--train-wall-s", default="")
    ap.add_argument("--code-bytes", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    ap.add_argument("--device", default=os.environ.get("ARLEDGER_DEVICE", "cpu"))
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "2")))
    runs = [Path(r) for r in args.runs.split(",") if r]
    if not runs:
        ap.error("--runs names no run directory")
    wall = [float(w) for w in args.train_wall_s.split(",") if w]
    if not (args.heldout / HELDOUT).is_file():
        print(f"evaluate.py: {args.heldout / HELDOUT} is missing; run the task's prepare command", file=sys.stderr)
        return 2
    device = "cuda" if args.device == "cuda" and torch.cuda.is_available() else "cpu"
    result = evaluate(runs, args.heldout, args.code_bytes, args.max_bytes, wall, device)
    # in place: the sandbox lets the evaluator write this one file and nothing beside it
    args.result.write_text(json.dumps(result, indent=1))
    print(f"score={result['score']} label={result['label']} {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
