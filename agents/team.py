"""Who proposes: the specialists of an arm, the task as they see it, and the backend they think with.

* :func:`specialists_for` — the task's declared specialists (``lineage``, ``no-lineage``), or
  ``generic:N`` generalists, or one ``single`` researcher, optionally a named subset;
* :func:`team_task` — the task as the campaign runs it: generalists own a surface ``*`` holding every
  recipe file, knob and patch; the specialists that actually run are recorded in it;
* :func:`make_backend` — the proposal backend by name (heuristic, random, anthropic, openai,
  replay:FILE, agent:CMD), with every user error a :class:`TeamError` naming the fix.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.base import Backend
from ledger.store import LedgerError
from tasks.spec import Specialist, Surface, TaskSpec

ARMS = "lineage, no-lineage, generic:N or single"


class TeamError(LedgerError):
    """The team cannot be formed as asked; the message says why and what to do."""


def specialists_for(spec: TaskSpec, arm: str, override: list[str] | None) -> list[Specialist]:
    if arm.startswith("generic:"):
        try:
            n = int(arm.split(":", 1)[1])
        except ValueError:
            raise TeamError(f"arm {arm!r}: write generic:N with N a whole number, e.g. generic:4") from None
        if n < 1:
            raise TeamError("arm generic:N needs N >= 1")
        pre = "You are a generalist: any part of the recipe is yours. One idea per trial, measurable."
        return [Specialist(f"gen{i + 1}", "*", pre) for i in range(n)]
    if arm == "single":
        return [Specialist("solo", "*", "You are the only researcher: any part of the recipe is yours.")]
    if arm not in ("lineage", "no-lineage"):
        raise TeamError(f"unknown arm {arm!r}; use {ARMS}")
    decl = list(spec.specialists) or [Specialist(name, name, s.description) for name, s in spec.surfaces.items()]
    if override:
        known = {s.name: s for s in decl}
        bad = [n for n in override if n not in known]
        if bad:
            raise TeamError(f"task {spec.name} has no specialist {', '.join(bad)}; it has {', '.join(known)}")
        decl = [known[n] for n in override]
    return decl


def team_task(spec: TaskSpec, specialists: list[Specialist]) -> TaskSpec:
    """The task as the team runs it (see the module doc)."""
    if any(s.surface == "*" for s in specialists):
        allsurf = Surface(name="*", description="the whole recipe", files=tuple(spec.recipe_files), regions=(),
                          knobs=tuple(spec.knobs()))
        spec = dataclasses.replace(spec, surfaces={**spec.surfaces, "*": allsurf},
                                   patches=tuple(dataclasses.replace(p, surface="*") for p in spec.patches))
    return dataclasses.replace(spec, specialists=tuple(specialists))


def make_backend(name: str, *, seed: int = 0, model: str | None = None, base_url: str | None = None,
                 price_in: float | None = None, price_out: float | None = None,
                 thinking_budget: int = 0, agent_time_s: float = 900.0, agent_turns: int = 40,
                 agent_env: Sequence[str] = (), agent_bind: Sequence[str] = (), agent_network: bool = True,
                 forbidden: Sequence[Path] = ()) -> Backend:
    """The backend ``name``. ``agent_*`` configure ``agent:CMD`` (its time and turn budget, the
    variables passed through by name, more read-only paths, the network); ``forbidden``: paths the
    agent must never be given (the ledger's directory; the data cache is added here)."""
    if name == "heuristic":
        from agents.heuristic_backend import HeuristicBackend

        return HeuristicBackend(seed=seed)
    if name == "random":
        from agents.random_backend import RandomKnobBackend

        return RandomKnobBackend(seed=seed)
    if name in ("anthropic", "openai"):
        from agents import anthropic_backend, openai_backend
        from agents.base import MissingAPIKey
        from agents.prices import ANY_MODEL, Price

        module = anthropic_backend if name == "anthropic" else openai_backend
        kw: dict[str, Any] = {"base_url": base_url}
        if model:
            kw["model"] = model
        if price_in is not None or price_out is not None:
            kw["prices"] = module.default_prices().with_prices(
                {ANY_MODEL: Price.flat(price_in or 0.0, price_out or 0.0)})
        try:
            if name == "anthropic":
                return anthropic_backend.AnthropicBackend(thinking_budget=thinking_budget, **kw)
            return openai_backend.OpenAIBackend(**kw)
        except (MissingAPIKey, ValueError) as e:
            raise TeamError(str(e)) from None
    if name.startswith("agent:"):
        from agents import anthropic_backend, openai_backend
        from agents.agent_backend import AgentBackend, AgentSetupError
        from agents.prices import ANY_MODEL, Price
        from tasks.bwrap import SandboxUnavailable
        from tasks.data import cache_dir

        prices = openai_backend.default_prices().with_prices(anthropic_backend.DEFAULT_PRICES)
        if price_in is not None or price_out is not None:
            prices = prices.with_prices({ANY_MODEL: Price.flat(price_in or 0.0, price_out or 0.0)})
        never = [*forbidden, cache_dir()] + ([Path(os.environ["ARLEDGER_KEY"])] if os.environ.get("ARLEDGER_KEY") else [])
        try:
            return AgentBackend(name.split(":", 1)[1].strip(), time_s=agent_time_s, max_turns=agent_turns,
                                network=agent_network, env=tuple(agent_env), binds=tuple(Path(b) for b in agent_bind),
                                forbidden=tuple(never), model=model or "", prices=prices)
        except (AgentSetupError, SandboxUnavailable) as e:
            raise TeamError(f"backend {name}: {e}") from None
    if name.startswith("replay:"):
        from agents.replay_backend import ReplayBackend

        return ReplayBackend(name.split(":", 1)[1])
    raise TeamError(f"unknown backend {name!r}; use heuristic (offline, default), anthropic, openai, random, "
                    "replay:FILE or agent:CMD (a coding agent, e.g. agent:'claude -p')")
