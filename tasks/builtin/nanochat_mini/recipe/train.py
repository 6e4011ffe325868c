"""nanochat-mini baseline: pretrain a tiny byte-level GPT on Shakespeare for a fixed number of steps.

A CPU miniature of nanochat's base-model pretraining: stream windows of training text, train the
GPT with AdamW under a warmup / warmdown schedule, save the weights. Score: mini-CORE (mean centered
accuracy over few-shot multiple-choice, schema and language-modelling tasks built from held-out
works), computed by the evaluator; higher is better. Secondary: val_bpb on held-out text.

Reads $ARLEDGER_DATA/{modern,folio}/*.txt (the training works only) and writes $ARLEDGER_OUT/model.npz
(a state dict) and $ARLEDGER_OUT/model.json (the config). The model family (evaluator/model.py) is
evaluator-owned and staged read-only beside this file: the recipe picks a config, trains the weights.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
from model import GPT, GPTConfig, save_weights  # noqa: E402  (evaluator-owned, read-only)

# region: arch
N_LAYER = 4
N_HEAD = 4
N_EMBD = 96
MLP_MULT = 4.0
ACT = "relu2"  # relu2 | gelu
QK_NORM = True
TIE_EMBED = False
LOGIT_SOFTCAP = 15.0  # 0 = off
# endregion

# region: opt
LR = 1e-3
BETA1 = 0.9
BETA2 = 0.95
WEIGHT_DECAY = 0.0
BATCH_SIZE = 8  # sequences per micro-batch
GRAD_CLIP = 0.0  # 0 = off
# endregion

# region: sched
MAX_STEPS = 300
WARMUP_STEPS = 30
WARMDOWN_FRAC = 0.0  # fraction of steps at the end over which the LR decays linearly to 0
# endregion

# region: data
SEQ_LEN = 256
MIX_FOLIO = 0.5  # share of sequences drawn from First Folio editions (old spelling)
INCLUDE_POEMS = True  # the sonnets and narrative poems, besides the plays
SAMPLING = "random"  # random: windows at random offsets | sequential: one pass in order per stream
# endregion

# region: sys
GRAD_ACCUM = 1  # micro-batches per optimizer step
AUTOCAST_BF16 = False  # bfloat16 autocast for the forward pass
COMPILE = False  # torch.compile the model
LOG_EVERY = 25
# endregion

SEED = int(os.environ.get("ARLEDGER_SEED", "0"))
DEVICE = os.environ.get("ARLEDGER_DEVICE", "cpu")
DATA = Path(os.environ.get("ARLEDGER_DATA", "data/train"))
OUT = Path(os.environ.get("ARLEDGER_OUT", "out"))
torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "2")))
torch.manual_seed(SEED)
if DEVICE == "cuda" and not torch.cuda.is_available():
    sys.exit("ARLEDGER_DEVICE=cuda but torch sees no CUDA device")
T_START = time.time()
POEMS = {"sonnets", "rape_of_lucrece", "passionate_pilgrim", "phoenix_and_the_turtle", "lovers_complaint"}


# region: data_code
def load_stream(edition: str) -> torch.Tensor:
    """All works of one edition as one byte stream, works separated by a blank line."""
    parts = [p.read_bytes() for p in sorted((DATA / edition).glob("*.txt"))
             if INCLUDE_POEMS or p.stem not in POEMS]
    return torch.from_numpy(np.frombuffer(b"\n\n".join(parts), dtype=np.uint8).astype(np.int64))


streams = {"modern": load_stream("modern"), "folio": load_stream("folio")}
gen = torch.Generator().manual_seed(SEED)
cursor = {name: 0 for name in streams}


def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
    n_folio = int(torch.binomial(torch.tensor(float(BATCH_SIZE)), torch.tensor(float(MIX_FOLIO)), generator=gen))
    rows = []
    for name, count in (("folio", n_folio), ("modern", BATCH_SIZE - n_folio)):
        data = streams[name]
        for _ in range(count):
            if SAMPLING == "sequential":
                i = cursor[name]
                cursor[name] = (i + SEQ_LEN) % (len(data) - SEQ_LEN - 1)
            else:
                i = int(torch.randint(len(data) - SEQ_LEN - 1, (1,), generator=gen))
            rows.append(data[i: i + SEQ_LEN + 1])
    batch = torch.stack(rows)
    return batch[:, :-1].to(DEVICE), batch[:, 1:].to(DEVICE)
# endregion


config = GPTConfig(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, seq_len=SEQ_LEN, mlp_mult=MLP_MULT, act=ACT,
                   qk_norm=QK_NORM, tie_embed=TIE_EMBED, logit_softcap=LOGIT_SOFTCAP)
model = GPT(config).to(DEVICE)
print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; "
      f"train streams: {', '.join(f'{k} {len(v):,} bytes' for k, v in streams.items())}", flush=True)
step_model = torch.compile(model) if COMPILE else model  # the same weights; compiled forward


# region: opt_code
def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": WEIGHT_DECAY}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=(BETA1, BETA2), eps=1e-8)
# endregion


# region: sched_code
def lr_at(step: int) -> float:
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    warmdown = int(WARMDOWN_FRAC * MAX_STEPS)
    if warmdown > 0 and step >= MAX_STEPS - warmdown:
        return LR * (MAX_STEPS - step) / warmdown
    return LR
# endregion


# region: sys_code
opt = make_optimizer(model)
model.train()
smooth = None
print(f"metric work_planned={MAX_STEPS} step=0", flush=True)  # bounded by work: every step runs
steps_done = 0
for step in range(MAX_STEPS):
    for group in opt.param_groups:
        group["lr"] = lr_at(step) * group.get("lr_mult", 1.0)
    for _ in range(GRAD_ACCUM):
        x, y = get_batch()
        with torch.autocast(device_type=DEVICE, dtype=torch.bfloat16, enabled=AUTOCAST_BF16):
            _, loss = step_model(x, y)
        (loss / GRAD_ACCUM).backward()
    loss_value = loss.item()
    if not np.isfinite(loss_value):
        sys.exit(f"diverged: loss is {loss_value} at step {step}")
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    opt.step()
    opt.zero_grad(set_to_none=True)
    smooth = loss_value if smooth is None else 0.9 * smooth + 0.1 * loss_value
    if step % LOG_EVERY == 0 or step == MAX_STEPS - 1:
        print(f"metric train_loss={smooth:.4f} step={step}", flush=True)
    steps_done = step + 1
# endregion

OUT.mkdir(parents=True, exist_ok=True)
save_weights({k: v.detach().float() for k, v in model.state_dict().items()}, OUT / "model.npz")
(OUT / "model.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
print(f"metric train_seconds={time.time() - T_START:.1f} step={MAX_STEPS}", flush=True)
print(f"metric work_done={steps_done} step={MAX_STEPS}", flush=True)
