"""airbench-mini: train a small convnet on 4,000 MNIST digits as fast as possible.

A CPU miniature of Keller Jordan's airbench: the whole training set lives in one tensor, batches
are augmented on the fly (random flip, random translation), the net is trained with Nesterov SGD,
label smoothing and a triangular learning-rate schedule. The score is the wall time the *runner*
measures for this whole process; the evaluator then checks the saved model's held-out accuracy
(with test-time augmentation) against the task's accuracy gate.

The network itself is the evaluator-owned family in ``model.py`` (staged read-only next to this
file): this recipe picks its config and trains its weights, and writes both to $ARLEDGER_OUT.
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
from model import Net, normalize  # noqa: E402  (evaluator-owned, read-only)

# region: arch
STEM_WIDTH = 16          # channels of the 2x2 stride-2 stem
WIDTH = 32               # channels of the first ConvGroup; the next two use 2 * WIDTH
DEPTH = 2                # convs per ConvGroup
ACT = "gelu"             # gelu | relu | silu
# endregion

# region: opt
EPOCHS = 8
BATCH_SIZE = 128
LR = 0.05                # peak learning rate
MOMENTUM = 0.85
NESTEROV = True
WARMUP_FRAC = 0.2        # fraction of steps spent ramping the LR up; the rest decays linearly to 0
# endregion

# region: aug
FLIP = True              # random horizontal flips (airbench's CIFAR default)
TRANSLATE = 2            # random translation by up to this many pixels (reflect padding)
TTA_LEVEL = 2            # test-time augmentation the evaluator applies: 0 none, 1 flip, 2 flip + translate
TTA_FLIP = True          # include the mirrored views in test-time augmentation
# endregion

# region: loss
LABEL_SMOOTHING = 0.2
LOGIT_SCALE = 1 / 9      # multiplies the head's logits (airbench's `scaling_factor`)
# endregion

# region: reg
WEIGHT_DECAY = 5e-4
BN_MOMENTUM = 0.6
LOG_TRAIN_ACC = True     # after each epoch, measure accuracy on the whole training set (logging only)
# endregion

# ---------------------------------------------------------------------------------------------
# runtime contract: threads, seed, device, data in, artifact out

torch.set_num_threads(int(os.environ.get("ARLEDGER_THREADS", "2")))
SEED = int(os.environ.get("ARLEDGER_SEED", "0"))
torch.manual_seed(SEED)
np.random.seed(SEED)
DEVICE = os.environ.get("ARLEDGER_DEVICE", "cpu")
if DEVICE == "cuda" and not torch.cuda.is_available():
    DEVICE = "cpu"
DATA = Path(os.environ.get("ARLEDGER_DATA", "data/train"))
OUT = Path(os.environ.get("ARLEDGER_OUT", "out"))
OUT.mkdir(parents=True, exist_ok=True)

with np.load(DATA / "mnist_train.npz") as npz:
    train_images = normalize(torch.from_numpy(npz["images"])).to(DEVICE)
    train_labels = torch.from_numpy(npz["labels"]).long().to(DEVICE)
N = len(train_labels)

# ---------------------------------------------------------------------------------------------
# augmentation: applied to the whole set once per epoch, then sliced into batches


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if TRANSLATE > 0:
        r = TRANSLATE
        padded = F.pad(images, (r, r, r, r), mode="reflect")
        dx = torch.randint(0, 2 * r + 1, (len(images),), generator=gen)
        dy = torch.randint(0, 2 * r + 1, (len(images),), generator=gen)
        out = torch.empty_like(images)
        for sx in range(2 * r + 1):  # group by shift so each group is one strided copy
            for sy in range(2 * r + 1):
                idx = torch.nonzero((dx == sx) & (dy == sy)).squeeze(1)
                if len(idx):
                    out[idx] = padded[idx, :, sy:sy + 28, sx:sx + 28]
        images = out
    if FLIP:
        flip = torch.rand(len(images), generator=gen) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(-1), images)
    return images


# ---------------------------------------------------------------------------------------------
# model, optimizer, schedule

config = {"stem_width": STEM_WIDTH, "widths": [WIDTH, 2 * WIDTH, 2 * WIDTH], "depth": DEPTH, "act": ACT,
          "scaling": LOGIT_SCALE, "bn_momentum": BN_MOMENTUM, "tta_level": TTA_LEVEL, "tta_flip": TTA_FLIP}
model = Net(config).to(DEVICE)

decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
optimizer = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, momentum=MOMENTUM, nesterov=NESTEROV)
steps_per_epoch = math.ceil(N / BATCH_SIZE)
total_steps = EPOCHS * steps_per_epoch
warmup_steps = max(1, int(WARMUP_FRAC * total_steps))


def lr_factor(step: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@torch.no_grad()
def train_accuracy() -> float:
    model.eval()
    correct = sum((model(train_images[i:i + 1000]).argmax(1) == train_labels[i:i + 1000]).sum().item()
                  for i in range(0, N, 1000))
    model.train()
    return correct / N


# ---------------------------------------------------------------------------------------------
# training loop

gen = torch.Generator().manual_seed(SEED)
step = 0
t0 = time.perf_counter()
model.train()
for epoch in range(EPOCHS):
    images = augment(train_images, gen)
    order = torch.randperm(N, generator=gen).to(DEVICE)
    for i in range(0, N, BATCH_SIZE):
        idx = order[i:i + BATCH_SIZE]
        for group in optimizer.param_groups:
            group["lr"] = LR * lr_factor(step)
        logits = model(images[idx])
        loss = F.cross_entropy(logits, train_labels[idx], label_smoothing=LABEL_SMOOTHING)
        if not torch.isfinite(loss):
            sys.exit(f"diverged: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    print(f"metric train_loss={loss.item():.4f} step={step}", flush=True)
    if LOG_TRAIN_ACC:
        print(f"metric train_acc={train_accuracy():.4f} step={step}", flush=True)
print(f"metric train_loop_s={time.perf_counter() - t0:.2f} step={step}", flush=True)

# ---------------------------------------------------------------------------------------------
# artifact: weights + config for the evaluator's model family

torch.save(model.state_dict(), OUT / "model.pt")
(OUT / "model.json").write_text(json.dumps(config, indent=1) + "\n")
print(f"saved {OUT / 'model.pt'}")
