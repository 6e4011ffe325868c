"""nanochat-mini evaluator: mini-CORE (the score) and val_bpb on held-out works.

    evaluate.py --runs a[,b...] --heldout DATA/heldout --result result.json
                [--train-wall-s x,...] [--code-bytes N]

For every run directory it rebuilds the evaluator-owned GPT (``model.py`` beside this file) from
``model.json`` and reads ``model.npz`` (plain arrays, ``allow_pickle=False``: no pickle, no recipe
code runs here). It then builds the mini-CORE tasks from the held-out works (``core_tasks.py``, fixed seed)
and scores every option by the model's log-likelihood, packing each item's shared head and its
options into one row (options do not see each other) after a cached few-shot prefix. Several runs
(seeds) are averaged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import core_tasks  # noqa: E402
from model import EVAL_MAX_LEN, GPT, ConfigError, check_config, load_weights  # noqa: E402

ARTIFACT = "model.npz"
CONFIG = "model.json"
VAL_BYTES_PER_WORK = 16_000  # val_bpb: this many bytes from the middle of each held-out work
ROW_TOKENS = 8192  # packed tokens per forward pass


def load_model(run_dir: Path) -> GPT:
    cfg = check_config(json.loads((run_dir / CONFIG).read_text()))
    model = GPT(cfg)
    state = load_weights(run_dir / ARTIFACT)
    model.load_state_dict(state, strict=True)
    return model.eval()


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def pack(head: list[int], branches: list[list[int]], start: int):
    """One packed row: tokens, positions, within-row mask, and per branch the (predictor index,
    target token) pairs of its tokens."""
    tokens = head + [t for b in branches for t in b]
    n = len(tokens)
    positions = list(range(start, start + len(head)))
    mask = torch.zeros(n, n, dtype=torch.bool)
    h = len(head)
    mask[:h, :h] = torch.ones(h, h, dtype=torch.bool).tril()
    spans, at = [], h
    for b in branches:
        m = len(b)
        positions += range(start + h, start + h + m)
        mask[at:at + m, :h] = True
        mask[at:at + m, at:at + m] = torch.ones(m, m, dtype=torch.bool).tril()
        spans.append((at, m))
        at += m
    return tokens, positions, mask, spans


def make_scorer(model: GPT):
    """A core_tasks.Scorer backed by ``model``: per branch (sum log p of scored bytes, count, greedy
    match)."""

    @torch.no_grad()
    def scorer(requests: Sequence[core_tasks.Request]) -> list[list[core_tasks.BranchScore]]:
        results: list[list[core_tasks.BranchScore] | None] = [None] * len(requests)
        by_prefix: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            by_prefix[req[0]].append(i)
        for prefix_text, idxs in by_prefix.items():
            prefix = encode(prefix_text)[-(EVAL_MAX_LEN // 2):]
            cache = model.prefix(torch.tensor([prefix]))
            rows = []
            for i in idxs:
                _, head_text, branch_texts, skips = requests[i]
                head = encode(head_text)
                branches = [encode(b) for b in branch_texts]
                if not head and min(skips) < 1:
                    raise ValueError("a branch with nothing before it cannot be scored")
                rows.append((i, head, branches, skips, pack(head, branches, len(prefix))))
            rows.sort(key=lambda r: len(r[4][0]))
            batch: list = []
            for row in rows + [None]:
                width = max([len(r[4][0]) for r in batch] + ([len(row[4][0])] if row else [0]))
                if batch and (row is None or width * (len(batch) + 1) > ROW_TOKENS):
                    _score_batch(model, cache, batch, results)
                    batch = []
                if row is not None:
                    batch.append(row)
        return results  # type: ignore[return-value]

    return scorer


def _score_batch(model: GPT, cache, batch, results) -> None:
    T = max(len(r[4][0]) for r in batch)
    B = len(batch)
    tokens = torch.zeros(B, T, dtype=torch.long)
    positions = torch.zeros(B, T, dtype=torch.long)
    mask = torch.eye(T, dtype=torch.bool).repeat(B, 1, 1)  # padding attends to itself only
    for r, (_, _, _, _, (toks, pos, m, _)) in enumerate(batch):
        n = len(toks)
        tokens[r, :n] = torch.tensor(toks)
        positions[r, :n] = torch.tensor(pos)
        mask[r, :n, :n] = m
    logp = F.log_softmax(model(tokens, cache=cache, positions=positions, mask=mask).float(), dim=-1)
    for r, (i, head, branches, skips, (_, _, _, spans)) in enumerate(batch):
        out = []
        for b, skip, (at, m) in zip(branches, skips, spans, strict=True):
            pred = [(len(head) - 1 if o == 0 else at + o - 1) for o in range(skip, m)]
            tgt = torch.tensor(b[skip:m])
            lp = logp[r, pred]
            out.append((float(lp.gather(1, tgt[:, None]).double().sum()), len(pred), bool((lp.argmax(1) == tgt).all())))
        results[i] = out


@torch.no_grad()
def val_bpb(model: GPT, texts: dict[str, str]) -> float:
    """Bits per byte over non-overlapping windows of the model's context from each held-out work."""
    width = min(model.cfg.seq_len, EVAL_MAX_LEN)
    nll, count = 0.0, 0
    for name in sorted(texts):
        data = texts[name].encode("utf-8")
        mid = max(0, (len(data) - VAL_BYTES_PER_WORK) // 2)
        chunk = torch.tensor(list(data[mid:mid + VAL_BYTES_PER_WORK + 1]), dtype=torch.long)
        n = (len(chunk) - 1) // width
        x = chunk[:n * width].view(n, width)
        y = chunk[1:n * width + 1].view(n, width)
        for s in range(0, n, 32):
            logits = model(x[s:s + 32]).float()
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[s:s + 32].reshape(-1),
                                   reduction="sum").item()
            count += y[s:s + 32].numel()
    return nll / count / math.log(2)


def evaluate(runs: list[Path], heldout: Path, code_bytes: int | None, wall_s: list[float]) -> dict:
    if not runs:
        raise ValueError("no runs to evaluate")
    texts = core_tasks.load_heldout(heldout)
    if not texts:
        raise ValueError(f"no held-out texts in {heldout}")
    tasks = core_tasks.build_tasks(texts)
    per_run = []
    for run in runs:
        model = load_model(run)
        t0 = time.perf_counter()
        core = core_tasks.evaluate_core(tasks, make_scorer(model))
        bpb = val_bpb(model, texts)
        if not (math.isfinite(core["core"]) and math.isfinite(bpb)):
            raise ValueError(f"{run}: non-finite scores (core {core['core']}, val_bpb {bpb})")
        per_run.append({"core": core, "val_bpb": bpb, "eval_s": time.perf_counter() - t0})
    score = sum(r["core"]["core"] for r in per_run) / len(per_run)
    metrics: dict = {
        "core": round(score, 6),
        "val_bpb": round(sum(r["val_bpb"] for r in per_run) / len(per_run), 6),
        "params": sum(p.numel() for p in model.parameters()),
    }
    for name in per_run[0]["core"]["tasks"]:
        metrics[f"core_{name}"] = round(sum(r["core"]["tasks"][name]["centered"] for r in per_run) / len(per_run), 6)
    if len(per_run) > 1:
        metrics["core_runs"] = [round(r["core"]["core"], 6) for r in per_run]
    if code_bytes is not None:
        metrics["code_bytes"] = code_bytes
    if wall_s:
        metrics["train_s"] = round(sum(wall_s) / len(wall_s), 3)
    metrics["eval_s_per_run"] = round(sum(r["eval_s"] for r in per_run) / len(per_run), 2)
    return {"score": round(score, 6), "metrics": metrics, "gates": [], "label": None, "reason": ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="nanochat-mini evaluator (mini-CORE + val_bpb)")
    ap.add_argument("--runs", required=True, help="comma-separated run output directories")
    ap.add_argument("--heldout", required=True, type=Path)
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--train-wall-s", default="", help="comma-separated runner-measured wall seconds")
    ap.add_argument("--code-bytes", type=int, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "2")))
    try:
        wall_s = [float(w) for w in args.train_wall_s.split(",") if w]
        result = evaluate([Path(r) for r in args.runs.split(",") if r], args.heldout, args.code_bytes, wall_s)
    except (OSError, ValueError, KeyError, RuntimeError, ConfigError) as e:
        print(f"nanochat-mini evaluation failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    args.result.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
