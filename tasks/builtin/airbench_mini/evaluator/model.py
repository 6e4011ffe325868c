"""The airbench-mini model family (evaluator-owned, staged read-only into the workspace).

An airbench-style convnet for 28x28 grayscale digits: a 2x2 stride-2 patch stem (airbench's 2x2
first layer, strided to keep CPU cost low: 28x28 -> 14x14), then one ConvGroup per entry of ``widths`` (conv -> 2x2 max-pool -> BN -> act, then ``depth - 1`` more conv -> BN -> act), a global
max-pool and a linear head whose logits are multiplied by ``scaling``. The recipe picks a config and
trains the weights; the evaluator rebuilds the network from that config and the saved state dict,
so it never runs recipe code.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
DEFAULTS = {"stem_width": 16, "widths": [32, 64, 64], "depth": 2, "act": "gelu", "scaling": 1 / 9,
            "bn_momentum": 0.6, "tta_level": 2, "tta_flip": True}
LIMITS = {"max_width": 512, "max_groups": 4, "max_depth": 4}


class ConfigError(ValueError):
    """A model config outside the family this evaluator can rebuild."""


def check_config(cfg: dict) -> dict:
    """``cfg`` completed with defaults and validated; raises ConfigError naming the bad key."""
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown model config keys: {sorted(unknown)}")
    out = {**DEFAULTS, **cfg}
    widths = out["widths"]
    if not (isinstance(widths, list) and 1 <= len(widths) <= LIMITS["max_groups"]
            and all(isinstance(w, int) and 1 <= w <= LIMITS["max_width"] for w in widths)):
        raise ConfigError(f"widths must be 1..{LIMITS['max_groups']} ints in 1..{LIMITS['max_width']}")
    if not (isinstance(out["stem_width"], int) and 1 <= out["stem_width"] <= LIMITS["max_width"]):
        raise ConfigError("stem_width out of range")
    if not (isinstance(out["depth"], int) and 1 <= out["depth"] <= LIMITS["max_depth"]):
        raise ConfigError(f"depth must be an int in 1..{LIMITS['max_depth']}")
    if out["act"] not in ACTIVATIONS:
        raise ConfigError(f"act must be one of {sorted(ACTIVATIONS)}")
    if out["tta_level"] not in (0, 1, 2):
        raise ConfigError("tta_level must be 0, 1 or 2")
    if not isinstance(out["tta_flip"], bool):
        raise ConfigError("tta_flip must be true or false")
    for key in ("scaling", "bn_momentum"):
        if not isinstance(out[key], (int, float)) or not 0 < out[key] <= 10:
            raise ConfigError(f"{key} must be a positive number")
    return out


class BatchNorm(nn.BatchNorm2d):
    """Airbench's BN: a frozen unit scale, a learned bias."""

    def __init__(self, width: int, momentum: float):
        super().__init__(width, momentum=momentum, eps=1e-12)
        self.weight.requires_grad = False


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, depth: int, act: str, momentum: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                   BatchNorm(c_out, momentum), ACTIVATIONS[act]()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), BatchNorm(c_out, momentum),
                       ACTIVATIONS[act]()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Net(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        cfg = check_config(cfg)
        self.scaling = float(cfg["scaling"])
        mom = float(cfg["bn_momentum"])
        self.stem = nn.Sequential(nn.Conv2d(1, cfg["stem_width"], 2, stride=2, bias=False),
                                  BatchNorm(cfg["stem_width"], mom), ACTIVATIONS[cfg["act"]]())
        groups, c_in = [], cfg["stem_width"]
        for w in cfg["widths"]:
            groups.append(ConvGroup(c_in, w, cfg["depth"], cfg["act"], mom))
            c_in = w
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.scaling


def normalize(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [N, 1, 28, 28], MNIST mean/std normalised (fixed, not learned)."""
    return ((images_u8.float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1)


@torch.no_grad()
def predict_tta(model: nn.Module, x: torch.Tensor, level: int, flip: bool = True,
                batch_size: int = 1000) -> torch.Tensor:
    """Logits with airbench's test-time augmentation.

    level 0: plain; 1: average with the horizontally flipped view; 2: additionally average the
    (plain, flipped) views translated by one pixel up-left and down-right (weights 0.5 / 0.25 / 0.25).
    ``flip=False`` leaves the mirrored views out (digits, unlike CIFAR objects, are not symmetric).
    """
    model.eval()
    outs = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]

        def both(v: torch.Tensor) -> torch.Tensor:
            return 0.5 * (model(v) + model(v.flip(-1))) if level >= 1 and flip else model(v)

        logits = both(xb)
        if level >= 2:
            padded = nn.functional.pad(xb, (1, 1, 1, 1), mode="reflect")
            up_left = padded[:, :, :-2, :-2]
            down_right = padded[:, :, 2:, 2:]
            logits = 0.5 * logits + 0.25 * both(up_left) + 0.25 * both(down_right)
        outs.append(logits)
    return torch.cat(outs)


def save_weights(state: dict, path) -> None:
    """Write a state dict as the run's artifact: an uncompressed ``.npz`` of plain arrays, which
    ``load_weights`` reads with ``allow_pickle=False`` (no pickle: artifacts are untrusted input)."""
    import numpy as np

    with open(path, "wb") as f:
        np.savez(f, **{k: v.detach().cpu().numpy() for k, v in state.items()})


def load_weights(path) -> dict:
    """The state dict ``save_weights`` wrote; any object array, or anything not an ``.npz``, is refused."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        return {k: torch.from_numpy(np.array(z[k])) for k in z.files}
