"""The benchmark's control specialist: random search over the surface's knobs from the baseline.

Each proposal sets *every* knob of the specialist's surface to a value drawn uniformly within its
declared range (log-uniform for ``scale = "log"``, a uniform pick among a choice's values, a fair
coin for a bool), applied to the baseline's code (parent = the baseline trial, number 0 unless the
table says otherwise). It reads the trial table only to avoid proposing a configuration an earlier
trial already had; it never looks at scores. Deterministic for a seed.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from agents.base import Proposal, ProposalFailed, StructuredContext
from agents.heuristic_backend import Config, TrialCode, campaign_key, sample_value, value_text
from ledger import diffs
from tasks.knobs import set_knob

TRIES = 200


class RandomKnobBackend:
    """Uniform random search over the specialist's knobs, always from the baseline."""

    name = "random"
    model = "random-v1"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._cache: dict[Any, Any] = {}
        self._issued: dict[tuple[Any, str], set[Config]] = {}
        self._lock = threading.Lock()

    def propose(self, ctx: StructuredContext) -> Proposal:
        with self._lock:
            return self._propose(ctx)

    def _propose(self, ctx: StructuredContext) -> Proposal:
        spec = ctx.task
        rows = list(ctx.trials())
        campaign = campaign_key(rows)
        code = TrialCode(ctx, self._cache, campaign)
        base = next((r.number for r in rows if getattr(r, "kind", "") == "baseline"), 0)
        base_files = code.files(base)
        if base_files is None:
            raise ProposalFailed("empty", f"random: the code of baseline #{base} cannot be read")
        editable = set(ctx.editable_files() or ())
        surface = spec.surfaces.get(ctx.surface)
        knobs = [k for k in (surface.knobs if surface else ()) if not editable or k.file in editable]
        if not knobs:
            raise ProposalFailed("empty", f"random: surface {ctx.surface!r} of task {spec.name} declares no knobs "
                                 "to sample")
        issued = self._issued.setdefault((campaign, ctx.specialist), set())
        seen = {cfg for r in rows if (cfg := code.config(r.number)) is not None} | issued
        rng = random.Random(f"{self.seed}:random:{ctx.specialist}:{len(rows)}:{len(issued)}")
        refused = ""
        for _ in range(TRIES):
            values = {k.name: sample_value(k, rng) for k in knobs}
            files = dict(base_files)
            try:
                for k in knobs:
                    files[k.file] = set_knob(files[k.file], k, values[k.name])
            except (KeyError, ValueError):
                continue
            cfg = code.config_of(files)
            if cfg in seen:
                continue
            diff = diffs.make_diff(base_files, files)
            if not diff:
                continue
            reason = ctx.check_surface(base, diff)
            if reason:
                refused = reason
                continue
            issued.add(cfg)
            settings = ", ".join(f"{k.name}={value_text(k, values[k.name])}" for k in knobs)
            return Proposal(hypothesis=f"Random search: set {settings}.", diff=diff, parent=base,
                            expected_delta=None, notes=f"random control: all {len(knobs)} knobs of surface "
                            f"{ctx.surface} drawn uniformly from their ranges, from baseline #{base}",
                            backend=self.name, model=self.model,
                            transcript=f"random-v1 seed={self.seed} specialist={ctx.specialist} rows={len(rows)}\n")
        raise ProposalFailed("empty", f"random: {TRIES} draws for surface {ctx.surface!r} gave only configurations "
                             "already tried" + (f" or refused ones ({refused})" if refused else ""))
