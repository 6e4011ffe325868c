"""airbench-mini: train a small convnet on 4,000 MNIST digits as fast as possible.

A CPU miniature of Keller Jordan's airbench: the whole training set lives in one tensor, each epoch
is augmented on the fly (random flip, random translation), and the net is trained with Nesterov SGD,
label smoothing and a triangular learning-rate schedule. The score is the wall time the *runner*
measures for this whole process (lower is better); the evaluator then checks the saved model's
held-out accuracy, with test-time augmentation, against the task's accuracy gate.

The network is the evaluator-owned family in evaluator/model.py (staged read-only beside this file):
this recipe picks its config, trains its weights, and writes both to $ARLEDGER_OUT.
"""

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent / "evaluator"))
from model import Net, normalize, save_weights  # noqa: E402  (evaluator-owned, read-only)

# region: arch
STEM_WIDTH = 16  # channels of the 2x2 stride-2 stem
WIDTH = 32  # channels of the first ConvGroup; the next two use 2 * WIDTH
DEPTH = 2  # convs per ConvGroup
ACT = "gelu"  # gelu | relu | silu
# endregion

# region: opt
EPOCHS = 6
BATCH_SIZE = 128
LR = 0.5  # peak learning rate
MOMENTUM = 0.85
NESTEROV = True
WARMUP_FRAC = 0.2  # share of the steps spent ramping the LR up; the rest decays linearly to 0
# endregion

# region: aug
FLIP = True  # random horizontal flips (airbench's CIFAR default)
TTA_FLIP = True  # include mirrored views in test-time augmentation
TRANSLATE = 2  # random translation by up to this many pixels (reflect padding)
TTA_LEVEL = 2  # test-time augmentation the evaluator applies: 0 none, 1 flip, 2 flip + translate
# endregion

# region: loss
LABEL_SMOOTHING = 0.2
LOGIT_SCALE = 0.111  # multiplies the head's logits (airbench's 1/9 scaling factor)
# endregion

# region: reg
WEIGHT_DECAY = 5e-4
BN_MOMENTUM = 0.6
LOG_TRAIN_ACC = True  # after each epoch, measure accuracy on the whole training set (logging only)
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

with np.load(DATA / "mnist_train.npz") as npz:
    train_images = normalize(torch.from_numpy(npz["images"])).to(DEVICE)
    train_labels = torch.from_numpy(npz["labels"]).long().to(DEVICE)
N = len(train_labels)


# region: aug_code
def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random view of every image: translated by up to TRANSLATE pixels, maybe mirrored."""
    if TRANSLATE > 0:
        r = TRANSLATE
        padded = F.pad(images, (r, r, r, r), mode="reflect")
        dx = torch.randint(0, 2 * r + 1, (len(images),), generator=gen).to(DEVICE)
        dy = torch.randint(0, 2 * r + 1, (len(images),), generator=gen).to(DEVICE)
        out = torch.empty_like(images)
        for sx in range(2 * r + 1):  # one strided copy per shift
            for sy in range(2 * r + 1):
                idx = torch.nonzero((dx == sx) & (dy == sy)).squeeze(1)
                out[idx] = padded[idx, :, sy:sy + 28, sx:sx + 28]
        images = out
    if FLIP:
        flip = (torch.rand(len(images), generator=gen) < 0.5).to(DEVICE)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images
# endregion


config = {"stem_width": STEM_WIDTH, "widths": [WIDTH, 2 * WIDTH, 2 * WIDTH], "depth": DEPTH, "act": ACT,
          "scaling": LOGIT_SCALE, "bn_momentum": BN_MOMENTUM, "tta_level": TTA_LEVEL, "tta_flip": TTA_FLIP}
model = Net(config).to(DEVICE)
steps_per_epoch = math.ceil(N / BATCH_SIZE)
total_steps = EPOCHS * steps_per_epoch


# region: opt_code
def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    weights = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    biases = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return torch.optim.SGD([{"params": weights, "weight_decay": WEIGHT_DECAY},
                            {"params": biases, "weight_decay": 0.0}],
                           lr=LR, momentum=MOMENTUM, nesterov=NESTEROV)


def lr_at(step: int) -> float:
    """Triangular schedule: linear warmup to LR, then linear decay to 0 at the last step."""
    warmup = max(1, int(WARMUP_FRAC * total_steps))
    if step < warmup:
        return LR * (step + 1) / warmup
    return LR * max(0.0, (total_steps - step) / max(1, total_steps - warmup))
# endregion


# region: loss_code
def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
# endregion


# region: reg_code
@torch.no_grad()
def train_accuracy() -> float:
    """Accuracy on the (unaugmented) training set; logging only, it does not change training."""
    model.eval()
    correct = sum((model(train_images[i:i + 1000]).argmax(1) == train_labels[i:i + 1000]).sum().item()
                  for i in range(0, N, 1000))
    model.train()
    return correct / N
# endregion


optimizer = make_optimizer(model)
gen = torch.Generator().manual_seed(SEED)
step = 0
model.train()
print(f"metric work_planned={EPOCHS} step=0", flush=True)  # bounded by work: every epoch runs
epochs_done = 0
for _ in range(EPOCHS):
    images = augment(train_images, gen)
    order = torch.randperm(N, generator=gen).to(DEVICE)
    for i in range(0, N, BATCH_SIZE):
        idx = order[i:i + BATCH_SIZE]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = loss_fn(model(images[idx]), train_labels[idx])
        if not torch.isfinite(loss):
            sys.exit(f"diverged: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    print(f"metric train_loss={loss.item():.4f} step={step}", flush=True)
    if LOG_TRAIN_ACC:
        print(f"metric train_acc={train_accuracy():.4f} step={step}", flush=True)
    epochs_done += 1

OUT.mkdir(parents=True, exist_ok=True)
save_weights(model.state_dict(), OUT / "model.npz")
(OUT / "model.json").write_text(json.dumps(config, indent=1) + "\n")
print(f"metric train_seconds={time.time() - T_START:.2f} step={step}", flush=True)
print(f"metric work_done={epochs_done} step={step}", flush=True)
