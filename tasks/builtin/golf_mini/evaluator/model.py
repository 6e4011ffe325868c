"""golf-mini model family (evaluator-owned, staged read-only into every workspace).

A small configurable GPT. The recipe picks a config and trains the weights; the evaluator rebuilds
exactly this module from the config stored in the artifact, so nothing a recipe writes can change
how its model is run at evaluation time.

Config keys (all required in an artifact; ``check_config`` validates them):

    vocab_size   256 + number of BPE merges
    n_layer      transformer blocks
    n_head       attention heads (must divide n_embd; head dim must be even with rope)
    n_embd       model width
    block_size   context length (evaluation uses non-overlapping windows of this length)
    mlp_mult     hidden width of the MLP as a multiple of n_embd (float; rounded to an int width)
    tie_embed    share the token embedding with the output head
    qk_norm      RMS-normalise queries and keys per head before attention
    pos          "learned" absolute positions or "rope" rotary embeddings
    norm         "layernorm" or "rmsnorm" (no learned bias either way)
    act          "gelu" or "relu2" (squared ReLU)
    logit_softcap  0 = off, else logits = c * tanh(logits / c)
    dropout      training only; evaluation always runs in eval mode
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

LIMITS = {  # keeps evaluation time and memory bounded whatever an artifact claims
    "vocab_size": (256, 256 + 8192),
    "n_layer": (1, 32),
    "n_head": (1, 64),
    "n_embd": (8, 2048),
    "block_size": (8, 4096),
    "mlp_mult": (0.25, 16.0),
    "logit_softcap": (0.0, 1000.0),
    "dropout": (0.0, 0.9),
}
CHOICES = {"pos": ("learned", "rope"), "norm": ("layernorm", "rmsnorm"), "act": ("gelu", "relu2")}


class ConfigError(ValueError):
    """The model config is not one this family can build."""


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    block_size: int = 64
    mlp_mult: float = 4.0
    tie_embed: bool = True
    qk_norm: bool = False
    pos: str = "learned"
    norm: str = "layernorm"
    act: str = "gelu"
    logit_softcap: float = 0.0
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_config(raw: dict) -> GPTConfig:
    """A validated config from a plain dict; raises ConfigError naming the bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    names = {f.name: f for f in fields(GPTConfig)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    missing = sorted(set(names) - set(raw))
    if missing:
        raise ConfigError(f"missing config key(s): {', '.join(missing)}")
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
        if name in LIMITS:
            lo, hi = LIMITS[name]
            if not lo <= value <= hi:
                raise ConfigError(f"config key {name}={value} is outside [{lo}, {hi}]")
        if name in CHOICES and value not in CHOICES[name]:
            raise ConfigError(f"config key {name}={value!r} is not one of {CHOICES[name]}")
        vals[name] = value
    cfg = GPTConfig(**vals)
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"n_head={cfg.n_head} does not divide n_embd={cfg.n_embd}")
    if cfg.pos == "rope" and (cfg.n_embd // cfg.n_head) % 2:
        raise ConfigError("rope needs an even head dimension (n_embd / n_head)")
    return cfg


class Norm(nn.Module):
    def __init__(self, dim: int, kind: str):
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rmsnorm":
            return F.rms_norm(x, (x.size(-1),), self.weight)
        return F.layer_norm(x, (x.size(-1),), self.weight)


def rope_tables(head_dim: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    t = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.outer(t, inv)
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, T, C = x.shape
        h = self.cfg.n_head
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))
        if self.cfg.qk_norm:
            q = F.rms_norm(q, (q.size(-1),))
            k = F.rms_norm(k, (k.size(-1),))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        p = self.cfg.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = max(1, int(round(cfg.mlp_mult * cfg.n_embd)))
        self.act = cfg.act
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        x = F.relu(x).square() if self.act == "relu2" else F.gelu(x)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = Norm(cfg.n_embd, cfg.norm)
        self.attn = Attention(cfg)
        self.ln2 = Norm(cfg.n_embd, cfg.norm)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), rope))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = Norm(cfg.n_embd, cfg.norm)
        self.head = None if cfg.tie_embed else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layer)."""
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.ones_(p)
                continue
            std = 0.02
            if name.endswith("proj.weight"):
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
            nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"):
        B, T = idx.shape
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        x = self.wte(idx)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        else:
            rope = rope_tables(self.cfg.n_embd // self.cfg.n_head, T, idx.device)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        x = self.ln_f(x)
        logits = F.linear(x, self.wte.weight) if self.head is None else self.head(x)
        if self.cfg.logit_softcap > 0:
            c = self.cfg.logit_softcap
            logits = c * torch.tanh(logits / c)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               reduction=reduction)
        return logits, loss
