"""golf-mini baseline: train a tiny GPT on Shakespeare, quantize it, compress it.

Reads $ARLEDGER_DATA/train.txt and writes $ARLEDGER_OUT/artifact.bin (format: evaluator/artifact.py).
The model family (evaluator/model.py) and tokenizer (evaluator/tokenizer.py) belong to the evaluator
and are staged read-only beside this file: the recipe picks their config, trains the weights and
decides how to quantize them. Score: val_bpb on held-out works, lower is better. Gate: the bytes of
this file + the artifact must stay <= 1,000,000.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
import artifact  # noqa: E402  (evaluator-owned, read-only)
import tokenizer  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

# region: arch
N_LAYER = 2
N_HEAD = 2
N_EMBD = 64
BLOCK_SIZE = 64
MLP_MULT = 4.0
TIE_EMBED = True
QK_NORM = False
POS = "learned"  # learned | rope
NORM = "layernorm"  # layernorm | rmsnorm
ACT = "gelu"  # gelu | relu2
LOGIT_SOFTCAP = 0.0  # 0 = off
# endregion

# region: opt
LR = 1e-3
BETA1 = 0.9
BETA2 = 0.95
EPS = 1e-8
BATCH_SIZE = 32
# endregion

# The work every run trains (the task is bounded by work): fixed by the task, outside every surface,
# so that runs are compared at equal work. Specialists read it (the schedule may use it), never set it.
MAX_STEPS = 1500

# region: sched
WARMUP_STEPS = 10
# endregion

# region: reg
WEIGHT_DECAY = 0.0
DROPOUT = 0.0
# endregion

# region: quant
QUANT_BITS = 8
QUANT_GROUP = 64
QUANT_EMBED_BITS = 8
COMPRESSOR = "zlib"  # zlib | lzma | zstd | none
# endregion

# region: tok
TOK_MERGES = 0  # 0 = raw bytes; else learn this many BPE merges on the training text
TOK_SAMPLE_BYTES = 1_000_000
# endregion

SEED = int(os.environ.get("ARLEDGER_SEED", "0"))
DEVICE = os.environ.get("ARLEDGER_DEVICE", "cpu")
DATA = Path(os.environ.get("ARLEDGER_DATA", "data/train"))
OUT = Path(os.environ.get("ARLEDGER_OUT", "out"))
torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", 2)))
torch.manual_seed(SEED)
if DEVICE == "cuda" and not torch.cuda.is_available():
    sys.exit("ARLEDGER_DEVICE=cuda but torch sees no CUDA device")
T_START = time.time()


# region: tok_code
def learn_merges(data: bytes, n_merges: int) -> list[tuple[int, int]]:
    """Greedy byte-pair merges: repeatedly merge the most frequent adjacent pair."""
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    vocab = 256 + n_merges
    merges = []
    for i in range(n_merges):
        counts = np.bincount(ids[:-1] * vocab + ids[1:], minlength=vocab * vocab)
        best = int(counts.argmax())
        if counts[best] < 2:
            break
        a, b = divmod(best, vocab)
        merges.append((a, b))
        ids = tokenizer.merge_pair(ids, a, b, 256 + i)
    return merges
# endregion


text = (DATA / "train.txt").read_bytes()
merges = learn_merges(text[:TOK_SAMPLE_BYTES], TOK_MERGES) if TOK_MERGES > 0 else []
data = torch.from_numpy(tokenizer.encode(text, merges).astype(np.int64))
print(f"train text: {len(text):,} bytes -> {len(data):,} tokens ({len(merges)} merges)", flush=True)

config = GPTConfig(vocab_size=256 + len(merges), n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD,
                   block_size=BLOCK_SIZE, mlp_mult=MLP_MULT, tie_embed=TIE_EMBED, qk_norm=QK_NORM, pos=POS,
                   norm=NORM, act=ACT, logit_softcap=LOGIT_SOFTCAP, dropout=DROPOUT)
model = GPT(config).to(DEVICE)
print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)


# region: opt_code
def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": WEIGHT_DECAY}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=(BETA1, BETA2), eps=EPS)


def before_step(model: torch.nn.Module) -> None:
    """Runs after backward, before the optimizer step."""
# endregion


# region: sched_code
def lr_at(step: int) -> float:
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    return LR
# endregion


gen = torch.Generator().manual_seed(SEED)


def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - BLOCK_SIZE - 1, (BATCH_SIZE,), generator=gen)
    x = torch.stack([data[i: i + BLOCK_SIZE] for i in ix])
    y = torch.stack([data[i + 1: i + 1 + BLOCK_SIZE] for i in ix])
    return x.to(DEVICE), y.to(DEVICE)


opt = make_optimizer(model)
model.train()
# The run is bounded by work: MAX_STEPS steps, every one of them (the task's train_s is a safety limit
# only). The runner compares the work done with the work planned: a run that stops short is truncated.
print(f"metric work_planned={MAX_STEPS} step=0", flush=True)
steps_done = 0
for step in range(MAX_STEPS):
    for group in opt.param_groups:
        group["lr"] = lr_at(step) * group.get("lr_mult", 1.0)
    x, y = get_batch()
    _, loss = model(x, y)
    loss_value = loss.item()
    if not np.isfinite(loss_value):
        sys.exit(f"diverged: loss is {loss_value} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    before_step(model)
    opt.step()
    if step % 25 == 0 or step == MAX_STEPS - 1:
        print(f"metric train_loss={loss_value:.4f} step={step}", flush=True)
    steps_done = step + 1


# region: quant_code
def quant_plan(state: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """(bits, group) per tensor: vectors stay float16, embeddings get QUANT_EMBED_BITS."""
    plan = {}
    for name, value in state.items():
        if value.ndim < 2:
            plan[name] = (16, 0)
        elif name in ("wte.weight", "wpe.weight", "head.weight"):
            plan[name] = (QUANT_EMBED_BITS, QUANT_GROUP)
        else:
            plan[name] = (QUANT_BITS, QUANT_GROUP)
    return plan
# endregion


state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
blob = artifact.pack(config.to_dict(), state, merges, quant_plan(state), COMPRESSOR)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "artifact.bin").write_bytes(blob)
print(f"metric artifact_bytes={len(blob)} step={step}", flush=True)
print(f"metric work_done={steps_done} step={step}", flush=True)
print(f"done in {time.time() - T_START:.1f}s", flush=True)
