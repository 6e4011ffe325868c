"""The nanochat-mini model family (evaluator-owned, staged read-only into every workspace).

A byte-level GPT in the style of nanochat: rotary positions, no biases, parameter-free RMSNorm,
optional QK-norm, squared-ReLU MLP, untied (or tied) output head, optional logit soft-capping. The
recipe picks a config and trains the weights; the evaluator rebuilds exactly this module from the
config saved beside the weights, so nothing a recipe writes changes how its model is run.

Config keys (``check_config`` validates them; missing keys take the defaults below):

    n_layer, n_head, n_embd   depth, heads (must divide n_embd, even head dim), width
    seq_len                   training context; evaluation never feeds more than EVAL_MAX_LEN bytes
    mlp_mult                  MLP hidden width as a multiple of n_embd
    act                       "relu2" (squared ReLU, nanochat) or "gelu"
    qk_norm                   RMS-normalise queries and keys per head
    tie_embed                 share the input embedding with the output head
    logit_softcap             0 = off, else logits = c * tanh(logits / c)
    rope_base                 rotary base frequency

``forward(idx, cache=...)`` can continue from a cached prefix (the few-shot examples the evaluator
shares across many items); training never needs it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 256
EVAL_MAX_LEN = 512
LIMITS = {"n_layer": (1, 16), "n_head": (1, 32), "n_embd": (16, 1024), "seq_len": (16, 2048),
          "mlp_mult": (0.5, 8.0), "logit_softcap": (0.0, 1000.0), "rope_base": (100.0, 1e7)}
CHOICES = {"act": ("relu2", "gelu")}


class ConfigError(ValueError):
    """The model config is not one this family can build."""


@dataclass(frozen=True)
class GPTConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    seq_len: int = 256
    mlp_mult: float = 4.0
    act: str = "relu2"
    qk_norm: bool = True
    tie_embed: bool = False
    logit_softcap: float = 15.0
    rope_base: float = 10000.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_config(raw: dict) -> GPTConfig:
    """A validated config from a plain dict; raises ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    names = {f.name for f in fields(GPTConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    vals = {}
    for name, value in raw.items():
        default = getattr(GPTConfig, name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"config key {name} has the wrong type: {value!r}")
        if name in LIMITS and not LIMITS[name][0] <= value <= LIMITS[name][1]:
            raise ConfigError(f"config key {name}={value} is outside {list(LIMITS[name])}")
        if name in CHOICES and value not in CHOICES[name]:
            raise ConfigError(f"config key {name}={value!r} is not one of {CHOICES[name]}")
        vals[name] = value
    cfg = GPTConfig(**vals)
    if cfg.n_embd % cfg.n_head or (cfg.n_embd // cfg.n_head) % 2:
        raise ConfigError(f"n_head={cfg.n_head} must divide n_embd={cfg.n_embd} into even head dims")
    return cfg


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.qk_norm = cfg.n_head, cfg.qk_norm
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, past=None, mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past is None and mask is None:
            return self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True)
                             .transpose(1, 2).contiguous().view(B, T, C)), (k, v)
        if mask is None:
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        if past is not None:  # the cached prefix is visible to every new token
            pk, pv = (t.expand(B, -1, -1, -1) for t in past)
            seen = torch.ones(*mask.shape[:-1], pk.size(2), dtype=torch.bool, device=x.device)
            mask = torch.cat((seen, mask), dim=-1)
            k, v = torch.cat((pk, k), 2), torch.cat((pv, v), 2)
        if mask.dim() == 3:
            mask = mask.unsqueeze(1)  # [B, 1, T, S]: one mask per row, shared by the heads
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C)), None


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = max(1, int(round(cfg.mlp_mult * cfg.n_embd)))
        self.act = cfg.act
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        x = self.fc(x)
        return self.proj(F.relu(x).square() if self.act == "relu2" else F.gelu(x))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, past=None, mask=None):
        a, present = self.attn(rms_norm(x), cos, sin, past, mask)
        x = x + a
        return x + self.mlp(rms_norm(x)), present


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(VOCAB, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.head = None if cfg.tie_embed else nn.Linear(cfg.n_embd, VOCAB, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nanochat-like init: N(0, 1/sqrt(fan_in)) matrices, zero output projections and head."""
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name == "head.weight":
                nn.init.zeros_(p)
            elif name == "wte.weight":
                nn.init.normal_(p, std=1.0 if self.head is not None else 0.02)
            else:
                nn.init.normal_(p, std=1.0 / math.sqrt(p.size(1)))

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for integer ``positions`` of shape [T] or [B, T] (then [B, 1, T, d/2])."""
        hd = self.cfg.n_embd // self.cfg.n_head
        inv = 1.0 / (self.cfg.rope_base ** (torch.arange(0, hd, 2, device=positions.device,
                                                         dtype=torch.float32) / hd))
        freqs = positions.float().unsqueeze(-1) * inv
        if freqs.dim() == 3:
            freqs = freqs.unsqueeze(1)
        return freqs.cos(), freqs.sin()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: list | None = None,
                positions: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        """Logits [B, T, 256] (and the mean cross-entropy if ``targets``).

        Evaluation extras: ``cache`` (from :meth:`prefix`) makes the tokens continue that prefix;
        ``positions`` [B, T] and a boolean ``mask`` [B, T, T] (True = may attend) let one row hold
        a shared head and several branches that do not see each other."""
        B, T = idx.shape
        if positions is None:
            start = 0 if cache is None else cache[0][0].size(2)
            positions = torch.arange(start, start + T, device=idx.device)
        cos, sin = self.rope(positions)
        x = rms_norm(self.wte(idx))
        for i, block in enumerate(self.blocks):
            x, _ = block(x, cos, sin, None if cache is None else cache[i], mask)
        logits = self.logits(rms_norm(x))
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits.float().view(-1, VOCAB), targets.reshape(-1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = x @ self.wte.weight.t() if self.head is None else self.head(x)
        c = self.cfg.logit_softcap
        return c * torch.tanh(logits / c) if c > 0 else logits

    @torch.no_grad()
    def prefix(self, idx: torch.Tensor) -> list:
        """The per-layer (k, v) cache of a [1, T] prefix, to pass as ``cache`` to :meth:`forward`."""
        cos, sin = self.rope(torch.arange(idx.size(1), device=idx.device))
        x = rms_norm(self.wte(idx))
        cache = []
        for block in self.blocks:
            x, present = block(x, cos, sin)
            cache.append(present)
        return cache


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
